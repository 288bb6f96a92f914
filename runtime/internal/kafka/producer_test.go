package kafka

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runnel-io/runnel/runtime/internal/outage"
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
		r2 := *r // r is the read's only until fn returns
		got = append(got, &r2)
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

// TestProducerBrokerRestart sends a steady stream of records while the
// broker is stopped for a while and started again, and checks that every
// record is acknowledged once, without error, and that each partition holds
// exactly the records sent to it, in the order sent, none twice.
func TestProducerBrokerRestart(t *testing.T) {
	t.Parallel()
	o := outage.Start(t, testLogger(t))
	c := newClient(t, testConfig(t, o.Addr()))
	const topic, parts = "restart", 4
	if err := c.EnsureTopic(ctxFor(t), topic, parts, nil); err != nil {
		t.Fatal(err)
	}
	s := startSender(t, c, topic, parts)
	s.awaitAcked(t, 200)
	o.Stop()
	// The outage lasts while the sender sends 1000 more records: about
	// two seconds.
	sent, _ := s.count()
	s.awaitSent(t, sent+1000)
	o.Restart()
	sent, _ = s.count()
	s.awaitAcked(t, sent+200)
	s.halt()
	if err := c.Flush(ctxFor(t)); err != nil {
		t.Fatal(err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for p, recs := range s.sent {
		for i, r := range recs {
			res := s.results[r]
			if len(res) != 1 || res[0] != nil {
				t.Fatalf("partition %d record %d (%s): done results %v, want one nil", p, i, r.Value, res)
			}
			if r.Offset != int64(i) {
				t.Fatalf("partition %d record %d (%s): offset %d", p, i, r.Value, r.Offset)
			}
		}
		got := readValues(t, c, topic, int32(p))
		if len(got) != len(recs) {
			t.Fatalf("partition %d holds %d records, %d sent", p, len(got), len(recs))
		}
		for i, v := range got {
			if v != string(recs[i].Value) {
				t.Fatalf("partition %d offset %d: %s, sent %s", p, i, v, recs[i].Value)
			}
		}
	}
}

// outcome is what a done call reported.
type outcome struct {
	err error
	at  time.Time
}

// sendAll sends recs and returns a channel of each one's outcome, by index.
func sendAll(c *Client, recs []*Record) []chan outcome {
	outs := make([]chan outcome, len(recs))
	for i, r := range recs {
		outs[i] = make(chan outcome, 2)
		c.Send(r, func(_ *Record, err error) { outs[i] <- outcome{err, time.Now()} })
	}
	return outs
}

func records(topic string, partitions int32, prefix string, n int) []*Record {
	var recs []*Record
	for p := range partitions {
		for i := range n {
			recs = append(recs, &Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "%s%d", prefix, i)})
		}
	}
	return recs
}

// values returns the values of recs sent to partition p, in order.
func values(p int32, recs ...[]*Record) []string {
	var out []string
	for _, rs := range recs {
		for _, r := range rs {
			if r.Partition == p {
				out = append(out, string(r.Value))
			}
		}
	}
	return out
}

