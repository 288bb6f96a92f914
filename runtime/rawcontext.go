package runtime

import (
	"context"
	"fmt"
	"time"

	"github.com/runnel-io/runnel/internal/core"
	"github.com/runnel-io/runnel/internal/partition"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime/internal/kafka"
)

// rawContext is processor.RawContext for one record of a task. Table
// writes go to the task's changed rows at once (the next record of the key
// must see them; the store gets them once their changelog records are
// acknowledged) and, like emits and loopbacks, are queued as records to
// send once the handler has returned, so the task can count them against
// the input offset before any can be acknowledged. The typed Context
// buffers a handler's writes and makes them only if it succeeds, so a
// failed handler leaves no change without its changelog record.
type rawContext struct {
	t *task
	// r is the record; a timer's or punctuation's has Offset -1, no topic
	// and the timer's key and time.
	r     *kafka.Record
	ts    time.Time // the event time
	sends []*kafka.Record
	// keyless is true in a punctuation: there is no row.
	keyless bool
	// callback is true in a timer or punctuation callback, whose time is
	// not an event time.
	callback bool
	// removal is the number of sends that remove a fired timer: kept
	// whatever becomes of the callback's other writes.
	removal int
	// loop is true for a record of the group's loop topic: it does not
	// move stream time.
	loop bool
}

var _ processor.RawContext = (*rawContext)(nil)

func (rc *rawContext) Context() context.Context { return rc.t.ctx }
func (rc *rawContext) Topic() string            { return rc.r.Topic }
func (rc *rawContext) Partition() int32         { return rc.r.Partition }
func (rc *rawContext) Offset() int64            { return rc.r.Offset }
func (rc *rawContext) Timestamp() time.Time     { return rc.ts }

func (rc *rawContext) Headers() []processor.Header { return fromKafkaHeaders(rc.r.Headers) }

func (rc *rawContext) Row() ([]byte, bool, error) {
	if rc.t.table == nil {
		return nil, false, fmt.Errorf("%w: group %s has no table", errInstance, rc.t.g.spec.Name)
	}
	v, ok, err := rc.t.table.get(rc.r.Key)
	if err != nil {
		return nil, false, fmt.Errorf("%w: read table row: %w", errInstance, err)
	}
	return v, ok, nil
}

func (rc *rawContext) SetRow(value []byte) error { return rc.writeRow(value) }

func (rc *rawContext) DeleteRow() error { return rc.writeRow(nil) }

func (rc *rawContext) writeRow(value []byte) error {
	t := rc.t
	if t.table == nil {
		return fmt.Errorf("%w: group %s has no table", errInstance, t.g.spec.Name)
	}
	t.table.set(rc.r.Key, value)
	rc.sends = append(rc.sends, &kafka.Record{Topic: t.table.topic, Partition: t.p, Key: rc.r.Key, Value: value, Timestamp: rc.ts})
	return nil
}

func (rc *rawContext) JoinRow(group string) ([]byte, bool, error) {
	st := rc.t.joins[group]
	if st == nil {
		return nil, false, fmt.Errorf("%w: group %s does not join %s", errInstance, rc.t.g.spec.Name, group)
	}
	v, ok, err := st.Get(rc.r.Key)
	if err != nil {
		return nil, false, fmt.Errorf("%w: read joined table %s: %w", errInstance, group, err)
	}
	return v, ok, nil
}

func (rc *rawContext) LookupRow(group string, key []byte) ([]byte, bool, error) {
	v := rc.t.g.lookups[group]
	if v == nil {
		return nil, false, fmt.Errorf("%w: group %s does not look up %s", errInstance, rc.t.g.spec.Name, group)
	}
	val, ok, err := v.get(key)
	if err != nil {
		return nil, false, fmt.Errorf("%w: look up %s: %w", errInstance, group, err)
	}
	return val, ok, nil
}

func (rc *rawContext) Emit(topic string, key, value []byte, headers []processor.Header) error {
	n, ok := rc.t.g.partitions[topic]
	if !ok {
		return fmt.Errorf("%w: emit to %s: partition count unknown", errInstance, topic)
	}
	rc.sends = append(rc.sends, &kafka.Record{Topic: topic, Partition: partition.For(key, n), Key: key, Value: value, Headers: toKafkaHeaders(headers), Timestamp: rc.ts})
	return nil
}

