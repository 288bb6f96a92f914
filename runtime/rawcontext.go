package runtime

import (
	"context"
	"fmt"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime/internal/kafka"
)

// rawContext is processor.RawContext for one record of a task. Table
// writes go to the task's changed rows at once (the next record of the key
// must see them; the store gets them at the next checkpoint) and, like
// emits and loopbacks, are queued as records to send once the handler has
// returned, so the task can count them against the input offset before any
// can be acknowledged.
type rawContext struct {
	t     *task
	r     *kafka.Record
	sends []*kafka.Record
}

var _ processor.RawContext = (*rawContext)(nil)

func (rc *rawContext) Context() context.Context { return rc.t.ctx }
func (rc *rawContext) Topic() string            { return rc.r.Topic }
func (rc *rawContext) Partition() int32         { return rc.r.Partition }
func (rc *rawContext) Offset() int64            { return rc.r.Offset }
func (rc *rawContext) Timestamp() time.Time     { return rc.r.Timestamp }

func (rc *rawContext) Headers() []processor.Header { return fromKafkaHeaders(rc.r.Headers) }

func (rc *rawContext) Row() ([]byte, bool, error) {
	if rc.t.store == nil {
		return nil, false, fmt.Errorf("%w: group %s has no table", errInstance, rc.t.g.spec.Name)
	}
	v, ok, err := rc.t.row(rc.r.Key)
	if err != nil {
		return nil, false, fmt.Errorf("%w: read table row: %w", errInstance, err)
	}
	return v, ok, nil
}

func (rc *rawContext) SetRow(value []byte) error { return rc.writeRow(value) }

func (rc *rawContext) DeleteRow() error { return rc.writeRow(nil) }

func (rc *rawContext) writeRow(value []byte) error {
	t := rc.t
	if t.store == nil {
		return fmt.Errorf("%w: group %s has no table", errInstance, t.g.spec.Name)
	}
	if err := t.setRow(rc.r.Key, value); err != nil {
		return err
	}
	rc.sends = append(rc.sends, &kafka.Record{Topic: t.g.spec.Table, Partition: t.p, Key: rc.r.Key, Value: value, Timestamp: rc.r.Timestamp})
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
	rc.sends = append(rc.sends, &kafka.Record{Topic: topic, Partition: kafka.PartitionFor(key, n), Key: key, Value: value, Headers: toKafkaHeaders(headers), Timestamp: rc.r.Timestamp})
	return nil
}

func (rc *rawContext) Loopback(key, value []byte) error {
	loop := rc.t.g.spec.Loop
	return rc.Emit(loop, key, value, nil)
}
