package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/runnel-io/runnel/runtime/internal/kafka"
	"github.com/runnel-io/runnel/state"
)

// restoreProgressEvery is how often a long restore logs its progress.
const restoreProgressEvery = 2 * time.Second

// A restore gathers changelog records into one store write until the
// rows it would write (the latest record of each key) reach
// restoreBatchBytes, or the records gathered, whose fetch buffers are held
// until the write, reach restoreHeldBytes. Each write carries its
// checkpoint. restoreBatchBytes stays below LevelDB's default write buffer
// (4 MiB): a larger write takes LevelDB's transaction path, which waits
// for its compactions.
const (
	restoreBatchBytes = 2 << 20
	restoreHeldBytes  = 8 << 20
)

// restoreParallelism bounds the partitions an instance restores at once.
// Each restore is a fetch loop on its own connection and a store of its
// own, so they share nothing but the machine.
const restoreParallelism = 8

// restore brings a store up to date with partition p of a changelog: from
// the store's checkpoint (or the log start) to the high watermark at the
// time it starts. It returns the number of records applied. progress, if
// not nil, is told at the start, after each batch and at the end how many
// records are applied and how many are left.
//
// The end is judged by the read's fetch position, not by the records
// seen: a changelog whose last offsets hold transaction markers, or
// records compaction removed, ends the restore all the same, and the
// checkpoint is that position.
//
// Fetching and writing overlap (see restoreRange). Of the records of one
// store write only the latest of each key is written, since a changelog's
// later record of a key replaces its earlier ones.
func restore(ctx context.Context, rd reader, offsets func(ctx context.Context, topic string, p int32) (int64, int64, error), st state.Store, topic string, p int32, logger *slog.Logger, progress func(n, remaining int64)) (int64, error) {
	if progress == nil {
		progress = func(int64, int64) {}
	}
	start, hw, err := offsets(ctx, topic, p)
	if err != nil {
		return 0, fmt.Errorf("restore %s-%d: %w", topic, p, err)
	}
	from, ok, err := st.Checkpoint()
	if err != nil {
		return 0, fmt.Errorf("restore %s-%d: %w", topic, p, err)
	}
	if !ok || from < start {
		// The changelog no longer holds what the store was built from (or
		// the store is new): rebuild from the start.
		if ok {
			logger.Warn("store checkpoint below the changelog's log start; restoring from scratch", "topic", topic, "partition", p, "checkpoint", from, "log_start", start)
		}
		if err := st.Clear(); err != nil {
			return 0, fmt.Errorf("restore %s-%d: %w", topic, p, err)
		}
		from = start
	}
	if from >= hw {
		progress(0, 0)
		return 0, nil
	}
	progress(0, hw-from)
	began := time.Now()
	n, err := restoreRange(ctx, rd, st, topic, p, from, hw, logger, progress)
	if err != nil {
		return n, fmt.Errorf("restore %s-%d: %w", topic, p, err)
	}
	logger.Info("restored table partition", "topic", topic, "partition", p, "records", n, "from", from, "to", hw, "took", time.Since(began))
	return n, nil
}

