package topotest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/runnel-io/runnel/internal/core"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/topology"
)

// groupState is what the driver keeps of a group besides its table: the
// state of each of its partitions.
type groupState struct {
	spec  *topology.GroupSpec
	core  *core.Group
	parts []*partState // by partition
}

// partState is a group's partition, what the runtime's task for it keeps
// besides the table rows. Its timers, stream time and punctuations are in
// its core, which runs them by the same rules as the runtime's.
type partState struct {
	d    *Driver
	g    *groupState
	p    int32
	core *core.Partition
	// state is the partition's internal store (windowed tables), in key
	// order for scans.
	state sortedMap
	// late counts the records windowed tables dropped as late.
	late int
}

// driverClock is the driver's wall clock, as the core reads it.
type driverClock struct{ d *Driver }

func (c driverClock) Now() time.Time { return c.d.clock }

func newGroupState(d *Driver, spec topology.GroupSpec, partitions int32) *groupState {
	g := &groupState{spec: &spec, core: &core.Group{
		Name:   spec.Name,
		Policy: spec.Policy,
		Timers: spec.Timers,
		// An error that is not the adapter's is the driver's own.
		Fatal: func(err error) bool {
			var re *processor.RecordError
			return !errors.As(err, &re)
		},
	}}
	for _, pu := range spec.Punctuations {
		g.core.Punctuations = append(g.core.Punctuations, core.Punctuation{Every: pu.Every, Handler: pu.Handler})
	}
	for p := range partitions {
		pt := &partState{d: d, g: g, p: p}
		pt.core = core.NewPartition(g.core, p, pt, driverClock{d}, time.Time{}, nil)
		g.parts = append(g.parts, pt)
	}
	return g
}

// Callback is core.Host's: the context of a timer or punctuation
// callback, counted as a step of the current call.
func (pt *partState) Callback(t processor.RawTimer) (core.Callback, error) {
	if err := pt.d.step(); err != nil {
		return nil, err
	}
	return &rawContext{d: pt.d, t: pt, rec: Record{Partition: pt.p, Offset: -1, Timestamp: t.At, Key: t.Key}, callback: true}, nil
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
			if err := pt.core.AdvanceStreamTime(to); err != nil {
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
		return pt.core.AdvanceStreamTime(to)
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
// the records they cause. The clock moves through each boundary in turn,
// as a runtime that keeps up does; a runtime that falls behind (a pause
// longer than a period) runs a punctuation once for the latest boundary it
// missed, not once for each. At one instant, groups go in the topology's
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
			pt, at := d.nextWallClock(target)
			if pt == nil {
				break
			}
			d.clock = later(d.clock, at)
			// The event, then the stream-time timers it made due, then
			// the records they caused.
			if _, err := pt.core.WallClockStep(); err != nil {
				return err
			}
			if err := d.drain(); err != nil {
				return err
			}
		}
		d.clock = target
		return nil
	})
}

// nextWallClock returns the group partition whose next wall-clock event
// (a timer or a punctuation boundary) comes first, at until at the latest,
// and its time; nil if none does. Ties go to what is visited first: the
// topology's order, then partitions.
func (d *Driver) nextWallClock(until time.Time) (*partState, time.Time) {
	var next *partState
	var at time.Time
	for _, g := range d.groups {
		for _, pt := range g.parts {
			if t, ok := pt.core.NextWallClock(); ok && !t.After(until) && (next == nil || t.Before(at)) {
				next, at = pt, t
			}
		}
	}
	return next, at
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
			st = later(st, pt.core.StreamTime())
		}
	}
	return st
}

// StreamTimeIn returns the stream time of one partition of group, the
// zero time for a partition or group that does not exist.
func (d *Driver) StreamTimeIn(group string, partition int32) time.Time {
	if pt, err := d.part(group, partition); err == nil {
		return pt.core.StreamTime()
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
		out = append(out, pt.core.Timers()...)
	}
	slices.SortFunc(out, core.CompareTimers)
	return out
}

// TimersIn returns the pending timers of one partition of group, in the
// order they would fire.
func (d *Driver) TimersIn(group string, partition int32) []processor.RawTimer {
	pt, err := d.part(group, partition)
	if err != nil {
		return nil
	}
	return pt.core.Timers()
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
