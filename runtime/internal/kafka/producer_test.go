package kafka

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestProducerAsync sends 10k records to 8 partitions without waiting and
// checks that every done is called once, with offsets that count up from 0
// in each partition in the order of sending, that Flush returns only after
// all of them, and that each partition reads back in the order sent.
func TestProducerAsync(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	c := newClient(t, testConfig(t, addr))
	ctx := ctxFor(t)
	const parts, n = 8, 10000
	if err := c.EnsureTopic(ctx, "async", parts, nil); err != nil {
		t.Fatal(err)
	}

	type ack struct {
		offset int64
		err    error
	}
	var (
		mu    sync.Mutex
		acks  = make(map[*Record][]ack)
		order [parts][]*Record // records as sent, by partition
		calls atomic.Int64
	)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		p := rng.Int32N(parts)
		r := &Record{Topic: "async", Partition: p, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)}
		order[p] = append(order[p], r)
		c.Send(r, func(r *Record, err error) {
			mu.Lock()
			acks[r] = append(acks[r], ack{r.Offset, err})
			mu.Unlock()
			calls.Add(1)
		})
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := calls.Load(); got != n {
		t.Fatalf("Flush returned after %d done calls, want %d", got, n)
	}
	mu.Lock()
	for p, recs := range order {
		for i, r := range recs {
			a := acks[r]
			if len(a) != 1 {
				t.Fatalf("record %q: done called %d times", r.Value, len(a))
			}
			if a[0].err != nil || a[0].offset != int64(i) {
				t.Fatalf("partition %d, record %d (%q): offset %d, err %v; want offset %d", p, i, r.Value, a[0].offset, a[0].err, i)
			}
		}
	}
	mu.Unlock()

	// Partitions are read concurrently: a read joins the shared consumer's
	// fetches at the next round.
	var wg sync.WaitGroup
	errs := make(chan error, parts)
	for p, recs := range order {
		wg.Go(func() {
			i := 0
			err := c.ReadPartition(ctx, "async", int32(p), 0, int64(len(recs)), func(r *Record) error {
				if !bytes.Equal(r.Value, recs[i].Value) || r.Offset != int64(i) {
					return fmt.Errorf("partition %d offset %d: %q, want %q at %d", p, r.Offset, r.Value, recs[i].Value, i)
				}
				i++
				return nil
			})
			if err == nil && i != len(recs) {
				err = fmt.Errorf("partition %d: read %d records, want %d", p, i, len(recs))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestProducerRecordFields round-trips null keys and values (tombstones),
// empty values, headers and timestamps.
func TestProducerRecordFields(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	c := newClient(t, testConfig(t, addr))
	ctx := ctxFor(t)
	if err := c.EnsureTopic(ctx, "fields", 1, nil); err != nil {
		t.Fatal(err)
	}
	ts := time.UnixMilli(1_700_000_000_123)
	sent := []*Record{
		{Topic: "fields", Key: []byte("tombstone"), Value: nil, Timestamp: ts},
		{Topic: "fields", Key: nil, Value: []byte{}, Timestamp: ts},
		{Topic: "fields", Key: []byte("h"), Value: []byte("v"), Headers: []Header{{"a", []byte("1")}, {"a", nil}, {"b", []byte{}}}, Timestamp: ts},
	}
	produce(t, c, sent...)
	var got []*Record
	if err := c.ReadPartition(ctx, "fields", 0, 0, int64(len(sent)), func(r *Record) error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(sent) {
		t.Fatalf("read %d records, want %d", len(got), len(sent))
	}
	for i, r := range got {
		w := sent[i]
		if (r.Key == nil) != (w.Key == nil) || !bytes.Equal(r.Key, w.Key) {
			t.Errorf("record %d: key %q (nil %v), want %q (nil %v)", i, r.Key, r.Key == nil, w.Key, w.Key == nil)
		}
		if (r.Value == nil) != (w.Value == nil) || !bytes.Equal(r.Value, w.Value) {
			t.Errorf("record %d: value %q (nil %v), want %q (nil %v)", i, r.Value, r.Value == nil, w.Value, w.Value == nil)
		}
		if !r.Timestamp.Equal(ts) {
			t.Errorf("record %d: timestamp %v, want %v", i, r.Timestamp, ts)
		}
		if len(r.Headers) != len(w.Headers) {
			t.Fatalf("record %d: headers %v, want %v", i, r.Headers, w.Headers)
		}
		for j, h := range r.Headers {
			if h.Key != w.Headers[j].Key || !bytes.Equal(h.Value, w.Headers[j].Value) {
				t.Errorf("record %d header %d: %v, want %v", i, j, h, w.Headers[j])
			}
		}
	}
}

// TestProducerErrorsAndClose checks that a send to a missing topic fails
// through done, and that a send after Close gets ErrClosed.
func TestProducerErrorsAndClose(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	c, err := New(ctxFor(t), testConfig(t, addr))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	c.Send(&Record{Topic: "missing", Value: []byte("x")}, func(_ *Record, err error) { errc <- err })
	if err := c.Flush(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil {
		t.Fatal("send to a missing topic succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c.Send(&Record{Topic: "missing"}, func(_ *Record, err error) { errc <- err })
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("send after close: %v, want ErrClosed", err)
	}
}
