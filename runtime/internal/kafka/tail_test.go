package kafka

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// produceCommitted writes n records to topic/partition in one transaction
// and commits it, so that the partition ends in a commit marker: its high
// watermark is one past the last record.
func produceCommitted(t *testing.T, addrs []string, topic string, partition int32, n int) {
	t.Helper()
	ctx := ctxFor(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.TransactionalID("tail-"+topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r := &kgo.Record{Topic: topic, Partition: partition, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
}

// TestReadEndsAtAControlBatch reads a partition whose last offset is a
// transaction's commit marker, up to the high watermark: the read ends,
// by its fetch position, though no record has offset hw-1.
func TestReadEndsAtAControlBatch(t *testing.T) {
	t.Parallel()
	addrs := startKfake(t)
	c := newClient(t, testConfig(t, addrs...))
	ctx := ctxFor(t)
	if err := c.EnsureTopic(ctx, "txtail", 1, nil); err != nil {
		t.Fatal(err)
	}
	const n = 5
	produceCommitted(t, addrs, "txtail", 0, n)
	_, hw, err := c.Offsets(ctx, "txtail", 0)
	if err != nil {
		t.Fatal(err)
	}
	if hw != n+1 {
		t.Fatalf("high watermark %d, want %d: the records and the commit marker", hw, n+1)
	}
	offs, _, err := readAll(ctx, c, "txtail", 0, 0, hw)
	if err != nil || len(offs) != n || offs[n-1] != n-1 {
		t.Fatalf("read to the high watermark: offsets %v, %v; want 0 to %d", offs, err, n-1)
	}
	var last int64 = -1
	err = c.ReadBatches(ctx, "txtail", 0, 0, hw, func(_ []*Record, next int64) error {
		last = next
		return nil
	})
	if err != nil || last != hw {
		t.Fatalf("ReadBatches ended at position %d (%v), want %d", last, err, hw)
	}
}
