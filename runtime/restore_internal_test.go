package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
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

// TestRestoreKeepsTheLatestOfEachKey restores a changelog of several
// store writes' worth (so that fetches are split across writes) whose keys
// are overwritten, deleted, set again and set to empty values, into a
// store that already held rows, from its checkpoint: the store must end
// as the changelog says, with the high watermark as its checkpoint, and
// progress must count every record.
func TestRestoreKeepsTheLatestOfEachKey(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	c, err := kafka.New(ctx, kafka.Config{Brokers: cluster.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const topic = "latest-table"
	if err := c.EnsureTopic(ctx, topic, 1, nil); err != nil {
		t.Fatal(err)
	}
	// 12,000 records of 1.5 KB over 1,500 keys in random order: the latest
	// rows are more than one store write, and the records more than one
	// write holds.
	rnd := rand.New(rand.NewPCG(1, 2))
	want := map[string]string{}
	value := make([]byte, 1500)
	send := func(i int) {
		k := fmt.Sprintf("k%d", rnd.IntN(1500))
		var v []byte
		switch {
		case i%13 == 0:
			delete(want, k) // a tombstone
		case i%17 == 0:
			v = []byte{}
			want[k] = ""
		default:
			v = fmt.Appendf(append([]byte(nil), value...), "%d", i)
			want[k] = string(v)
		}
		c.Send(&kafka.Record{Topic: topic, Key: []byte(k), Value: v}, func(_ *kafka.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	const first, total = 1000, 12_000
	for i := range first {
		send(i)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	st := state.NewMemory()
	if n, err := restore(ctx, c, c.Offsets, st, topic, 0, log, nil); err != nil || n != first {
		t.Fatalf("first restore: %d records, %v", n, err)
	}
	for i := first; i < total; i++ {
		send(i)
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var applied, left int64 = -1, -1
	n, err := restore(ctx, c, c.Offsets, st, topic, 0, log, func(a, l int64) { applied, left = a, l })
	if err != nil || n != total-first {
		t.Fatalf("second restore: %d records, %v; want %d", n, err, total-first)
	}
	if applied != n || left != 0 {
		t.Fatalf("progress ended at %d applied, %d left; want %d and 0", applied, left, n)
	}
	if next, ok, err := st.Checkpoint(); err != nil || !ok || next != total {
		t.Fatalf("checkpoint %d (%v, %v), want %d", next, ok, err, total)
	}
	got := map[string]string{}
	it := st.Iterate(nil, nil)
	for it.Next() {
		got[string(it.Key())] = string(it.Value())
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	it.Close()
	if len(got) != len(want) {
		t.Fatalf("store holds %d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s = %q, want %q", k, got[k], v)
		}
	}
}