// TestProducerDeliveryTimeout cuts the broker off, for longer than the
// delivery timeout, from a producer that has not sent yet: the records it
// sends meanwhile fail, no sooner than the timeout, with an error that names
// the partition, the timeout and the last connection error; records it
// sends once the broker is back succeed; and the log holds exactly the
// records not reported failed, in order.
//
// The producer starts without a connection because a batch written to a
// connection, even to one that is already dead, may be in the log: kgo
// then waits for the broker's answer however long the outage (see
// TestProducerAnswerLost).
func TestProducerDeliveryTimeout(t *testing.T) {
	t.Parallel()
	o := outage.Start(t, testLogger(t))
	cfg := testConfig(t, o.Addr())
	cfg.DeliveryTimeout = time.Second
	c := newClient(t, cfg)
	const topic, parts = "timeout", 2
	if err := c.EnsureTopic(ctxFor(t), topic, parts, nil); err != nil {
		t.Fatal(err)
	}
	before := records(topic, parts, "before", 5)
	produce(t, newClient(t, testConfig(t, o.Addr())), before...)

	o.Cut()
	during := records(topic, parts, "during", 5)
	sentAt := time.Now()
	outs := sendAll(c, during)
	if err := c.Flush(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	for i, r := range during {
		out := <-outs[i]
		if !errors.Is(out.err, ErrDeliveryTimeout) {
			t.Fatalf("record %s sent during the outage: %v, want a delivery timeout", r.Value, out.err)
		}
		if waited := out.at.Sub(sentAt); waited < cfg.DeliveryTimeout {
			t.Fatalf("record %s failed after %v, before the delivery timeout", r.Value, waited)
		}
		for _, want := range []string{fmt.Sprintf("%s/%d", topic, r.Partition), "within 1s", "last error: "} {
			if !strings.Contains(out.err.Error(), want) {
				t.Fatalf("error %q does not say %q", out.err, want)
			}
		}
	}

	o.Restore()
	after := records(topic, parts, "after", 5)
	produce(t, c, after...)
	for p := range int32(parts) {
		if got, want := readValues(t, c, topic, p), values(p, before, after); !slices.Equal(got, want) {
			t.Fatalf("partition %d holds %v, want %v", p, got, want)
		}
	}
}

// TestProducerAnswerLost has the broker take a record whose answer is lost,
// and stay unreachable past the delivery timeout: the record is not failed,
// since it is in the log, but acknowledged with its offset once the broker
// is back, and not written twice. The records sent to its partition after
// it, which never reached the broker during the outage, are acknowledged
// or failed; records sent to another partition meanwhile fail during the
// outage, once past the timeout, with an error that says so; and the log
// holds exactly the acknowledged records, in order. A record sent after
// the outage succeeds.
func TestProducerAnswerLost(t *testing.T) {
	t.Parallel()
	o := outage.Start(t, testLogger(t))
	cfg := testConfig(t, o.Addr())
	cfg.DeliveryTimeout = time.Second
	c := newClient(t, cfg)
	const topic = "lost"
	if err := c.EnsureTopic(ctxFor(t), topic, 2, nil); err != nil {
		t.Fatal(err)
	}
	first := records(topic, 1, "first", 1)
	produce(t, c, first...)

	o.Mute()
	lost := records(topic, 1, "lost", 1)
	lostOut := sendAll(c, lost)[0]
	await(t, "the broker to take the record whose answer is lost", func() bool { return o.LogEnd(topic, 0) == 2 })
	cut := time.Now()
	o.Cut()
	// The later records must not be written at all, so they are sent once
	// the producer has seen its connection break: until then it would
	// write them to the dead connection and, not knowing whether the
	// broker read them, wait for its answer like for the lost one.
	await(t, "the producer to see its connection break", func() bool {
		at, err := c.prod.lastErr.get()
		return err != nil && at.After(cut)
	})
	later := records(topic, 1, "later", 3)
	laterOuts := sendAll(c, later)
	var idle []*Record
	for i := range 3 {
		idle = append(idle, &Record{Topic: topic, Partition: 1, Value: fmt.Appendf(nil, "idle%d", i)})
	}
	idleSent := time.Now()
	idleOuts := sendAll(c, idle)
	// The record's deadline passes while the broker cannot answer.
	deadline := time.NewTimer(cfg.DeliveryTimeout + 500*time.Millisecond)
	select {
	case out := <-lostOut:
		t.Fatalf("a record the broker has was reported during the outage: %v", out.err)
	case <-deadline.C:
	}
	for i, r := range idle {
		out := <-idleOuts[i]
		if !errors.Is(out.err, ErrDeliveryTimeout) || !strings.Contains(out.err.Error(), "lost/1") {
			t.Fatalf("record %s to the other partition: %v, want a delivery timeout", r.Value, out.err)
		}
		if waited := out.at.Sub(idleSent); waited < cfg.DeliveryTimeout {
			t.Fatalf("record %s failed after %v, before the delivery timeout", r.Value, waited)
		}
	}

	o.Restore()
	if err := c.Flush(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if out := <-lostOut; out.err != nil || lost[0].Offset != 1 {
		t.Fatalf("record whose answer was lost: offset %d, %v; want offset 1", lost[0].Offset, out.err)
	}
	// The later records are past their deadline, but kgo checks it only
	// on a partition's first pending batch, before it writes it: they
	// either fail, or were pipelined behind the resent lost one, and then
	// are acknowledged late. Either way, what is reported is what the log
	// holds.
	var acked []*Record
	for i, r := range later {
		switch out := <-laterOuts[i]; {
		case out.err == nil:
			acked = append(acked, r)
		case !errors.Is(out.err, ErrDeliveryTimeout):
			t.Fatalf("record %s sent during the outage: %v, want success or a delivery timeout", r.Value, out.err)
		}
	}
	t.Logf("of %d records sent during the outage, %d were acknowledged after it", len(later), len(acked))
	next := records(topic, 1, "next", 1)
	produce(t, c, next...)
	if want := int64(2 + len(acked)); next[0].Offset != want {
		t.Fatalf("record after the outage: offset %d, want %d", next[0].Offset, want)
	}
	if got, want := readValues(t, c, topic, 0), values(0, first, lost, acked, next); !slices.Equal(got, want) {
		t.Fatalf("partition 0 holds %v, want %v", got, want)
	}
	if got := readValues(t, c, topic, 1); len(got) != 0 {
		t.Fatalf("partition 1 holds %v, want nothing", got)
	}
}

// TestProducerCloseDuringOutage closes a client while a record whose answer
// was lost waits for the broker: Close returns after the delivery timeout,
// and the record's done is called once, with an error matching ErrClosed.
func TestProducerCloseDuringOutage(t *testing.T) {
	t.Parallel()
	o := outage.Start(t, testLogger(t))
	cfg := testConfig(t, o.Addr())
	cfg.DeliveryTimeout = time.Second
	c, err := New(ctxFor(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	const topic = "closing"
	if err := c.EnsureTopic(ctxFor(t), topic, 1, nil); err != nil {
		t.Fatal(err)
	}
	produce(t, c, records(topic, 1, "first", 1)...)
	o.Mute()
	out := sendAll(c, records(topic, 1, "lost", 1))[0]
	await(t, "the broker to take the record", func() bool { return o.LogEnd(topic, 0) == 2 })
	o.Cut()
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < cfg.DeliveryTimeout {
		t.Fatalf("Close returned after %v, before the delivery timeout", took)
	}
	if got := <-out; !errors.Is(got.err, ErrClosed) {
		t.Fatalf("record pending at Close: %v, want ErrClosed", got.err)
	}
	select {
	case got := <-out:
		t.Fatalf("done called twice, again with %v", got.err)
	default:
	}
}
