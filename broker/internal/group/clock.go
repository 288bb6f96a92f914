package group

import "time"

// Clock is the source of time and timers for session, rebalance and initial-delay timeouts.
// Tests inject a fake so they can move time forward instead of sleeping.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has elapsed, unless the returned Timer is
	// stopped first. It must not call f before it returns.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending call scheduled by Clock.AfterFunc.
type Timer interface {
	// Stop prevents the call if it has not started yet and reports whether it did. The
	// coordinator does not rely on the result: a call that races with Stop finds itself stale.
	Stop() bool
}

// systemClock is the wall clock.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

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
