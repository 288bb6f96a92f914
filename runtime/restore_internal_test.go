package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/runtime/internal/kafka"
	"github.com/runnel-io/runnel/state"
)

// TestRestoreEndsAtAControlBatch restores, and views, a changelog whose
// partitions end in a transaction's commit marker, on kfake: no record
// sits at the high watermark minus one, and the restore and the view's
// catch-up end all the same, by the fetch position, with the checkpoint
// at the high watermark.
func TestRestoreEndsAtAControlBatch(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	addrs := cluster.ListenAddrs()
	c, err := kafka.New(ctx, kafka.Config{Brokers: addrs})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const topic, partitions, n = "tx-table", 2, 7
	if err := c.EnsureTopic(ctx, topic, partitions, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	txn, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.TransactionalID("restore-tail"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for p := range int32(partitions) {
		for i := range n {
			r := &kgo.Record{Topic: topic, Partition: p, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)}
			if err := txn.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}

	log := slog.New(slog.DiscardHandler)
	for p := range int32(partitions) {
		_, hw, err := c.Offsets(ctx, topic, p)
		if err != nil || hw != n+1 {
			t.Fatalf("partition %d: high watermark %d (%v), want %d: the records and the marker", p, hw, err, n+1)
		}
		st := state.NewMemory()
		got, err := restore(ctx, c, c.Offsets, st, topic, p, log, nil)
		if err != nil || got != n {
			t.Fatalf("restore of partition %d: %d records, %v; want %d", p, got, err, n)
		}
		if next, ok, err := st.Checkpoint(); err != nil || !ok || next != hw {
			t.Fatalf("partition %d: checkpoint %d (%v, %v), want the high watermark %d", p, next, ok, err, hw)
		}
		if v, ok, err := st.Get([]byte("k6")); err != nil || !ok || string(v) != "v6" {
			t.Fatalf("partition %d: k6 = %q, %v, %v", p, v, ok, err)
		}
		st.Close()
	}

	vctx, stop := context.WithCancel(ctx)
	defer stop()
	v, err := startView(vctx, c, c.Offsets, topic, partitions)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.wait(ctx); err != nil {
		t.Fatalf("view catch-up: %v", err)
	}
	if val, ok, err := v.get([]byte("k3")); err != nil || !ok || string(val) != "v3" {
		t.Fatalf("view: k3 = %q, %v, %v", val, ok, err)
	}
}
