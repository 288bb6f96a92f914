// Package report logs what the end-to-end tests read from a processor
// program's stderr: when the partitions it owns change, and its group's
// counters at a clean exit. The programs under e2e/internal share it so
// that the tests parse one format.
package report

import (
	"context"
	"log/slog"
	"time"

	"github.com/runnel-io/runnel/runtime"
)

// Assignments logs msg=assigned (partitions=, restored=, processed=) each
// time the number of partitions stats counts changes, until ctx ends.
//
// The runtime has no assignment callback; it sets Partitions after the
// restores of a generation, so a change of that counter is the moment the
// instance owns its partitions with their tables restored. Polling it keeps
// the runtime's API untouched. A change and its undoing within one poll go
// unseen, which is harmless: the tests wait for the assignment a stable
// group ends with.
func Assignments(ctx context.Context, logger *slog.Logger, stats *runtime.GroupStats) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := int32(-1)
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		if n := stats.Partitions.Load(); n != last {
			last = n
			logger.Info("assigned", "partitions", n, "restored", stats.Restored.Load(), "processed", stats.Processed.Load())
		}
	}
}

// Stopped logs msg=stopped with every counter of stats, once the runtime
// has returned, so that they are final.
func Stopped(logger *slog.Logger, stats *runtime.GroupStats) {
	logger.Info("stopped", "restored", stats.Restored.Load(), "processed", stats.Processed.Load(),
		"skipped", stats.Skipped.Load(), "dead_lettered", stats.DeadLettered.Load())
}
