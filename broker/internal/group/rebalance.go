package group

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// This file holds the rebalance state machine. Every function here is called with g.mu held.

// maybePrepareRebalance starts a rebalance unless one is being prepared already.
func (c *Coordinator) maybePrepareRebalance(g *group, reason string) {
	if g.canRebalance() {
		c.prepareRebalance(g, reason)
	}
}

// prepareRebalance moves g to PreparingRebalance: members must rejoin within the rebalance
// timeout. A group that was Empty first waits InitialRebalanceDelay for more members.
func (c *Coordinator) prepareRebalance(g *group, reason string) {
	if g.state == stateCompletingRebalance {
		// Followers waiting for the leader's assignment will not get it: make them rejoin.
		for _, m := range g.order {
			m.assignment = nil
			m.answerSync(syncResult{err: kerr.RebalanceInProgress.Code})
		}
	}
	g.syncTimer.stop()
	clear(g.pendingSync)

	fromEmpty := g.state == stateEmpty
	g.setState(statePreparingRebalance, c.clock.Now())
	timeout := g.rebalanceTimeout()
	c.log.Info("preparing to rebalance group", slog.String("group", g.name),
		slog.Int("generation", int(g.generation)), slog.Int("members", len(g.members)), slog.String("reason", reason))

	if fromEmpty && c.cfg.InitialRebalanceDelay > 0 {
		d := c.cfg.InitialRebalanceDelay
		g.initialDelay = true
		g.newMemberAdded = false
		g.delayLeft = max(timeout-d, 0)
		c.arm(g, &g.joinTimer, d, func() { c.initialDelayExpired(g) })
		return
	}
	g.initialDelay = false
	c.arm(g, &g.joinTimer, timeout, func() { c.completeJoin(g) })
	c.tryCompleteJoin(g)
}

// initialDelayExpired ends one period of the initial rebalance delay. If members joined during
// it, another period starts, as long as the total stays within the rebalance timeout.
func (c *Coordinator) initialDelayExpired(g *group) {
	if g.state != statePreparingRebalance || !g.initialDelay {
		return
	}
	if g.newMemberAdded && g.delayLeft > 0 {
		g.newMemberAdded = false
		d := min(c.cfg.InitialRebalanceDelay, g.delayLeft)
		g.delayLeft -= d
		c.arm(g, &g.joinTimer, d, func() { c.initialDelayExpired(g) })
		return
	}
	g.initialDelay = false
	c.completeJoin(g)
}

// tryCompleteJoin completes the rebalance being prepared if every member has rejoined.
func (c *Coordinator) tryCompleteJoin(g *group) {
	if g.state == statePreparingRebalance && !g.initialDelay && g.allJoined() {
		c.completeJoin(g)
	}
}

// completeJoin ends the join phase: dynamic members that did not rejoin are dropped, the
// generation advances, and every waiting JoinGroup is answered, the leader's with the member
// list. Static members that did not rejoin stay until their session expires.
func (c *Coordinator) completeJoin(g *group) {
	if g.state != statePreparingRebalance {
		return
	}
	g.joinTimer.stop()
	g.initialDelay = false
	for _, m := range slices.Clone(g.order) {
		if m.join == nil && !m.isStatic() {
			c.log.Info("removing member that did not rejoin", slog.String("group", g.name), slog.String("member_id", m.id))
			g.remove(m)
		}
	}
	if len(g.order) > 0 && !g.electJoinedLeader() {
		// Only static members are left and none rejoined: wait for them, or for their
		// sessions to expire.
		c.log.Warn("no member rejoined; waiting another rebalance timeout", slog.String("group", g.name))
		c.arm(g, &g.joinTimer, g.rebalanceTimeout(), func() { c.completeJoin(g) })
		return
	}

	now := c.clock.Now()
	g.generation++
	if len(g.order) == 0 {
		g.protocol = ""
		g.leader = ""
		g.setState(stateEmpty, now)
		c.log.Info("group is empty", slog.String("group", g.name), slog.Int("generation", int(g.generation)))
		// The generation must survive a restart so that a zombie of an older one stays
		// fenced. A failure is harmless otherwise: no member depends on this write.
		if err := c.storeGroup(c.storeCtx, g, nil); err != nil {
			c.log.Warn("could not persist empty group", slog.String("group", g.name), slog.Any("error", err))
		}
		return
	}

	g.protocol = g.selectProtocol()
	g.setState(stateCompletingRebalance, now)
	c.log.Info("rebalance joined", slog.String("group", g.name), slog.Int("generation", int(g.generation)),
		slog.String("protocol", g.protocol), slog.String("leader", g.leader), slog.Int("members", len(g.order)))
	for _, m := range g.order {
		m.answerJoin(c.currentGeneration(g, m, m.id == g.leader))
		c.scheduleSession(g, m, m.sessionTimeout)
		m.isNew = false
		g.pendingSync[m.id] = true
	}
	gen := g.generation
	c.arm(g, &g.syncTimer, g.rebalanceTimeout(), func() { c.syncExpired(g, gen) })
}

// syncExpired removes the members of generation gen that never sent SyncGroup, and rebalances
// without them.
func (c *Coordinator) syncExpired(g *group, gen int32) {
	if gen != g.generation || (g.state != stateCompletingRebalance && g.state != stateStable) || len(g.pendingSync) == 0 {
		return
	}
	for _, m := range slices.Clone(g.order) {
		if g.pendingSync[m.id] {
			c.log.Info("removing member that did not sync", slog.String("group", g.name), slog.String("member_id", m.id))
			g.remove(m)
		}
	}
	c.maybePrepareRebalance(g, "members did not send SyncGroup in time")
}

// removeAndRebalance removes m and lets the others know: a stable group rebalances, a
// rebalance in preparation may now be complete.
func (c *Coordinator) removeAndRebalance(g *group, m *member, reason string) {
	g.remove(m)
	switch g.state {
	case stateStable, stateCompletingRebalance:
		c.prepareRebalance(g, reason)
	case statePreparingRebalance:
		c.tryCompleteJoin(g)
	}
}

// scheduleSession (re)starts m's session: unless it is heard from within d, it is removed.
func (c *Coordinator) scheduleSession(g *group, m *member, d time.Duration) {
	c.arm(g, &m.session, d, func() { c.sessionExpired(g, m) })
}

func (c *Coordinator) sessionExpired(g *group, m *member) {
	if g.members[m.id] != m {
		return
	}
	if !m.isNew && (m.join != nil || m.sync != nil) {
		// A member waiting on the group is alive; its session restarts when the wait ends.
		c.scheduleSession(g, m, m.sessionTimeout)
		return
	}
	c.log.Info("member session expired", slog.String("group", g.name), slog.String("member_id", m.id),
		slog.String("instance_id", m.instanceID))
	c.removeAndRebalance(g, m, "session of member "+m.id+" expired")
}

// storeGroup persists g's metadata, with assignments overriding the members' current ones.
func (c *Coordinator) storeGroup(ctx context.Context, g *group, assignments map[string][]byte) error {
	rec := Record{Key: groupMetadataKey(g.name), Value: groupMetadataValue(g, assignments, c.clock.Now())}
	return c.append(ctx, g, []Record{rec})
}
