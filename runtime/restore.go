package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/runnel-io/runnel/runtime/internal/kafka"
	"github.com/runnel-io/runnel/state"
)

// restoreProgressEvery is how often a long restore logs its progress.
const restoreProgressEvery = 2 * time.Second

// restoreBatchRecords is how many changelog records a restore gathers
// into one store write (a fetch brings up to 16 MiB): few, large writes,
// each carrying its checkpoint.
const restoreBatchRecords = 50_000

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
	var n int64
	var b state.Batch
	flush := func(next int64) error {
		b.SetCheckpoint(next)
		err := st.Apply(&b)
		b.Reset()
		if err == nil {
			progress(n, max(hw-next, 0))
		}
		return err
	}
	pos := from
	lastLog := began
	err = rd.ReadBatches(ctx, topic, p, from, hw, func(recs []*kafka.Record, next int64) error {
		for _, r := range recs {
			addChange(&b, r)
		}
		n += int64(len(recs))
		pos = next
		if b.Len() < restoreBatchRecords && next < hw {
			return nil
		}
		if now := time.Now(); now.Sub(lastLog) >= restoreProgressEvery {
			lastLog = now
			rate := float64(pos-from) / now.Sub(began).Seconds()
			left := time.Duration(float64(hw-pos) / rate * float64(time.Second))
			logger.Info("restoring table partition", "topic", topic, "partition", p, "records", n,
				"offset", pos, "end", hw, "records_per_sec", int64(rate), "time_left", left.Round(time.Second))
		}
		return flush(next)
	})
	if err == nil && (b.Len() > 0 || pos < hw) {
		err = flush(max(pos, hw))
	}
	if err != nil {
		return n, fmt.Errorf("restore %s-%d: %w", topic, p, err)
	}
	logger.Info("restored table partition", "topic", topic, "partition", p, "records", n, "from", from, "to", hw, "took", time.Since(began))
	return n, nil
}
