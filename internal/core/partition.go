package core

import (
	"time"

	"github.com/runnel-io/runnel/processor"
)

// Clock tells the wall-clock time: the system's in the runtime, the test's
// in topotest.
type Clock interface {
	Now() time.Time
}

// SystemClock is the system's wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Host is what a driver does for the core in one partition: it makes the
// contexts of timer and punctuation callbacks, and keeps (stores) what they
// write.
type Host interface {
	// Callback returns the context of a callback: of the timer t, or, with
	// t.Name "", of a punctuation (no key) at t.At. Its topic is "", its
	// offset -1, its event time t.At. A driver that bounds the work of one
	// step returns an error to stop.
	Callback(t processor.RawTimer) (Callback, error)
}

// Callback is the context of one timer or punctuation callback, and the
// store of its writes.
type Callback interface {
	processor.RawContext
	// RemoveTimer removes the timer that fires from the store. The
	// removal is kept whatever the callback's verdict.
	RemoveTimer(t processor.RawTimer) error
	// Done ends the callback: Keep makes its writes, Skip and Drop drop
	// all but the timer's removal (Skip is counted as skipped). It is not
	// called when the instance stops.
	Done(v Verdict)
}

// Partition is the core of one partition of a group: its timers, stream
// time and punctuation schedule. It is not safe for concurrent use: a
// driver runs a partition's records and callbacks one at a time.
type Partition struct {
	g      *Group
	p      int32
	host   Host
	clock  Clock
	timers *timerQueue
	stream time.Time
	// next holds the next boundary of each of g.Punctuations.
	next []time.Time
}

// NewPartition returns the core of partition p of g, on clock, with its
// stream time and timers as the store had them. Its punctuations' first
// boundaries are one period after the clock's reading now, at assignment.
func NewPartition(g *Group, p int32, host Host, clock Clock, stream time.Time, timers []processor.RawTimer) *Partition {
	start := clock.Now()
	pt := &Partition{g: g, p: p, host: host, clock: clock, timers: newTimerQueue(), stream: stream}
	for _, t := range timers {
		pt.timers.add(t)
	}
	for _, pu := range g.Punctuations {
		pt.next = append(pt.next, start.Add(pu.Every))
	}
	return pt
}

// StreamTime returns the partition's stream time: zero before its first
// record.
func (pt *Partition) StreamTime() time.Time { return pt.stream }

// StreamTimeOf returns the stream time a record's handler sees: the
// partition's, with the record's event time ts counted unless it came
// through the group's loop. A callback sees [Partition.StreamTime].
func (pt *Partition) StreamTimeOf(ts time.Time, loop bool) time.Time {
	if loop {
		return pt.stream
	}
	return later(pt.stream, ts)
}

// Observe moves stream time past a record processed (successfully or not)
// at event time ts; a record of the group's loop does not move it. Call
// [Partition.FireStreamTimers] after it.
func (pt *Partition) Observe(ts time.Time, loop bool) {
	if !loop {
		pt.stream = later(pt.stream, ts)
	}
}

// AdvanceStreamTime raises stream time to to, as a record at to would, and
// fires the stream-time timers that fall due.
func (pt *Partition) AdvanceStreamTime(to time.Time) error {
	pt.stream = later(pt.stream, to)
	return pt.FireStreamTimers()
}

// SetTimer adds a timer and reports whether it is new (a driver stores
// only new ones). A timer of a callback the group does not have, or of an
// unknown kind, is an error.
func (pt *Partition) SetTimer(t processor.RawTimer) (bool, error) {
	if err := pt.g.checkTimer(t); err != nil {
		return false, err
	}
	return pt.timers.add(t), nil
}

// DeleteTimer removes a timer and reports whether it was pending. A timer
// the group could not have is an error, as for SetTimer.
func (pt *Partition) DeleteTimer(t processor.RawTimer) (bool, error) {
	if err := pt.g.checkTimer(t); err != nil {
		return false, err
	}
	return pt.timers.remove(t), nil
}

// Timers returns copies of the pending timers, in firing order.
func (pt *Partition) Timers() []processor.RawTimer { return pt.timers.all() }

