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
	restoreHeldBytes  = 32 << 20
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
// Fetching and writing overlap: the read hands each fetch to this
// goroutine, which writes while the next fetch is on its way. Of the
// records of one write only the latest of each key is written, since a
// changelog's later record of a key replaces its earlier ones.
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

// restoreRange applies [from, hw) of the changelog to st, reading and
// writing at once, and returns the records read.
func restoreRange(ctx context.Context, rd reader, st state.Store, topic string, p int32, from, hw int64, logger *slog.Logger, progress func(n, remaining int64)) (int64, error) {
	began := time.Now()
	type fetched struct {
		recs []*kafka.Record
		next int64
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fetches := make(chan fetched, 1)
	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(fetches)
		readErr = rd.ReadBatches(rctx, topic, p, from, hw, func(recs []*kafka.Record, next int64) error {
			select {
			case fetches <- fetched{recs, next}:
				return nil
			case <-rctx.Done():
				return rctx.Err()
			}
		})
	})
	// Whatever ends the loop below, the read ends before restore returns.
	defer func() {
		cancel()
		for range fetches {
		}
		wg.Wait()
	}()

	var (
		n       int64
		pos     = from
		lastLog = began
		rows    latestRows
		b       state.Batch
	)
	flush := func(next int64) error {
		rows.into(&b)
		rows.reset()
		b.SetCheckpoint(next)
		err := st.Apply(&b)
		b.Reset()
		if err == nil {
			progress(n, max(hw-next, 0))
		}
		return err
	}
	for f := range fetches {
		n += int64(len(f.recs))
		for _, r := range f.recs {
			rows.add(r)
			if rows.bytes >= restoreBatchBytes {
				// A large fetch goes to the store in several writes,
				// each checkpointed after its last record.
				if err := flush(r.Offset + 1); err != nil {
					return n, err
				}
			}
		}
		pos = f.next
		if rows.bytes < restoreBatchBytes && rows.held < restoreHeldBytes && pos < hw {
			continue
		}
		if now := time.Now(); now.Sub(lastLog) >= restoreProgressEvery {
			lastLog = now
			rate := float64(pos-from) / now.Sub(began).Seconds()
			left := time.Duration(float64(hw-pos) / rate * float64(time.Second))
			logger.Info("restoring table partition", "topic", topic, "partition", p, "records", n,
				"offset", pos, "end", hw, "records_per_sec", int64(rate), "time_left", left.Round(time.Second))
		}
		if err := flush(pos); err != nil {
			return n, err
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
	if len(rows.recs) > 0 || pos < hw {
		if err := flush(max(pos, hw)); err != nil {
			return n, err
		}
	}
	return n, nil
}

// latestRows holds the latest changelog record of each key among those
// added since the last reset: a hash table of indexes into recs, open
// addressing with linear probing, which costs no allocation per record
// (a map keyed by string would copy every key).
type latestRows struct {
	seed  maphash.Seed
	slots []int32 // index into recs plus one; 0 is empty
	recs  []*kafka.Record
	bytes int // keys and values of recs
	held  int // keys and values of every record added
}

func (l *latestRows) add(r *kafka.Record) {
	size := len(r.Key) + len(r.Value)
	l.held += size
	if 2*(len(l.recs)+1) > len(l.slots) {
		l.grow()
	}
	mask := uint64(len(l.slots) - 1)
	for i := maphash.Bytes(l.seed, r.Key) & mask; ; i = (i + 1) & mask {
		s := l.slots[i]
		if s == 0 {
			l.slots[i] = int32(len(l.recs) + 1)
			l.recs = append(l.recs, r)
			l.bytes += size
			return
		}
		if old := l.recs[s-1]; bytes.Equal(old.Key, r.Key) {
			l.bytes += size - len(old.Key) - len(old.Value)
			l.recs[s-1] = r
			return
		}
	}
}

// grow doubles the table (or makes its first) and places recs again.
func (l *latestRows) grow() {
	if l.slots == nil {
		l.seed = maphash.MakeSeed()
	}
	l.slots = make([]int32, max(2*len(l.slots), 1<<12))
	mask := uint64(len(l.slots) - 1)
	for j, r := range l.recs {
		i := maphash.Bytes(l.seed, r.Key) & mask
		for l.slots[i] != 0 {
			i = (i + 1) & mask
		}
		l.slots[i] = int32(j + 1)
	}
}

// into adds the rows to b: a tombstone deletes, anything else sets.
func (l *latestRows) into(b *state.Batch) {
	for _, r := range l.recs {
		addChange(b, r)
	}
}

// reset empties the table, keeping its memory.
func (l *latestRows) reset() {
	clear(l.slots)
	clear(l.recs) // let the fetch buffers go
	l.recs = l.recs[:0]
	l.bytes, l.held = 0, 0
}
