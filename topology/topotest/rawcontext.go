package topotest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/runnel-io/runnel/internal/core"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/topology"
)

// rawContext is the driver's processor.RawContext: tables are maps, topics
// are slices, and every write succeeds at once. It serves a record (or
// callback) of the group partition t. For a timer or punctuation callback,
// rec is made up: no topic, offset -1, the timer's time and key.
type rawContext struct {
	d        *Driver
	t        *partState
	rec      Record
	callback bool
	// loop is true for a record of the group's loop, whose event time
	// does not count in stream time.
	loop bool
}

// spec returns the group's spec.
func (c *rawContext) spec() *topology.GroupSpec { return c.t.g.spec }

var _ processor.RawContext = (*rawContext)(nil)

func (c *rawContext) Context() context.Context    { return c.d.ctx }
func (c *rawContext) Topic() string               { return c.rec.Topic }
func (c *rawContext) Partition() int32            { return c.rec.Partition }
func (c *rawContext) Offset() int64               { return c.rec.Offset }
func (c *rawContext) Timestamp() time.Time        { return c.rec.Timestamp }
func (c *rawContext) Headers() []processor.Header { return c.rec.Headers }

func (c *rawContext) Row() ([]byte, bool, error) {
	return c.get(c.spec().Name, c.t.p, c.rec.Key)
}

func (c *rawContext) SetRow(value []byte) error {
	if c.spec().Table == "" {
		return fmt.Errorf("topotest: group %q has no table", c.spec().Name)
	}
	c.d.table(c.spec().Name, c.t.p)[string(c.rec.Key)] = slices.Clone(value)
	c.write(c.spec().Table, c.t.p, c.rec.Key, value, nil)
	return nil
}

func (c *rawContext) DeleteRow() error {
	if c.spec().Table == "" {
		return fmt.Errorf("topotest: group %q has no table", c.spec().Name)
	}
	delete(c.d.table(c.spec().Name, c.t.p), string(c.rec.Key))
	c.write(c.spec().Table, c.t.p, c.rec.Key, nil, nil)
	return nil
}

func (c *rawContext) JoinRow(group string) ([]byte, bool, error) {
	if !slices.ContainsFunc(c.spec().Joins, func(r topology.TableRef) bool { return r.Group == group }) {
		return nil, false, fmt.Errorf("topotest: group %q does not join %q", c.spec().Name, group)
	}
	return c.get(group, c.t.p, c.rec.Key)
}

func (c *rawContext) LookupRow(group string, key []byte) ([]byte, bool, error) {
	if !slices.ContainsFunc(c.spec().Lookups, func(r topology.TableRef) bool { return r.Group == group }) {
		return nil, false, fmt.Errorf("topotest: group %q does not look up %q", c.spec().Name, group)
	}
	// A view of the whole table: the row is in its key's partition.
	return c.get(group, c.d.partitionOf(key), key)
}

func (c *rawContext) Emit(topic string, key, value []byte, headers []processor.Header) error {
	if !slices.Contains(c.spec().Outputs, topic) {
		return fmt.Errorf("topotest: %q is not an output of group %q", topic, c.spec().Name)
	}
	c.write(topic, c.d.partitionOf(key), key, value, headers)
	return nil
}

func (c *rawContext) Loopback(key, value []byte) error {
	if c.spec().Loop == "" {
		return fmt.Errorf("topotest: group %q has no loop", c.spec().Name)
	}
	c.write(c.spec().Loop, c.d.partitionOf(key), key, value, nil)
	return nil
}

func (c *rawContext) SetTimestamp(ts time.Time) { c.rec.Timestamp = ts }

// StreamTime is the partition's stream time with the record's event time
// counted. A callback's time (a wall-clock timer's may be ahead of stream
// time) is not an event time, and a loop record's is another partition's,
// so neither counts.
func (c *rawContext) StreamTime() time.Time {
	if c.callback {
		return c.t.core.StreamTime()
	}
	return c.t.core.StreamTimeOf(c.rec.Timestamp, c.loop)
}

func (c *rawContext) WallClock() time.Time { return c.t.core.WallClock() }

func (c *rawContext) Rows(fn func(key, value []byte) error) error {
	if c.spec().Table == "" {
		return fmt.Errorf("topotest: group %q has no table", c.spec().Name)
	}
	rows := c.d.table(c.spec().Name, c.t.p)
	for _, k := range slices.Sorted(maps.Keys(rows)) {
		v, ok := rows[k]
		if !ok {
			continue // deleted by fn
		}
		if err := fn([]byte(k), slices.Clone(v)); err != nil {
			return err
		}
	}
	return nil
}

func (c *rawContext) StateGet(key []byte) ([]byte, bool, error) {
	if err := c.hasState(); err != nil {
		return nil, false, err
	}
	v, ok := c.t.state.get(string(key))
	return slices.Clone(v), ok, nil
}

func (c *rawContext) StateScan(prefix []byte, fn func(key, value []byte) error) error {
	if err := c.hasState(); err != nil {
		return err
	}
	return c.t.state.scan(string(prefix), func(k string, v []byte) error {
		return fn([]byte(k), slices.Clone(v))
	})
}

func (c *rawContext) StateSet(key, value []byte) error {
	if err := c.hasState(); err != nil {
		return err
	}
	if value == nil {
		value = []byte{} // nil would read as a tombstone in the changelog
	}
	c.t.state.set(string(key), slices.Clone(value))
	c.write(c.spec().State, c.t.p, key, value, nil)
	return nil
}

func (c *rawContext) StateDelete(key []byte) error {
	if err := c.hasState(); err != nil {
		return err
	}
	c.t.state.delete(string(key))
	c.write(c.spec().State, c.t.p, key, nil, nil)
	return nil
}

func (c *rawContext) hasState() error {
	if c.spec().State == "" {
		return fmt.Errorf("topotest: group %q has no state: it declares no windowed table or timer", c.spec().Name)
	}
	return nil
}

func (c *rawContext) SetTimer(t processor.RawTimer) error {
	if _, err := c.t.core.SetTimer(t); err != nil {
		return fmt.Errorf("topotest: %w", err)
	}
	return nil
}

func (c *rawContext) DeleteTimer(t processor.RawTimer) error {
	if _, err := c.t.core.DeleteTimer(t); err != nil {
		return fmt.Errorf("topotest: %w", err)
	}
	return nil
}

// RemoveTimer is core.Callback's. The driver keeps timers only in the
// core, so there is nothing to write.
func (c *rawContext) RemoveTimer(processor.RawTimer) error { return nil }

// Done is core.Callback's: a failed callback's writes were never made (the
// typed Context makes them only on success), so there is only the skip to
// count.
func (c *rawContext) Done(v core.Verdict) {
	if v == core.Skip {
		c.d.skipped[c.spec().Name]++
	}
}

func (c *rawContext) Late() { c.t.late++ }

// get returns a copy of a row of partition p, as a store would.
func (c *rawContext) get(group string, p int32, key []byte) ([]byte, bool, error) {
	v, ok := c.d.table(group, p)[string(key)]
	return slices.Clone(v), ok, nil
}

// write appends a record the handler caused to partition p of topic, with
// the event time of the record that caused it (a callback's: the timer's
// time).
func (c *rawContext) write(topic string, p int32, key, value []byte, headers []processor.Header) {
	c.d.append(Record{
		Topic:     topic,
		Partition: p,
		Timestamp: c.rec.Timestamp,
		Key:       slices.Clone(key),
		Value:     slices.Clone(value),
		Headers:   slices.Clone(headers),
		Group:     c.spec().Name,
	})
}