func (rc *rawContext) Loopback(key, value []byte) error {
	loop := rc.t.g.spec.Loop
	return rc.Emit(loop, key, value, nil)
}

func (rc *rawContext) SetTimestamp(ts time.Time) { rc.ts = ts }

func (rc *rawContext) StreamTime() time.Time {
	if rc.callback {
		return rc.t.core.StreamTime()
	}
	return rc.t.core.StreamTimeOf(rc.ts, rc.loop)
}

func (rc *rawContext) WallClock() time.Time { return rc.t.core.WallClock() }

func (rc *rawContext) Rows(fn func(key, value []byte) error) error {
	if rc.t.table == nil {
		return fmt.Errorf("%w: group %s has no table", errInstance, rc.t.g.spec.Name)
	}
	return rc.t.table.scan(nil, fn)
}

// errNoState is the error of state and timer calls in a group that
// declared no windowed table and no timer: the topology forbids them.
func (rc *rawContext) errNoState() error {
	return fmt.Errorf("%w: group %s declared no windowed table or timer", errInstance, rc.t.g.spec.Name)
}

func (rc *rawContext) StateGet(key []byte) ([]byte, bool, error) {
	if rc.t.state == nil {
		return nil, false, rc.errNoState()
	}
	v, ok, err := rc.t.state.get(dataKey(key))
	if err != nil {
		return nil, false, fmt.Errorf("%w: read state: %w", errInstance, err)
	}
	return v, ok, nil
}

func (rc *rawContext) StateScan(prefix []byte, fn func(key, value []byte) error) error {
	if rc.t.state == nil {
		return rc.errNoState()
	}
	return rc.t.state.scan(dataKey(prefix), func(k, v []byte) error { return fn(k[1:], v) })
}

func (rc *rawContext) StateSet(key, value []byte) error {
	if rc.t.state == nil {
		return rc.errNoState()
	}
	return rc.stateWrite(dataKey(key), value)
}

func (rc *rawContext) StateDelete(key []byte) error {
	if rc.t.state == nil {
		return rc.errNoState()
	}
	return rc.stateWrite(dataKey(key), nil)
}

func (rc *rawContext) SetTimer(tm processor.RawTimer) error {
	if rc.t.state == nil {
		return rc.errNoState()
	}
	added, err := rc.t.core.SetTimer(tm)
	if err != nil || !added {
		return err
	}
	return rc.stateWrite(timerKey(tm), []byte{})
}

func (rc *rawContext) DeleteTimer(tm processor.RawTimer) error {
	if rc.t.state == nil {
		return rc.errNoState()
	}
	removed, err := rc.t.core.DeleteTimer(tm)
	if err != nil || !removed {
		return err
	}
	return rc.stateWrite(timerKey(tm), nil)
}

func (rc *rawContext) Late() { rc.t.g.stats.Late.Add(1) }

// stateWrite changes a key of the group's state (nil deletes) locally and
// queues the change for its changelog.
func (rc *rawContext) stateWrite(key, value []byte) error {
	t := rc.t
	t.state.set(key, value)
	rc.sends = append(rc.sends, &kafka.Record{Topic: t.state.topic, Partition: t.p, Key: key, Value: value, Timestamp: rc.ts})
	return nil
}

// RemoveTimer is core.Callback's: it writes the removal of the timer that
// fires.
func (rc *rawContext) RemoveTimer(tm processor.RawTimer) error {
	if rc.t.state == nil {
		return rc.errNoState()
	}
	err := rc.stateWrite(timerKey(tm), nil)
	rc.removal = len(rc.sends)
	return err
}

// Done is core.Callback's: it hands the callback's writes that the
// verdict keeps to the task, to send with the step's others.
func (rc *rawContext) Done(v core.Verdict) {
	t := rc.t
	t.count(v, false)
	if v == core.Keep {
		t.out = append(t.out, rc.sends...)
	} else {
		t.out = append(t.out, rc.sends[:rc.removal]...)
	}
}