// HasWallClockWork reports whether the partition has punctuations or
// wall-clock timers, so a driver need not tick a partition that has none.
func (pt *Partition) HasWallClockWork() bool {
	if len(pt.next) > 0 {
		return true
	}
	_, ok := pt.timers.peek(processor.WallClock)
	return ok
}

// FireStreamTimers fires the stream-time timers due at stream time, in
// order; those that callbacks set for a due time fire in the same pass. It
// returns an error only when the instance must stop.
func (pt *Partition) FireStreamTimers() error {
	for {
		t, ok := pt.timers.peek(processor.StreamTime)
		if !ok || t.At.After(pt.stream) {
			return nil
		}
		if err := pt.fire(t); err != nil {
			return err
		}
	}
}

// NextWallClock returns the time of the partition's next wall-clock event
// (a timer or a punctuation boundary), false if it has none.
func (pt *Partition) NextWallClock() (time.Time, bool) {
	var next time.Time
	found := false
	if t, ok := pt.timers.peek(processor.WallClock); ok {
		next, found = t.At, true
	}
	for _, at := range pt.next {
		if !found || at.Before(next) {
			next, found = at, true
		}
	}
	return next, found
}

// WallClock returns the clock's reading, what a callback or handler sees as
// the wall clock.
func (pt *Partition) WallClock() time.Time { return pt.clock.Now() }

// WallClockStep runs the partition's first wall-clock event due now (by
// the clock),
// then the stream-time timers it made due, and reports whether there was
// one. The first event is the earliest; at one instant a timer goes before
// a punctuation, punctuations in their declared order. A punctuation more
// than one of whose boundaries are due runs once, for the latest, and is
// next due at the following boundary. A driver calls it until it reports
// false. It returns an error only when the instance must stop.
func (pt *Partition) WallClockStep() (bool, error) {
	now := pt.clock.Now()
	t, timer := pt.timers.peek(processor.WallClock)
	timer = timer && !t.At.After(now)
	pu := -1
	for i, at := range pt.next {
		if !at.After(now) && (pu < 0 || at.Before(pt.next[pu])) {
			pu = i
		}
	}
	var err error
	switch {
	case timer && (pu < 0 || !pt.next[pu].Before(t.At)):
		err = pt.fire(t)
	case pu >= 0:
		err = pt.punctuate(pu, now)
	default:
		return false, nil
	}
	if err == nil {
		err = pt.FireStreamTimers()
	}
	return true, err
}

// fire removes t and runs its callback.
func (pt *Partition) fire(t processor.RawTimer) error {
	pt.timers.remove(t)
	cb, err := pt.host.Callback(t)
	if err != nil {
		return err
	}
	// The removal goes first, so that the callback may set the timer
	// again, and is kept whatever becomes of the rest.
	if err := cb.RemoveTimer(t); err != nil {
		return err
	}
	h := pt.g.Timers[t.Name]
	if h == nil {
		// Read back from the store, of a callback the topology no
		// longer has.
		pt.g.logger().Warn("dropped a timer of an unknown callback", "group", pt.g.Name, "timer", t.Name, "partition", pt.p)
		cb.Done(Drop)
		return nil
	}
	return pt.run(cb, h, t)
}

// punctuate runs punctuation i for its latest boundary due at now.
func (pt *Partition) punctuate(i int, now time.Time) error {
	every := pt.g.Punctuations[i].Every
	at := pt.next[i]
	if every > 0 {
		at = at.Add(now.Sub(at) / every * every)
	}
	pt.next[i] = at.Add(every)
	t := processor.RawTimer{Kind: processor.WallClock, At: at}
	cb, err := pt.host.Callback(t)
	if err != nil {
		return err
	}
	return pt.run(cb, pt.g.Punctuations[i].Handler, t)
}

// run runs a callback and applies the group's policy to its result.
func (pt *Partition) run(cb Callback, h processor.RawTimerHandler, t processor.RawTimer) error {
	v, _, err := pt.g.Decide(h(cb, t), Source{Partition: pt.p, Offset: -1})
	if err != nil {
		return err
	}
	cb.Done(v)
	return nil
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
