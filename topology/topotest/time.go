package topotest

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/topology"
)

// groupState is what the driver keeps of a group besides its table: the
// state of each of its partitions.
type groupState struct {
	spec  *topology.GroupSpec
	parts []*partState // by partition
}

// partState is a group's partition, what the runtime's task for it keeps
// besides the table rows.
type partState struct {
	g *groupState
	p int32
	// state is the partition's internal store (windowed tables), in key
	// order for scans.
	state sortedMap
	// timers are the pending timers, by identity.
	timers map[timerID]processor.RawTimer
	// stream is the stream time: the largest event time processed from
	// the group's inputs other than its loop, zero before the first record.
	stream time.Time
	// late counts the records windowed tables dropped as late.
	late int
	// punctuations holds the next boundary of each of spec.Punctuations.
	punctuations []time.Time
}

func newGroupState(spec topology.GroupSpec, partitions int32, start time.Time) *groupState {
	g := &groupState{spec: &spec}
	for p := range partitions {
		t := &partState{g: g, p: p, timers: make(map[timerID]processor.RawTimer)}
		for _, pu := range spec.Punctuations {
			t.punctuations = append(t.punctuations, start.Add(pu.Every))
		}
		g.parts = append(g.parts, t)
	}
	return g
}

// timerID identifies a timer by all its fields. The time is kept as
// seconds and nanoseconds, so that equal instants in other locations, or
// with a monotonic reading, are one timer.
type timerID struct {
	name string
	kind processor.TimeKind
	sec  int64
	nsec int
	key  string
}

func idOf(t processor.RawTimer) timerID {
	return timerID{name: t.Name, kind: t.Kind, sec: t.At.Unix(), nsec: t.At.Nanosecond(), key: string(t.Key)}
}

// compareTimers orders timers as they fire: by time, then name, then key.
// Kind comes last only to make the order total; the two kinds fire at
// different moments.
func compareTimers(a, b processor.RawTimer) int {
	return cmp.Or(a.At.Compare(b.At), strings.Compare(a.Name, b.Name), bytes.Compare(a.Key, b.Key), cmp.Compare(a.Kind, b.Kind))
}

// nextTimer returns the partition's first timer of kind due at now, if
// any.
func (pt *partState) nextTimer(kind processor.TimeKind, now time.Time) (processor.RawTimer, bool) {
	var next processor.RawTimer
	found := false
	for _, t := range pt.timers {
		if t.Kind != kind || t.At.After(now) {
			continue
		}
		if !found || compareTimers(t, next) < 0 {
			next, found = t, true
		}
	}
	return next, found
}

// sortedMap is a map whose keys are also kept sorted, for prefix scans.
type sortedMap struct {
	keys   []string
	values map[string][]byte
}

func (m *sortedMap) get(k string) ([]byte, bool) {
	v, ok := m.values[k]
	return v, ok
}

func (m *sortedMap) set(k string, v []byte) {
	if m.values == nil {
		m.values = make(map[string][]byte)
	}
	if _, ok := m.values[k]; !ok {
		i, _ := slices.BinarySearch(m.keys, k)
		m.keys = slices.Insert(m.keys, i, k)
	}
	m.values[k] = v
}

func (m *sortedMap) delete(k string) {
	if _, ok := m.values[k]; !ok {
		return
	}
	delete(m.values, k)
	i, _ := slices.BinarySearch(m.keys, k)
	m.keys = slices.Delete(m.keys, i, i+1)
}