// restoreRange applies [from, hw) of the changelog to st and returns the
// records read. Reading and writing overlap: the read, on a goroutine of
// its own, keeps the latest record of each key until it has a store
// write's worth, then hands the write to this goroutine and goes on
// reading while the store takes it. Two batches take turns.
func restoreRange(ctx context.Context, rd reader, st state.Store, topic string, p int32, from, hw int64, logger *slog.Logger, progress func(n, remaining int64)) (int64, error) {
	began := time.Now()
	// A write: its batch, the checkpoint after it and the records read
	// up to it.
	type write struct {
		b    *state.Batch
		next int64
		n    int64
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	writes := make(chan write, 1)
	free := make(chan *state.Batch, 2)
	free <- new(state.Batch)
	free <- new(state.Batch)
	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(writes)
		var (
			rows latestRows
			n    int64
		)
		hand := func(next int64) error {
			var b *state.Batch
			select {
			case b = <-free:
			case <-rctx.Done():
				return rctx.Err()
			}
			b.Reset()
			rows.into(b)
			rows.reset()
			b.SetCheckpoint(next)
			select {
			case writes <- write{b, next, n}:
				return nil
			case <-rctx.Done():
				return rctx.Err()
			}
		}
		pos := from
		readErr = rd.ReadBatches(rctx, topic, p, from, hw, func(recs []*kafka.Record, next int64) error {
			for _, r := range recs {
				n++
				rows.add(r)
				if rows.bytes >= restoreBatchBytes {
					// A large fetch goes to the store in several
					// writes, each checkpointed after its last record.
					if err := hand(r.Offset + 1); err != nil {
						return err
					}
				}
			}
			pos = next
			if rows.bytes < restoreBatchBytes && rows.held < restoreHeldBytes && next < hw {
				return nil
			}
			return hand(next)
		})
		if readErr == nil && (len(rows.rows) > 0 || pos < hw) {
			// The read ended without a fetch at hw: a changelog whose
			// tail compaction removed. Its end is hw all the same.
			readErr = hand(max(pos, hw))
		}
	})
	// Whatever ends the loop below, the read ends before restore returns.
	defer func() {
		cancel()
		for range writes {
		}
		wg.Wait()
	}()

	var n int64
	lastLog := began
	for w := range writes {
		if err := st.Apply(w.b); err != nil {
			return n, err
		}
		n = w.n
		free <- w.b
		progress(n, max(hw-w.next, 0))
		if now := time.Now(); now.Sub(lastLog) >= restoreProgressEvery {
			lastLog = now
			rate := float64(w.next-from) / now.Sub(began).Seconds()
			left := time.Duration(float64(hw-w.next) / rate * float64(time.Second))
			logger.Info("restoring table partition", "topic", topic, "partition", p, "records", n,
				"offset", w.next, "end", hw, "records_per_sec", int64(rate), "time_left", left.Round(time.Second))
		}
	}
	// The channel is closed: the read is over, and readErr is set.
	wg.Wait()
	if readErr != nil {
		if errors.Is(readErr, context.Canceled) && ctx.Err() != nil {
			readErr = ctx.Err()
		}
		return n, readErr
	}
	return n, nil
}

// latestRows holds the latest changelog record of each key among those
// added since the last reset: a hash table of indexes into rows, open
// addressing with linear probing, which costs no allocation per record
// (a map keyed by string would copy every key). The keys and values alias
// the fetches' buffers, which they keep alive until the reset.
type latestRows struct {
	seed  maphash.Seed
	slots []int32 // index into rows plus one; 0 is empty
	rows  []row
	bytes int // keys and values of rows
	held  int // keys and values of every record added
}

// row is a key and its latest value, nil for a tombstone.
type row struct{ key, value []byte }

func (l *latestRows) add(r *kafka.Record) {
	size := len(r.Key) + len(r.Value)
	l.held += size
	if 2*(len(l.rows)+1) > len(l.slots) {
		l.grow()
	}
	mask := uint64(len(l.slots) - 1)
	for i := maphash.Bytes(l.seed, r.Key) & mask; ; i = (i + 1) & mask {
		s := l.slots[i]
		if s == 0 {
			l.slots[i] = int32(len(l.rows) + 1)
			l.rows = append(l.rows, row{r.Key, r.Value})
			l.bytes += size
			return
		}
		if old := &l.rows[s-1]; bytes.Equal(old.key, r.Key) {
			l.bytes += size - len(old.key) - len(old.value)
			old.value = r.Value
			return
		}
	}
}

// grow doubles the table (or makes its first) and places rows again.
func (l *latestRows) grow() {
	if l.slots == nil {
		l.seed = maphash.MakeSeed()
	}
	l.slots = make([]int32, max(2*len(l.slots), 1<<12))
	mask := uint64(len(l.slots) - 1)
	for j, r := range l.rows {
		i := maphash.Bytes(l.seed, r.key) & mask
		for l.slots[i] != 0 {
			i = (i + 1) & mask
		}
		l.slots[i] = int32(j + 1)
	}
}

// into adds the rows to b: a tombstone deletes, anything else sets.
func (l *latestRows) into(b *state.Batch) {
	for _, r := range l.rows {
		if r.value == nil {
			b.Delete(r.key)
		} else {
			b.Set(r.key, r.value)
		}
	}
}

// reset empties the table, keeping its memory.
func (l *latestRows) reset() {
	clear(l.slots)
	clear(l.rows) // let the fetch buffers go
	l.rows = l.rows[:0]
	l.bytes, l.held = 0, 0
}
