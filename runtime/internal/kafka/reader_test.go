package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/runnel-io/runnel/runtime/internal/outage"
)

// readAll reads [from, until) of topic/partition and returns the offsets
// and values read.
func readAll(ctx context.Context, c *Client, topic string, partition int32, from, until int64) ([]int64, []string, error) {
	var offs []int64
	var vals []string
	err := c.ReadPartition(ctx, topic, partition, from, until, func(r *Record) error {
		offs = append(offs, r.Offset)
		vals = append(vals, string(r.Value))
		return nil
	})
	return offs, vals, err
}

func TestReadPartitionRange(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	c := newClient(t, testConfig(t, addr))
	ctx := ctxFor(t)
	if err := c.EnsureTopic(ctx, "r", 2, nil); err != nil {
		t.Fatal(err)
	}
	fill(t, c, "r", 2, 10)

	offs, vals, err := readAll(ctx, c, "r", 1, 3, 7)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(offs) != "[3 4 5 6]" || vals[0] != "r/1/3" || vals[3] != "r/1/6" {
		t.Fatalf("read [3, 7): offsets %v values %v", offs, vals)
	}
	if offs, _, err := readAll(ctx, c, "r", 1, 0, 10); err != nil || len(offs) != 10 {
		t.Fatalf("read [0, hw): %d records, %v", len(offs), err)
	}
	if offs, _, err := readAll(ctx, c, "r", 1, 4, 4); err != nil || len(offs) != 0 {
		t.Fatalf("read [4, 4): %v, %v; want nothing", offs, err)
	}

	// fn's error ends the read and comes back as it is.
	stop := errors.New("stop")
	n := 0
	err = c.ReadPartition(ctx, "r", 0, 0, 10, func(*Record) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Fatalf("fn error: read %d, got %v; want 3 and fn's error", n, err)
	}

	// Concurrent reads of one partition each see all of it.
	var wg sync.WaitGroup
	counts := make([]int, 4)
	errs := make([]error, 4)
	for i := range counts {
		wg.Go(func() {
			var offs []int64
			offs, _, errs[i] = readAll(ctx, c, "r", 0, 0, 10)
			counts[i] = len(offs)
		})
	}
	wg.Wait()
	for i := range counts {
		if errs[i] != nil || counts[i] != 10 {
			t.Fatalf("concurrent read %d: %d records, %v", i, counts[i], errs[i])
		}
	}
}

func TestReadPartitionTail(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	c := newClient(t, testConfig(t, addr))
	ctx := ctxFor(t)
	if err := c.EnsureTopic(ctx, "tail", 1, nil); err != nil {
		t.Fatal(err)
	}
	fill(t, c, "tail", 1, 3)

	tctx, cancel := context.WithCancel(ctx)
	got := make(chan *Record, 100)
	done := make(chan error, 1)
	go func() {
		done <- c.ReadPartition(tctx, "tail", 0, 1, -1, func(r *Record) error {
			r2 := *r // r is the read's only until fn returns
			got <- &r2
			return nil
		})
	}()
	next := func(want int64) {
		t.Helper()
		select {
		case r := <-got:
			if r.Offset != want {
				t.Fatalf("tail read offset %d, want %d", r.Offset, want)
			}
		case err := <-done:
			t.Fatalf("tail read returned: %v", err)
		case <-ctx.Done():
			t.Fatalf("waiting for offset %d: %v", want, ctx.Err())
		}
	}
	next(1)
	next(2)
	for i := range 3 {
		produce(t, c, &Record{Topic: "tail", Value: fmt.Appendf(nil, "new%d", i)})
		next(int64(3 + i))
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("tail read ended with %v, want context.Canceled", err)
	}
}

func TestReadPartitionOutOfRange(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	c := newClient(t, testConfig(t, addr))
	adm := newKadm(t, addr)
	ctx := ctxFor(t)
	if err := c.EnsureTopic(ctx, "oor", 1, nil); err != nil {
		t.Fatal(err)
	}
	fill(t, c, "oor", 1, 10)
	deleteRecords(t, adm, "oor", 0, 5)

	if _, _, err := readAll(ctx, c, "oor", 0, 2, 10); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below the log start: %v, want ErrOffsetOutOfRange", err)
	}
	if _, _, err := readAll(ctx, c, "oor", 0, 11, -1); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read beyond the high watermark: %v, want ErrOffsetOutOfRange", err)
	}
	if offs, _, err := readAll(ctx, c, "oor", 0, 5, 10); err != nil || len(offs) != 5 || offs[0] != 5 {
		t.Fatalf("read from the log start: %v, %v", offs, err)
	}
}

// TestReadPartitionBrokerRestart reads a partition up to an offset that is
// reached only after the broker was stopped for 3s and started again: the
// read returns every record once, in order.
func TestReadPartitionBrokerRestart(t *testing.T) {
	t.Parallel()
	o := outage.Start(t, testLogger(t))
	c := newClient(t, testConfig(t, o.Addr()))
	const topic, before, after = "readrestart", 20, 20
	if err := c.EnsureTopic(ctxFor(t), topic, 1, nil); err != nil {
		t.Fatal(err)
	}
	fill(t, c, topic, 1, before)

	var mu sync.Mutex
	var offs []int64
	read := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(offs)
	}
	done := make(chan error, 1)
	go func() {
		done <- c.ReadPartition(ctxFor(t), topic, 0, 0, before+after, func(r *Record) error {
			mu.Lock()
			offs = append(offs, r.Offset)
			mu.Unlock()
			return nil
		})
	}()
	await(t, "the records before the restart to be read", func() bool { return read() == before })
	o.Bounce(3 * time.Second)
	var recs []*Record
	for i := range after {
		recs = append(recs, &Record{Topic: topic, Value: fmt.Appendf(nil, "after%d", i)})
	}
	produce(t, c, recs...)
	if err := <-done; err != nil {
		t.Fatalf("read across the restart: %v", err)
	}
	for i, off := range offs {
		if off != int64(i) {
			t.Fatalf("read offsets %v, want 0 to %d once each", offs, before+after-1)
		}
	}
	if len(offs) != before+after {
		t.Fatalf("read %d records, want %d", len(offs), before+after)
	}
}
