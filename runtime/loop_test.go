package runtime_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/internal/partition"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/topology"
)

// A record a group loops back to itself does not move the stream time of
// the partition it lands on: that partition's own in-order records are
// not made late by another partition's event time.
func TestLoopRecordsDoNotMoveStreamTime(t *testing.T) {
	addrs := []string{startLog(t)}
	createTopic(t, addrs, events.Name(), 2, nil)
	// A key the loop sends to partition 1.
	var onOne string
	for i := 0; onOne == ""; i++ {
		if k := fmt.Sprintf("k%d", i); partition.For([]byte(k), 2) == 1 {
			onOne = k
		}
	}
	g := topology.NewStatelessGroup("g", processor.String)
	loop := topology.Loop(g, processor.String, func(processor.Context[string, processor.NoTable], string, string) error { return nil })
	counts := topology.Windowed(g, "counts", topology.WindowConfig[string, processor.NoTable, int64]{
		Windows: processor.Tumbling(time.Minute).WithGrace(10 * time.Second),
		Values:  processor.Int64,
		Emit:    processor.EmitUpdates,
	})
	topology.Input(g, events, func(ctx processor.Context[string, processor.NoTable], key, v string) error {
		if v == "loop" {
			return loop.Emit(ctx, onOne, v)
		}
		_, err := counts.Add(ctx, func(_ processor.Window, n int64, _ bool) int64 { return n + 1 })
		return err
	})
	in := startInstance(t, newTopology(t, g), options(t, addrs, t.TempDir(), 2))
	stats := in.rt.Stats("g")

	produce(t, addrs, &kgo.Record{Topic: events.Name(), Partition: 0, Key: []byte("a"), Value: []byte("loop"), Timestamp: t0.Add(5 * time.Minute)})
	awaitCondition(t, "the record and its loop are processed", func() bool { return stats.Processed.Load() == 2 })
	produce(t, addrs, &kgo.Record{Topic: events.Name(), Partition: 1, Key: []byte(onOne), Value: []byte("x"), Timestamp: t0})
	awaitCondition(t, "partition 1's record is processed", func() bool { return stats.Processed.Load() == 3 })
	if n := stats.Late.Load(); n != 0 {
		t.Fatalf("partition 1's first record of its own was dropped as late (%d late) after a loop record from partition 0", n)
	}
}
