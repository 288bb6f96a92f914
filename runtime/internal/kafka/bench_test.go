package kafka

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/runnel-io/runnel/broker"
	"github.com/runnel-io/runnel/internal/partition"
)

// benchClient starts the bundled log and a Client of it, with topic
// created with partitions partitions.
func benchClient(b *testing.B, topic string, partitions int32) *Client {
	b.Helper()
	br, err := broker.Start(b.Context(), broker.Config{Addr: "127.0.0.1:0", Dir: b.TempDir(), GroupInitialRebalanceDelay: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { br.Close() })
	c, err := New(b.Context(), Config{Brokers: []string{br.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if err := c.EnsureTopic(b.Context(), topic, partitions, nil); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkProduce measures asynchronous sends of 100-byte values to 8
// partitions, acknowledged.
func BenchmarkProduce(b *testing.B) {
	c := benchClient(b, "bench", 8)
	value := make([]byte, 100)
	done := func(_ *Record, err error) {
		if err != nil {
			panic(err)
		}
	}
	b.SetBytes(int64(len(value)))
	i := 0
	for b.Loop() {
		key := fmt.Appendf(nil, "key-%d", i%10000)
		c.Send(&Record{Topic: "bench", Partition: partition.For(key, 8), Key: key, Value: value}, done)
		i++
	}
	if err := c.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkReadPartition measures reading one partition from the start.
func BenchmarkReadPartition(b *testing.B) {
	c := benchClient(b, "bench", 1)
	value := make([]byte, 100)
	for range b.N {
		c.Send(&Record{Topic: "bench", Value: value}, func(*Record, error) {})
	}
	if err := c.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(value)))
	b.ResetTimer()
	n := 0
	err := c.ReadPartition(context.Background(), "bench", 0, 0, int64(b.N), func(*Record) error {
		n++
		return nil
	})
	if err != nil || n != b.N {
		b.Fatalf("read %d of %d: %v", n, b.N, err)
	}
}

// counter is a GroupHandler that counts the records of all its claims and
// closes done when it has seen want.
type counter struct {
	want int64
	done chan struct{}
	seen atomic.Int64
}

func (h *counter) Assigned(context.Context, *Assignment) error { return nil }
func (h *counter) Revoked(context.Context, *Assignment) error  { return nil }
func (h *counter) Consume(_ context.Context, c *Claim) error {
	buf := make([]*Record, 0, 256)
	for {
		recs, ok := c.Poll(nil, buf)
		if h.seen.Add(int64(len(recs))) == h.want && len(recs) > 0 {
			close(h.done)
		}
		if !ok {
			return nil
		}
	}
}

// BenchmarkGroupConsume measures a single group member reading 8
// partitions through Claim.Poll.
func BenchmarkGroupConsume(b *testing.B) {
	c := benchClient(b, "bench", 8)
	value := make([]byte, 100)
	for i := range b.N {
		c.Send(&Record{Topic: "bench", Partition: int32(i % 8), Value: value}, func(*Record, error) {})
	}
	if err := c.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(value)))
	b.ResetTimer()
	ctx, cancel := context.WithCancel(b.Context())
	h := &counter{want: int64(b.N), done: make(chan struct{})}
	joined := make(chan error, 1)
	go func() { joined <- c.Join(ctx, "bench", []string{"bench"}, h) }()
	select {
	case <-h.done:
	case err := <-joined:
		b.Fatalf("join: %v", err)
	}
	b.StopTimer()
	cancel()
	<-joined
}
