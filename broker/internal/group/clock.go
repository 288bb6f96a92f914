package group

import (
	"time"

	"github.com/runnel-io/runnel/broker/internal/clock"
)

// Clock is the source of time and timers for session, rebalance and initial-delay timeouts. Tests inject
// clock.Fake to move time forward instead of sleeping.
type Clock = clock.Clock

// Timer is a pending call scheduled by Clock.AfterFunc.
type Timer = clock.Timer

// timerSlot holds at most one pending timer. Every stop or re-arm bumps seq, so a callback that
// was already running when its timer was stopped can tell that it is stale and do nothing.
type timerSlot struct {
	t   Timer
	seq uint64
}

func (s *timerSlot) stop() {
	if s.t != nil {
		s.t.Stop()
		s.t = nil
	}
	s.seq++
}

// arm schedules fn to run after d under g's lock, replacing whatever s held. It must be called
// with g.mu held. fn does not run if the slot is stopped or re-armed first, or if the coordinator
// is closed.
func (c *Coordinator) arm(g *group, s *timerSlot, d time.Duration, fn func()) {
	s.stop()
	seq := s.seq
	s.t = c.clock.AfterFunc(d, func() {
		if !c.enter() {
			return
		}
		defer c.exit()
		g.mu.Lock()
		defer g.mu.Unlock()
		if s.seq != seq {
			return
		}
		s.t = nil
		s.seq++
		fn()
	})
}
