package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/runnel-io/runnel/runtime/internal/kafka"
	"github.com/runnel-io/runnel/state"
)

// view is a local, continuously updated copy of every partition of a
// table's changelog, in memory. Lookups read through it, and View exposes
// it typed.
type view struct {
	topic   string
	store   *state.Memory
	ready   chan struct{} // closed once every partition has caught up
	mu      sync.Mutex
	err     error         // first error of a partition's reader
	changed chan struct{} // closed and replaced on every update
}

// startView starts reading every partition of topic from its log start
// and keeps following it until ctx ends.
func startView(ctx context.Context, rd reader, offsets func(context.Context, string, int32) (int64, int64, error), topic string, partitions int32) (*view, error) {
	v := &view{topic: topic, store: state.NewMemory(), ready: make(chan struct{}), changed: make(chan struct{})}
	var behind sync.WaitGroup
	for p := range partitions {
		start, hw, err := offsets(ctx, topic, p)
		if err != nil {
			return nil, fmt.Errorf("view of %s: %w", topic, err)
		}
		behind.Add(1)
		var once sync.Once
		caughtUp := func() { once.Do(behind.Done) }
		if start >= hw {
			caughtUp()
		}
		go func() {
			var b state.Batch
			// A fetch's records go to the store in one write, and readers
			// are woken once per fetch. The view has caught up once the
			// fetch position passes the high watermark it started with,
			// whatever the last offsets hold (markers, compaction gaps).
			err := rd.ReadBatches(ctx, topic, p, start, -1, func(recs []*kafka.Record, next int64) error {
				if len(recs) > 0 {
					b.Reset()
					for _, r := range recs {
						addChange(&b, r)
					}
					if err := v.store.Apply(&b); err != nil {
						return err
					}
					v.mu.Lock()
					close(v.changed)
					v.changed = make(chan struct{})
					v.mu.Unlock()
				}
				if next >= hw {
					caughtUp()
				}
				return nil
			})
			if err != nil && ctx.Err() == nil {
				v.mu.Lock()
				if v.err == nil {
					v.err = fmt.Errorf("view of %s-%d: %w", topic, p, err)
				}
				v.mu.Unlock()
			}
			caughtUp()
		}()
	}
	go func() {
		behind.Wait()
		close(v.ready)
	}()
	return v, nil
}

// wait blocks until the view has caught up with the table as it was when
// the view started.
func (v *view) wait(ctx context.Context) error {
	select {
	case <-v.ready:
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (v *view) get(key []byte) ([]byte, bool, error) {
	v.mu.Lock()
	err := v.err
	v.mu.Unlock()
	if err != nil {
		return nil, false, err
	}
	val, ok, err := v.store.Get(key)
	if errors.Is(err, state.ErrClosed) {
		return nil, false, fmt.Errorf("view of %s closed: %w", v.topic, err)
	}
	return val, ok, err
}

// changes returns a channel closed at the next update of the view.
func (v *view) changes() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.changed
}
