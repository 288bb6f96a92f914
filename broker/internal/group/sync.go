package group

import (
	"bytes"
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SyncGroup handles a SyncGroup request (v0–v5). The leader's request carries the assignment,
// which is persisted and then handed to every member; a follower's request blocks until then,
// until the rebalance starts over (REBALANCE_IN_PROGRESS), or until ctx is done or the
// Coordinator is closed.
func (c *Coordinator) SyncGroup(ctx context.Context, req *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
	r := c.syncGroup(ctx, req)
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	resp.ErrorCode = r.err
	resp.MemberAssignment = []byte{}
	if r.err == 0 {
		protocolType, protocol := r.protocolType, r.protocol
		resp.ProtocolType = &protocolType
		resp.Protocol = &protocol
		if r.assignment != nil {
			resp.MemberAssignment = r.assignment
		}
	}
	return resp
}

func (c *Coordinator) syncGroup(ctx context.Context, req *kmsg.SyncGroupRequest) syncResult {
	if !c.enter() {
		return syncResult{err: kerr.CoordinatorNotAvailable.Code}
	}
	defer c.exit()
	if req.Group == "" {
		return syncResult{err: kerr.InvalidGroupID.Code}
	}
	g := c.lockGroup(req.Group)
	if g == nil {
		return syncResult{err: kerr.UnknownMemberID.Code}
	}
	w, r := c.syncLocked(ctx, g, req)
	g.mu.Unlock()
	if w == nil {
		return r
	}
	select {
	case r := <-w.ch:
		return r
	case <-c.done:
		return syncResult{err: kerr.NotCoordinator.Code}
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case r := <-w.ch:
		return r
	default:
	}
	if m := w.m; m.sync == w {
		m.sync = nil
		c.scheduleSession(g, m, m.sessionTimeout)
	}
	return syncResult{err: kerr.RequestTimedOut.Code}
}

func (c *Coordinator) syncLocked(ctx context.Context, g *group, req *kmsg.SyncGroupRequest) (*syncWaiter, syncResult) {
	if code := g.validateMember(req.MemberID, deref(req.InstanceID)); code != 0 {
		return nil, syncResult{err: code}
	}
	if req.Generation != g.generation {
		return nil, syncResult{err: kerr.IllegalGeneration.Code}
	}
	if (req.ProtocolType != nil && *req.ProtocolType != g.protocolType) || (req.Protocol != nil && *req.Protocol != g.protocol) {
		return nil, syncResult{err: kerr.InconsistentGroupProtocol.Code}
	}
	m := g.members[req.MemberID]
	switch g.state {
	case statePreparingRebalance:
		return nil, syncResult{err: kerr.RebalanceInProgress.Code}
	case stateCompletingRebalance:
		delete(g.pendingSync, m.id)
		w := m.awaitSync()
		if m.id == g.leader {
			c.completeSync(ctx, g, req.GroupAssignment)
		}
		return w, syncResult{}
	case stateStable:
		// The assignment is settled; hand it out again (a follower that synced late, or a
		// static member that replaced its old member id).
		delete(g.pendingSync, m.id)
		c.scheduleSession(g, m, m.sessionTimeout)
		return nil, syncResult{protocolType: g.protocolType, protocol: g.protocol, assignment: m.assignment}
	default:
		return nil, syncResult{err: kerr.UnknownMemberID.Code}
	}
}

// completeSync persists the leader's assignment, hands every waiting member its part, and
// makes the group Stable. Members the leader left out get an empty assignment; assignments to
// non-members are ignored.
func (c *Coordinator) completeSync(ctx context.Context, g *group, assignments []kmsg.SyncGroupRequestGroupAssignment) {
	given := make(map[string][]byte, len(g.order))
	for _, a := range assignments {
		if g.members[a.MemberID] != nil {
			given[a.MemberID] = bytes.Clone(a.MemberAssignment)
		}
	}
	for _, m := range g.order {
		if given[m.id] == nil {
			given[m.id] = []byte{}
		}
	}
	if err := c.storeGroup(ctx, g, given); err != nil {
		c.log.Warn("could not persist group assignment; rebalancing", slog.String("group", g.name), slog.Any("error", err))
		code := storeErrCode(err)
		for _, m := range g.order {
			m.assignment = nil
			m.answerSync(syncResult{err: code})
		}
		c.prepareRebalance(g, "could not persist the assignment")
		return
	}
	for _, m := range g.order {
		m.assignment = given[m.id]
		if m.sync != nil {
			m.answerSync(syncResult{protocolType: g.protocolType, protocol: g.protocol, assignment: m.assignment})
			c.scheduleSession(g, m, m.sessionTimeout)
		}
	}
	g.setState(stateStable, c.clock.Now())
	c.log.Info("group is stable", slog.String("group", g.name), slog.Int("generation", int(g.generation)),
		slog.Int("members", len(g.order)))
}