// scan calls fn for the keys beginning with prefix, in order, until fn
// fails. It visits a snapshot of the keys, so fn may write.
func (m *sortedMap) scan(prefix string, fn func(k string, v []byte) error) error {
	i, _ := slices.BinarySearch(m.keys, prefix)
	j := i
	for j < len(m.keys) && strings.HasPrefix(m.keys[j], prefix) {
		j++
	}
	for _, k := range slices.Clone(m.keys[i:j]) {
		v, ok := m.values[k]
		if !ok {
			continue
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// fireStreamTimers fires pt's stream-time timers due at its stream time,
// in order; those that callbacks set for a due time fire in the same pass.
func (d *Driver) fireStreamTimers(pt *partState) error {
	for {
		t, ok := pt.nextTimer(processor.StreamTime, pt.stream)
		if !ok {
			return nil
		}
		if err := d.fireTimer(pt, t); err != nil {
			return err
		}
	}
}

// fireTimer removes t from pt and runs its callback, applying the group's
// policy if it fails. It returns the error that stops the driver, if any.
func (d *Driver) fireTimer(pt *partState, t processor.RawTimer) error {
	if err := d.step(); err != nil {
		return err
	}
	// Removed first, so that the callback may set it again.
	delete(pt.timers, idOf(t))
	g := pt.g
	h := g.spec.Timers[t.Name]
	if h == nil {
		return fmt.Errorf("topotest: group %q has no timer callback %q", g.spec.Name, t.Name)
	}
	rc := &rawContext{d: d, t: pt, rec: Record{Partition: pt.p, Offset: -1, Timestamp: t.At, Key: t.Key}, callback: true}
	if err := h(rc, t); err != nil {
		return d.applyPolicy(g, err, nil)
	}
	return nil
}

// runPunctuation runs the i-th punctuation of pt's group in pt for the
// boundary at.
func (d *Driver) runPunctuation(pt *partState, i int, at time.Time) error {
	if err := d.step(); err != nil {
		return err
	}
	g := pt.g
	h := g.spec.Punctuations[i].Handler
	if h == nil {
		return fmt.Errorf("topotest: group %q: punctuation #%d has no callback", g.spec.Name, i+1)
	}
	rc := &rawContext{d: d, t: pt, rec: Record{Partition: pt.p, Offset: -1, Timestamp: at}, callback: true}
	if err := h(rc, processor.RawTimer{Kind: processor.WallClock, At: at}); err != nil {
		return d.applyPolicy(g, err, nil)
	}
	return nil
}

// AdvanceStreamTime raises the stream time of every partition of group to
// to, as if each had processed a record whose event time is to, and fires
// the stream-time timers that fall due, partition by partition, then
// processes the records they cause. Stream time never goes back: a time
// before the current one changes nothing. Use it to close windows and fire
// timers without feeding a record. Like Feed, it returns the error that
// stopped the driver, if any.
func (d *Driver) AdvanceStreamTime(group string, to time.Time) error {
	g := d.byName[group]
	if g == nil {
		return fmt.Errorf("topotest: advance stream time: no group %q", group)
	}
	return d.run(fmt.Sprintf("advance stream time of %q", group), func() error {
		for _, pt := range g.parts {
			pt.stream = later(pt.stream, to)
			if err := d.fireStreamTimers(pt); err != nil {
				return err
			}
		}
		return nil
	})
}

// AdvanceStreamTimeIn is AdvanceStreamTime for one partition of group: the
// others keep their stream time.
func (d *Driver) AdvanceStreamTimeIn(group string, partition int32, to time.Time) error {
	pt, err := d.part(group, partition)
	if err != nil {
		return fmt.Errorf("topotest: advance stream time: %w", err)
	}
	return d.run(fmt.Sprintf("advance stream time of %q partition %d", group, partition), func() error {
		pt.stream = later(pt.stream, to)
		return d.fireStreamTimers(pt)
	})
}

// part returns partition p of group.
func (d *Driver) part(group string, p int32) (*partState, error) {
	g := d.byName[group]
	switch {
	case g == nil:
		return nil, fmt.Errorf("no group %q", group)
	case p < 0 || p >= d.partitions:
		return nil, fmt.Errorf("group %q has no partition %d: topics have %d", group, p, d.partitions)
	}
	return g.parts[p], nil
}

// AdvanceWallClock moves the driver's wall clock forward by by. On the way,
// in order of time, it fires the wall-clock timers of every group partition
// that fall due, and runs each punctuation in each partition once for every
// boundary of its period crossed (counted from [DefaultTime], where the
// clock starts), with the clock set to the time of each; then it processes
// the records they cause. At one instant, groups go in the topology's
// order, then partitions in order, a partition's timers (in order of name
// and key) before its punctuations. Like Feed, it returns the error that
// stopped the driver, if any.
func (d *Driver) AdvanceWallClock(by time.Duration) error {
	if by < 0 {
		return fmt.Errorf("topotest: advance wall clock by %v: the clock does not go back", by)
	}
	target := d.clock.Add(by)
	return d.run(fmt.Sprintf("advance wall clock by %v", by), func() error {
		for {
			ev, ok := d.nextWallEvent(target)
			if !ok {
				break
			}
			d.clock = later(d.clock, ev.at)
			var err error
			if ev.punctuation >= 0 {
				every := ev.part.g.spec.Punctuations[ev.punctuation].Every
				ev.part.punctuations[ev.punctuation] = ev.at.Add(every)
				err = d.runPunctuation(ev.part, ev.punctuation, ev.at)
			} else {
				err = d.fireTimer(ev.part, ev.timer)
			}
			if err == nil {
				// A callback may set stream-time timers already due: they
				// fire after it, as after a record.
				err = d.fireStreamTimers(ev.part)
			}
			if err == nil {
				err = d.drain()
			}
			if err != nil {
				return err
			}
		}
		d.clock = target
		return nil
	})
}

// wallEvent is a wall-clock timer or a punctuation boundary of a group
// partition.
type wallEvent struct {
	part        *partState
	at          time.Time
	timer       processor.RawTimer
	punctuation int // index in the group's spec.Punctuations, -1 for a timer
}

// nextWallEvent returns the first wall-clock event due at until.
func (d *Driver) nextWallEvent(until time.Time) (wallEvent, bool) {
	var next wallEvent
	found := false
	// Strictly earlier events win, so that ties go to what is visited
	// first: the topology's order, partitions, timers, then punctuations.
	consider := func(ev wallEvent) {
		if !found || ev.at.Before(next.at) {
			next, found = ev, true
		}
	}
	for _, g := range d.groups {
		for _, pt := range g.parts {
			if t, ok := pt.nextTimer(processor.WallClock, until); ok {
				consider(wallEvent{part: pt, at: t.At, timer: t, punctuation: -1})
			}
			for i, at := range pt.punctuations {
				if !at.After(until) {
					consider(wallEvent{part: pt, at: at, punctuation: i})
				}
			}
		}
	}
	return next, found
}

// WallClock returns the driver's wall clock: [DefaultTime] until
// [Driver.AdvanceWallClock] moves it.
func (d *Driver) WallClock() time.Time { return d.clock }

// StreamTime returns the stream time of group: the largest event time it
// has processed from its inputs other than its loop, or was advanced to;
// the zero time before that. With more than one partition, it is the
// latest of the partitions' stream times; [Driver.StreamTimeIn] tells one.
func (d *Driver) StreamTime(group string) time.Time {
	var st time.Time
	if g := d.byName[group]; g != nil {
		for _, pt := range g.parts {
			st = later(st, pt.stream)
		}
	}
	return st
}

// StreamTimeIn returns the stream time of one partition of group, the
// zero time for a partition or group that does not exist.
func (d *Driver) StreamTimeIn(group string, partition int32) time.Time {
	if pt, err := d.part(group, partition); err == nil {
		return pt.stream
	}
	return time.Time{}
}

// Late returns the number of records that the windowed tables of group
// dropped, in all its partitions, because they came after their window's
// grace period.
func (d *Driver) Late(group string) int {
	n := 0
	if g := d.byName[group]; g != nil {
		for _, pt := range g.parts {
			n += pt.late
		}
	}
	return n
}

// LateIn is Late for one partition of group.
func (d *Driver) LateIn(group string, partition int32) int {
	if pt, err := d.part(group, partition); err == nil {
		return pt.late
	}
	return 0
}

// Timers returns the pending timers of group, of both kinds and all its
// partitions, sorted by time, name and key: with one partition, the order
// in which they would fire. The windowed tables' timers, named by
// [processor.CloseTimer] and [processor.ExpireTimer], are among them.
func (d *Driver) Timers(group string) []processor.RawTimer {
	g := d.byName[group]
	if g == nil {
		return nil
	}
	var out []processor.RawTimer
	for _, pt := range g.parts {
		out = pt.appendTimers(out)
	}
	slices.SortFunc(out, compareTimers)
	return out
}

// TimersIn returns the pending timers of one partition of group, in the
// order they would fire.
func (d *Driver) TimersIn(group string, partition int32) []processor.RawTimer {
	pt, err := d.part(group, partition)
	if err != nil {
		return nil
	}
	out := pt.appendTimers(nil)
	slices.SortFunc(out, compareTimers)
	return out
}

// appendTimers appends copies of pt's timers to out.
func (pt *partState) appendTimers(out []processor.RawTimer) []processor.RawTimer {
	for _, t := range pt.timers {
		t.Key = slices.Clone(t.Key)
		out = append(out, t)
	}
	return out
}

// WindowValue is the aggregate of one window of a windowed table.
type WindowValue[A any] struct {
	Window processor.Window
	Value  A
}

// Window returns the windows of key in the windowed table w of group g, in
// order of start, with their aggregates, as kept in the state of key's
// partition: the windows past their retention have been deleted. A key that does not
// encode or an aggregate that does not decode fails the test.
func Window[K, V, A any](d *Driver, g *topology.Group[K, V], w processor.Windowed[K, V, A], key K) []WindowValue[A] {
	d.t.Helper()
	gs := d.byName[g.Name()]
	if gs == nil {
		d.t.Fatalf("topotest: group %q is not in the topology", g.Name())
	}
	kb, err := g.Keys().Encode(key)
	if err != nil {
		d.t.Fatalf("topotest: windowed table %q: key: %v", w.Name(), err)
	}
	var out []WindowValue[A]
	gs.parts[d.partitionOf(kb)].state.scan(string(processor.WindowStatePrefix(w.Name(), kb)), func(k string, v []byte) error {
		win, ok := processor.ParseWindowStateKey([]byte(k))
		if !ok {
			d.t.Fatalf("topotest: windowed table %q: malformed state key %x", w.Name(), k)
		}
		agg, err := w.Values().Decode(v)
		if err != nil {
			d.t.Fatalf("topotest: windowed table %q: window %v: %v", w.Name(), win, err)
		}
		out = append(out, WindowValue[A]{Window: win, Value: agg})
		return nil
	})
	return out
}
