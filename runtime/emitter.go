package runtime

import (
	"context"
	"fmt"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime/internal/kafka"
	"github.com/runnel-io/runnel/topology"
)

// Emitter produces typed records to one topic, partitioned by key the way
// Kafka's default partitioner does, so that they land where a group
// consuming the topic expects them.
type Emitter[K, V any] struct {
	rt         *Runtime
	topic      topology.Topic[K, V]
	partitions int32
}

// NewEmitter returns an emitter to topic, which must exist (the runtime
// creates the topology's topics in New).
func NewEmitter[K, V any](ctx context.Context, rt *Runtime, topic topology.Topic[K, V]) (*Emitter[K, V], error) {
	n, err := rt.client.Partitions(ctx, topic.Name())
	if err != nil {
		return nil, fmt.Errorf("emitter to %s: %w", topic.Name(), err)
	}
	return &Emitter[K, V]{rt: rt, topic: topic, partitions: n}, nil
}

// EmitAsync sends a record and returns; done, if not nil, is called once
// with the outcome, on the producer's goroutine (keep it short). Records
// of one key are delivered in the order they are emitted.
func (e *Emitter[K, V]) EmitAsync(key K, value V, done func(error)) {
	r, err := e.record(key, value)
	if err != nil {
		if done != nil {
			done(err)
		}
		return
	}
	e.rt.client.Send(r, func(_ *kafka.Record, err error) {
		if done != nil {
			if err != nil {
				err = fmt.Errorf("emit to %s: %w", e.topic.Name(), err)
			}
			done(err)
		}
	})
}

// Emit sends a record and waits until it is acknowledged.
func (e *Emitter[K, V]) Emit(ctx context.Context, key K, value V) error {
	ch := make(chan error, 1)
	e.EmitAsync(key, value, func(err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("emit to %s: %w", e.topic.Name(), ctx.Err())
	}
}

// Flush waits until every record emitted so far is acknowledged or failed.
func (e *Emitter[K, V]) Flush(ctx context.Context) error {
	return e.rt.client.Flush(ctx)
}

func (e *Emitter[K, V]) record(key K, value V) (*kafka.Record, error) {
	k, err := e.topic.Keys().Encode(key)
	if err != nil {
		return nil, fmt.Errorf("emit to %s: key: %w", e.topic.Name(), err)
	}
	v, err := e.topic.Values().Encode(value)
	if err != nil {
		return nil, fmt.Errorf("emit to %s: value: %w", e.topic.Name(), err)
	}
	return &kafka.Record{Topic: e.topic.Name(), Partition: kafka.PartitionFor(k, e.partitions), Key: k, Value: v, Timestamp: time.Now()}, nil
}

// View is a read-only, continuously updated local copy of a group's table
// (all partitions), for lookups and for serving reads.
type View[K, V any] struct {
	v      *view
	keys   processor.Codec[K]
	values processor.Codec[V]
}

// NewView starts a view of g's table. It follows the changelog until ctx
// ends; WaitCaughtUp waits for the initial catch-up.
func NewView[K, V any](ctx context.Context, rt *Runtime, g *topology.Group[K, V]) (*View[K, V], error) {
	topic := topology.TableTopic(g.Name())
	n, err := rt.client.Partitions(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("view of %s: %w", g.Name(), err)
	}
	v, err := startView(ctx, rt.client, rt.client.Offsets, topic, n)
	if err != nil {
		return nil, err
	}
	return &View[K, V]{v: v, keys: g.Keys(), values: g.Values()}, nil
}

// WaitCaughtUp blocks until the view holds the table as it was when the
// view started, or ctx ends.
func (v *View[K, V]) WaitCaughtUp(ctx context.Context) error { return v.v.wait(ctx) }

// Changed returns a channel that is closed at the next update of the
// view: take it, read, and wait on it to see the next change.
func (v *View[K, V]) Changed() <-chan struct{} { return v.v.changes() }

// Get returns the row of key; ok is false if there is none.
func (v *View[K, V]) Get(key K) (value V, ok bool, err error) {
	k, err := v.keys.Encode(key)
	if err != nil {
		return value, false, fmt.Errorf("view of %s: key: %w", v.v.topic, err)
	}
	b, ok, err := v.v.get(k)
	if err != nil || !ok {
		return value, false, err
	}
	value, err = v.values.Decode(b)
	if err != nil {
		return value, false, fmt.Errorf("view of %s: value: %w", v.v.topic, err)
	}
	return value, true, nil
}

// Iterate calls fn for every row, in key byte order, until fn returns
// false.
func (v *View[K, V]) Iterate(fn func(key K, value V) bool) error {
	it := v.v.store.Iterate(nil, nil)
	defer it.Close()
	for it.Next() {
		k, err := v.keys.Decode(it.Key())
		if err != nil {
			return fmt.Errorf("view of %s: key: %w", v.v.topic, err)
		}
		val, err := v.values.Decode(it.Value())
		if err != nil {
			return fmt.Errorf("view of %s: value: %w", v.v.topic, err)
		}
		if !fn(k, val) {
			break
		}
	}
	return it.Err()
}
