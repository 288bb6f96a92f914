package runtime

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/runnel-io/runnel/internal/partition"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime/internal/kafka"
	"github.com/runnel-io/runnel/topology"
)

// Emitter produces typed records to one topic, partitioned by key the way
// Kafka's default partitioner does, so that they land where a group
// consuming the topic expects them.
//
// Records of one key are written in the order they are emitted. A record
// is retried through an outage of the log for up to
// Options.DeliveryTimeout; once one fails, every record emitted to the
// same partition after the failure is known fails too, with an error
// matching ErrPartitionFailed, until Resume. So what the log holds of a
// key is a prefix of what was emitted, the records reported failed are
// exactly the ones it lacks, and a caller that re-emits them in order,
// after Resume, keeps the key's order.
//
// One case escapes: records emitted after the producer failed a record
// but before that failure reached the emitter can be written, after the
// gap, if the log is back by then. They are acknowledged as written (they
// are), and Flush reports how many there were, so that a caller that
// cares knows the key's order was broken. On a Kafka cluster, a leader
// change during an outage can also make a record reported failed be in
// the log after all (see runtime/internal/kafka's producer).
type Emitter[K, V any] struct {
	prod       kafka.Producer
	topic      topology.Topic[K, V]
	partitions int32

	mu sync.Mutex
	// seq numbers each partition's records in emit order.
	seq map[int32]uint64
	// failed holds, by partition, the first failure since Resume and the
	// number of the record that failed.
	failed map[int32]partitionFailure
	// failures counts the records failed since the last Flush, first is
	// the first of them, and afterGap counts the records written after a
	// failed one of their partition.
	failures, afterGap int
	first              error
}

// partitionFailure is the first failed record of a partition.
type partitionFailure struct {
	err error
	seq uint64
}

// ErrPartitionFailed is matched by the error of a record an Emitter did not
// send because an earlier record of its partition failed.
var ErrPartitionFailed = errors.New("an earlier record of the partition failed")

// NewEmitter returns an emitter to topic, which must exist (the runtime
// creates the topology's topics in New).
func NewEmitter[K, V any](ctx context.Context, rt *Runtime, topic topology.Topic[K, V]) (*Emitter[K, V], error) {
	n, err := rt.client.Partitions(ctx, topic.Name())
	if err != nil {
		return nil, fmt.Errorf("emitter to %s: %w", topic.Name(), err)
	}
	return newEmitter(rt.client, topic, n), nil
}

func newEmitter[K, V any](prod kafka.Producer, topic topology.Topic[K, V], partitions int32) *Emitter[K, V] {
	return &Emitter[K, V]{prod: prod, topic: topic, partitions: partitions, seq: map[int32]uint64{}, failed: map[int32]partitionFailure{}}
}

// EmitAsync sends a record and returns; done, if not nil, is called once
// with the outcome: on the producer's goroutine (keep it short, and do not
// emit from it), or, for a record that is not sent at all (it cannot be
// encoded, its partition failed, the runtime is closed), before EmitAsync
// returns, on the caller's.
func (e *Emitter[K, V]) EmitAsync(key K, value V, done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	r, err := e.record(key, value)
	if err != nil {
		done(err)
		return
	}
	p := r.Partition
	e.mu.Lock()
	f, failed := e.failed[p]
	if failed {
		e.failedLocked(f.err)
	}
	n := e.seq[p]
	e.seq[p]++
	e.mu.Unlock()
	if failed {
		done(fmt.Errorf("emit to %s/%d: %w (%w)", e.topic.Name(), p, ErrPartitionFailed, f.err))
		return
	}
	// Not under mu: Send may wait for room in the producer's buffer, which
	// the failures taking mu below make.
	e.prod.Send(r, func(r *kafka.Record, err error) {
		e.mu.Lock()
		if err != nil {
			err = fmt.Errorf("emit to %s: %w", e.topic.Name(), err)
			if _, ok := e.failed[p]; !ok {
				e.failed[p] = partitionFailure{err: err, seq: n}
			}
			e.failedLocked(err)
		} else if f, ok := e.failed[p]; ok && n > f.seq {
			e.afterGap++
		}
		e.mu.Unlock()
		done(err)
	})
}

// failedLocked counts a failed record.
func (e *Emitter[K, V]) failedLocked(err error) {
	e.failures++
	e.first = cmp.Or(e.first, err)
}

// Resume lets records of key's partition be sent again after a failure; it
// resumes the whole partition, every key of it. Flush first, so that no
// failure of a record sent before is still on its way, then re-emit the
// failed records, in their order, to keep it.
func (e *Emitter[K, V]) Resume(key K) error {
	k, err := e.topic.Keys().Encode(key)
	if err != nil {
		return fmt.Errorf("emitter to %s: key: %w", e.topic.Name(), err)
	}
	e.mu.Lock()
	delete(e.failed, partition.For(k, e.partitions))
	e.mu.Unlock()
	return nil
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

// Flush waits until every record emitted so far is acknowledged or failed,
// and reports how many failed since the previous Flush, with the first
// failure, so that records emitted without a done callback are not lost
// unnoticed, and how many were written after a gap (see Emitter).
func (e *Emitter[K, V]) Flush(ctx context.Context) error {
	if err := e.prod.Flush(ctx); err != nil {
		return fmt.Errorf("emitter to %s: %w", e.topic.Name(), err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	n, gap, first := e.failures, e.afterGap, e.first
	e.failures, e.afterGap, e.first = 0, 0, nil
	var errs []error
	if n > 0 {
		errs = append(errs, fmt.Errorf("emitter to %s: %d records failed since the last flush; the first: %w", e.topic.Name(), n, first))
	}
	if gap > 0 {
		errs = append(errs, fmt.Errorf("emitter to %s: %d records were written after an earlier record of their partition failed", e.topic.Name(), gap))
	}
	return errors.Join(errs...)
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
	return &kafka.Record{Topic: e.topic.Name(), Partition: partition.For(k, e.partitions), Key: k, Value: v, Timestamp: time.Now()}, nil
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
