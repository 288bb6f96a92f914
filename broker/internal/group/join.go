package group

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// joinParams is a JoinGroup request, validated and copied out of the request.
type joinParams struct {
	version          int16
	memberID         string
	instanceID       string
	clientID         string
	clientHost       string
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocolType     string
	protocols        []protocol
	reason           string
}

// JoinGroup handles a JoinGroup request (v0–v9) from client. A member joining with an empty
// member id gets the id clientID-uuid; from v4 on a dynamic member first gets
// MEMBER_ID_REQUIRED with that id and must join again with it (KIP-394). JoinGroup blocks until
// the group's rebalance completes, which may take up to the group's rebalance timeout, or until
// ctx is done or the Coordinator is closed.
func (c *Coordinator) JoinGroup(ctx context.Context, client Client, req *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse {
	r := c.joinGroup(ctx, client, req)
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.ErrorCode = r.err
	resp.Generation = r.generation
	resp.MemberID = r.memberID
	resp.LeaderID = r.leader
	resp.Members = r.members
	if r.err == 0 {
		protocolType, protocol := r.protocolType, r.protocol
		resp.ProtocolType = &protocolType
		resp.Protocol = &protocol
	}
	return resp
}

func (c *Coordinator) joinGroup(ctx context.Context, client Client, req *kmsg.JoinGroupRequest) joinResult {
	if !c.enter() {
		return joinError(req.MemberID, kerr.CoordinatorNotAvailable.Code)
	}
	defer c.exit()
	if req.Group == "" {
		return joinError(req.MemberID, kerr.InvalidGroupID.Code)
	}
	p := joinParams{
		version:        req.Version,
		memberID:       req.MemberID,
		instanceID:     strings.Clone(deref(req.InstanceID)),
		clientID:       strings.Clone(client.ID),
		clientHost:     strings.Clone(client.Host),
		sessionTimeout: millis(req.SessionTimeoutMillis),
		protocolType:   strings.Clone(req.ProtocolType),
		reason:         deref(req.Reason),
	}
	if p.sessionTimeout < c.cfg.MinSessionTimeout || p.sessionTimeout > c.cfg.MaxSessionTimeout {
		return joinError(req.MemberID, kerr.InvalidSessionTimeout.Code)
	}
	// v0 has no rebalance timeout: the session timeout served for both.
	p.rebalanceTimeout = p.sessionTimeout
	if req.Version >= 1 {
		p.rebalanceTimeout = max(millis(req.RebalanceTimeoutMillis), 0)
	}
	p.protocols = make([]protocol, len(req.Protocols))
	for i, rp := range req.Protocols {
		p.protocols[i] = protocol{name: strings.Clone(rp.Name), metadata: bytes.Clone(rp.Metadata)}
	}

	var (
		g *group
		w *joinWaiter
		r joinResult
	)
	if p.memberID == "" {
		g = c.lockOrCreateGroup(req.Group)
		w, r = c.joinNewMember(g, p)
	} else {
		if g = c.lockGroup(req.Group); g == nil {
			return joinError(p.memberID, kerr.UnknownMemberID.Code)
		}
		w, r = c.joinKnownMember(g, p)
	}
	if w == nil {
		c.forgetIfVacant(g)
	}
	g.mu.Unlock()
	if w == nil {
		return r
	}
	return c.awaitJoin(ctx, g, w)
}

// awaitJoin waits for the answer to a parked JoinGroup. If ctx ends first, the member is no
// longer waiting: unless it joins again it will not be part of the next generation.
func (c *Coordinator) awaitJoin(ctx context.Context, g *group, w *joinWaiter) joinResult {
	select {
	case r := <-w.ch:
		return r
	case <-c.done:
		return joinError("", kerr.NotCoordinator.Code)
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case r := <-w.ch:
		return r
	default:
	}
	m := w.m
	if m.join == w {
		m.join = nil
		c.scheduleSession(g, m, m.sessionTimeout)
	}
	return joinError(m.id, kerr.RequestTimedOut.Code)
}

// joinNewMember handles a JoinGroup with an empty member id. g is locked.
func (c *Coordinator) joinNewMember(g *group, p joinParams) (*joinWaiter, joinResult) {
	if !g.supportsProtocols(p.protocolType, p.protocols) {
		return nil, joinError("", kerr.InconsistentGroupProtocol.Code)
	}
	id := p.clientID + "-" + uuid.NewString()
	if p.instanceID != "" {
		return c.joinStaticMember(g, p, id)
	}
	if c.full(g) {
		return nil, joinError("", kerr.GroupMaxSizeReached.Code)
	}
	if p.version >= 4 {
		// KIP-394: hand out the id and let the client come back with it, so that a client
		// whose JoinGroup times out and is retried does not leave a ghost member behind.
		c.addPending(g, id, p.sessionTimeout)
		return nil, joinError(id, kerr.MemberIDRequired.Code)
	}
	return c.addMemberAndRebalance(g, p, id), joinResult{}
}

// joinKnownMember handles a JoinGroup with a member id. g is locked.
func (c *Coordinator) joinKnownMember(g *group, p joinParams) (*joinWaiter, joinResult) {
	if !g.supportsProtocols(p.protocolType, p.protocols) {
		return nil, joinError(p.memberID, kerr.InconsistentGroupProtocol.Code)
	}
	if slot, ok := g.pending[p.memberID]; ok {
		if p.instanceID != "" {
			// Ids handed out with MEMBER_ID_REQUIRED are for dynamic members only.
			return nil, joinError(p.memberID, kerr.UnknownMemberID.Code)
		}
		slot.stop()
		delete(g.pending, p.memberID)
		return c.addMemberAndRebalance(g, p, strings.Clone(p.memberID)), joinResult{}
	}
	if code := g.validateMember(p.memberID, p.instanceID); code != 0 {
		return nil, joinError(p.memberID, code)
	}
	m := g.members[p.memberID]
	switch g.state {
	case statePreparingRebalance:
		return c.updateMemberAndRebalance(g, m, p), joinResult{}
	case stateCompletingRebalance:
		// Same protocols: the member lost our response; tell it again.
		if m.matches(p.protocols) {
			return nil, c.currentGeneration(g, m, m.id == g.leader)
		}
		return c.updateMemberAndRebalance(g, m, p), joinResult{}
	case stateStable:
		// A follower rejoining with the same protocols needs no rebalance; the leader rejoining
		// asks for one (it may have seen metadata change), as does changed metadata.
		if m.id != g.leader && m.matches(p.protocols) {
			c.scheduleSession(g, m, m.sessionTimeout)
			return nil, c.currentGeneration(g, m, false)
		}
		return c.updateMemberAndRebalance(g, m, p), joinResult{}
	default:
		return nil, joinError(p.memberID, kerr.UnknownMemberID.Code)
	}
}

// joinStaticMember handles a JoinGroup with an instance id and no member id (KIP-345). A known
// instance id gets a new member id that replaces the old one, which is fenced. g is locked.
func (c *Coordinator) joinStaticMember(g *group, p joinParams, newID string) (*joinWaiter, joinResult) {
	oldID, known := g.static[p.instanceID]
	if !known {
		if c.full(g) {
			return nil, joinError("", kerr.GroupMaxSizeReached.Code)
		}
		return c.addMemberAndRebalance(g, p, newID), joinResult{}
	}
	m := g.members[oldID]
	prevLeader := g.leader
	prevMetadata := m.metadata(g.protocol)
	prev := *m
	g.replaceStatic(m, newID)
	m.protocols = p.protocols
	m.sessionTimeout = p.sessionTimeout
	m.rebalanceTimeout = p.rebalanceTimeout
	m.clientID, m.clientHost = p.clientID, p.clientHost
	c.scheduleSession(g, m, m.sessionTimeout)
	c.log.Info("static member rejoined with a new member id",
		slog.String("group", g.name), slog.String("instance_id", m.instanceID),
		slog.String("old_member_id", oldID), slog.String("member_id", newID), slog.String("state", g.state.String()))

	switch g.state {
	case stateStable:
		// The restarted member gets its old assignment back without disturbing the others, as
		// long as neither the group's protocol nor its own subscription changes. (Kafka only
		// checks the protocol; we also rebalance if the member's metadata changed, so that a
		// changed subscription is never ignored.)
		if g.selectProtocol() == g.protocol && bytes.Equal(prevMetadata, m.metadata(g.protocol)) {
			if err := c.storeGroup(c.storeCtx, g, nil); err != nil {
				c.log.Warn("could not persist static member replacement; reverting it",
					slog.String("group", g.name), slog.String("instance_id", m.instanceID), slog.Any("error", err))
				g.replaceStatic(m, oldID)
				m.protocols, m.sessionTimeout, m.rebalanceTimeout = prev.protocols, prev.sessionTimeout, prev.rebalanceTimeout
				m.clientID, m.clientHost = prev.clientID, prev.clientHost
				c.scheduleSession(g, m, m.sessionTimeout)
				return nil, joinError("", storeErrCode(err))
			}
			// The leader id stays the one before replacement: were the replaced member the
			// leader, it must not think it leads and run an assignment a Stable group would ignore.
			r := c.currentGeneration(g, m, false)
			r.leader = prevLeader
			return nil, r
		}
		w := m.awaitJoin()
		c.prepareRebalance(g, "static member rejoined with changed protocols")
		return w, joinResult{}
	case stateCompletingRebalance:
		// The leader may be assigning to the old member id already; start over.
		w := m.awaitJoin()
		c.prepareRebalance(g, "static member rejoined during CompletingRebalance")
		return w, joinResult{}
	case statePreparingRebalance:
		w := m.awaitJoin()
		c.tryCompleteJoin(g)
		return w, joinResult{}
	default:
		// A group with members is never Empty.
		return nil, joinError("", kerr.UnknownMemberID.Code)
	}
}

// currentGeneration answers a JoinGroup with the generation in progress.
func (c *Coordinator) currentGeneration(g *group, m *member, withMembers bool) joinResult {
	r := joinResult{
		memberID:     m.id,
		generation:   g.generation,
		protocolType: g.protocolType,
		protocol:     g.protocol,
		leader:       g.leader,
	}
	if withMembers {
		r.members = g.memberList()
	}
	return r
}

// full reports whether the group can admit no new member.
func (c *Coordinator) full(g *group) bool {
	return c.cfg.MaxGroupSize > 0 && len(g.members)+len(g.pending) >= c.cfg.MaxGroupSize
}

// addPending remembers a member id handed out with MEMBER_ID_REQUIRED for one session timeout.
func (c *Coordinator) addPending(g *group, id string, session time.Duration) {
	slot := &timerSlot{}
	g.pending[id] = slot
	c.arm(g, slot, session, func() {
		delete(g.pending, id)
		c.log.Debug("pending member id expired", slog.String("group", g.name), slog.String("member_id", id))
		c.tryCompleteJoin(g)
		c.forgetIfVacant(g)
	})
}

// addMemberAndRebalance adds a new member, parks its JoinGroup and starts or advances a rebalance.
func (c *Coordinator) addMemberAndRebalance(g *group, p joinParams, id string) *joinWaiter {
	m := &member{
		id:               id,
		instanceID:       p.instanceID,
		clientID:         p.clientID,
		clientHost:       p.clientHost,
		sessionTimeout:   p.sessionTimeout,
		rebalanceTimeout: p.rebalanceTimeout,
		protocolType:     p.protocolType,
		protocols:        p.protocols,
		isNew:            true,
	}
	if g.state == statePreparingRebalance && g.initialDelay {
		g.newMemberAdded = true
	}
	g.add(m)
	w := m.awaitJoin()
	c.scheduleSession(g, m, c.cfg.NewMemberJoinTimeout)
	c.log.Debug("member joined", slog.String("group", g.name), slog.String("member_id", id),
		slog.String("instance_id", p.instanceID), slog.String("client_host", p.clientHost), slog.String("reason", p.reason))
	c.maybePrepareRebalance(g, "member "+id+" joined")
	c.tryCompleteJoin(g)
	return w
}

// updateMemberAndRebalance records a known member's new protocols and timeouts, parks its
// JoinGroup and starts or advances a rebalance.
func (c *Coordinator) updateMemberAndRebalance(g *group, m *member, p joinParams) *joinWaiter {
	m.protocols = p.protocols
	m.sessionTimeout = p.sessionTimeout
	m.rebalanceTimeout = p.rebalanceTimeout
	w := m.awaitJoin()
	reason := "member " + m.id + " rejoined"
	if p.reason != "" {
		reason += ": " + p.reason
	}
	c.maybePrepareRebalance(g, reason)
	c.tryCompleteJoin(g)
	return w
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func millis(ms int32) time.Duration { return time.Duration(ms) * time.Millisecond }
