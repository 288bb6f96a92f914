package txn

import (
	"context"
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzRequests drives a coordinator with a random sequence of requests from three producers,
// with right, stale, future and foreign producer ids and epochs, every protocol version,
// failing writes and markers, and time passing. No request may panic, and at the end the
// state log must replay to the coordinator's state and recover cleanly.
func FuzzRequests(f *testing.F) {
	f.Add([]byte{0, 0, 5, 1, 0, 3, 4, 0, 4, 1})
	f.Add([]byte{0, 1, 5, 5, 1, 0, 1, 4, 1, 5, 1, 9, 1, 4, 2, 5, 1, 7, 30})
	f.Add([]byte{0, 2, 3, 1, 2, 2, 3, 7, 200, 4, 2, 3, 0, 0, 0, 8, 0, 0, 2, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRequests(t, data)
	})
}

// byteReader hands out the fuzz input a byte at a time, then zeros.
type byteReader struct{ data []byte }

func (r *byteReader) next() byte {
	if len(r.data) == 0 {
		return 0
	}
	b := r.data[0]
	r.data = r.data[1:]
	return b
}

func (r *byteReader) done() bool { return len(r.data) == 0 }

func fuzzRequests(t *testing.T, data []byte) {
	// A hang is a failure too: crash with every goroutine's stack.
	watchdog := time.AfterFunc(30*time.Second, func() {
		debug.SetTraceback("all")
		panic(fmt.Sprintf("fuzzRequests hung on input %x", data))
	})
	defer watchdog.Stop()
	e := newEnv(t, func(c *Config) {
		c.TransactionalIDExpiration = 10 * time.Minute
		c.PartitionExists = func(topic string, _ int32) bool { return topic != "missing" }
	})
	in := &byteReader{data: data}
	ids := []string{"a", "b", "c"}
	type view struct {
		pid   int64
		epoch int16
	}
	views := map[string]view{}
	topics := []string{"t", "u", "missing"}

	// call runs one request, moving the fake clock while it waits (on marker retries).
	call := func(f func()) {
		done := make(chan struct{})
		go func() { defer close(done); f() }()
		for {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
				e.clock.Advance(200 * time.Millisecond)
			}
		}
	}
	producer := func(id string) (int64, int16) {
		v, ok := views[id]
		if !ok {
			v = view{pid: 1, epoch: 0}
		}
		switch in.next() % 5 {
		case 1:
			return v.pid, v.epoch - 1
		case 2:
			return v.pid, v.epoch + 1
		case 3:
			return v.pid + 1, v.epoch
		case 4:
			return int64(in.next()), int16(in.next())
		}
		return v.pid, v.epoch
	}
	part := func() TopicPartition {
		b := in.next()
		return TopicPartition{Topic: topics[int(b)%len(topics)], Partition: int32(b>>4) % 3}
	}

	for ops := 0; !in.done() && ops < 200; ops++ {
		op := in.next() % 12
		id := ids[int(in.next())%len(ids)]
		version := int16(in.next() % 6)
		switch op {
		case 0:
			req := kmsg.NewPtrInitProducerIDRequest()
			req.Version = version
			req.TransactionalID = &id
			req.TransactionTimeoutMillis = int32(in.next()) * 1000
			if version >= 3 && in.next()%2 == 1 {
				req.ProducerID, req.ProducerEpoch = producer(id)
			}
			var resp *kmsg.InitProducerIDResponse
			call(func() { resp = e.c.InitProducerID(ctxb(), req) })
			if resp.ErrorCode == 0 {
				views[id] = view{resp.ProducerID, resp.ProducerEpoch}
			}
		case 1:
			pid, epoch := producer(id)
			req := kmsg.NewPtrAddPartitionsToTxnRequest()
			req.Version = version % 4
			req.TransactionalID, req.ProducerID, req.ProducerEpoch = id, pid, epoch
			for n := in.next() % 3; n > 0; n-- {
				p := part()
				req.Topics = append(req.Topics, kmsg.AddPartitionsToTxnRequestTopic{Topic: p.Topic, Partitions: []int32{p.Partition}})
			}
			call(func() { e.c.AddPartitionsToTxn(ctxb(), req) })
		case 2:
			req := kmsg.NewPtrAddPartitionsToTxnRequest()
			req.Version = 4 + version%2
			for n := in.next() % 3; n > 0; n-- {
				tid := ids[int(in.next())%len(ids)]
				pid, epoch := producer(tid)
				p := part()
				req.Transactions = append(req.Transactions, kmsg.AddPartitionsToTxnRequestTransaction{
					TransactionalID: tid, ProducerID: pid, ProducerEpoch: epoch, VerifyOnly: in.next()%2 == 0,
					Topics: []kmsg.AddPartitionsToTxnRequestTransactionTopic{{Topic: p.Topic, Partitions: []int32{p.Partition}}},
				})
			}
			call(func() { e.c.AddPartitionsToTxn(ctxb(), req) })
		case 3:
			pid, epoch := producer(id)
			call(func() { e.addOffsets(version%5, id, pid, epoch, string(rune('g'+in.next()%2))) })
		case 4:
			pid, epoch := producer(id)
			commit := in.next()%2 == 0
			var resp *kmsg.EndTxnResponse
			call(func() { resp = e.end(version, id, pid, epoch, commit) })
			if resp.ErrorCode == 0 && version >= 5 {
				views[id] = view{resp.ProducerID, resp.ProducerEpoch}
			}
		case 5:
			pid, epoch := producer(id)
			p, implicit := part(), in.next()%2 == 0
			call(func() { e.c.CheckProduce(ctxb(), id, pid, epoch, p, implicit) })
		case 6:
			pid, epoch := producer(id)
			if in.next()%2 == 0 {
				e.c.CheckTxnOffsetCommit(id, pid, epoch, "g")
			} else {
				call(func() { e.c.AddTxnOffsetCommit(ctxb(), id, pid, epoch, "g") })
			}
		case 7:
			e.clock.Advance(time.Duration(in.next()) * time.Second)
		case 8:
			e.store.fail(int(in.next() % 3))
		case 9:
			e.markers.fail(int(in.next() % 3))
		case 10:
			req := kmsg.NewPtrListTransactionsRequest()
			req.Version = version % 3
			req.StateFilters = []string{kmsg.TransactionState(in.next() % 9).String()}
			req.DurationFilterMillis = int64(in.next()) * 100
			e.c.ListTransactions(ctxb(), req)
		case 11:
			req := kmsg.NewPtrDescribeTransactionsRequest()
			req.TransactionalIDs = []string{id, ""}
			e.c.DescribeTransactions(ctxb(), req)
		}
	}

	e.store.fail(0)
	e.markers.fail(0)
	settle(t, e)
	recs := e.store.records()
	checkReplays(t, e.c, recs)
	c := replay(t, recs)
	ctx, cancel := context.WithTimeout(ctxb(), 10*time.Second)
	defer cancel()
	if err := c.Recover(ctx); err != nil {
		t.Fatalf("recover: %v", err)
	}
	for id, m := range durable(c) {
		if isOpen(m.state) {
			t.Fatalf("%s still open after recovery: %+v", id, m)
		}
	}
	_ = c.Close(ctxb())
}

// settle moves the fake clock until no completion is in progress.
func settle(t *testing.T, e *env) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		busy := false
		for _, x := range e.c.snapshot() {
			x.mu.Lock()
			busy = busy || x.comp != nil
			x.mu.Unlock()
		}
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("completions did not finish")
		}
		e.clock.Advance(2 * time.Second)
		time.Sleep(time.Millisecond)
	}
}

// FuzzLoad feeds arbitrary records to Load: it must never panic, and whatever it accepts must
// be written back by the coordinator in a form that replays to the same state.
func FuzzLoad(f *testing.F) {
	f.Add(txnKey("a"), txnValue(meta{pid: 3, prevPid: -1, nextPid: -1, epoch: 2, timeoutMs: 1000,
		state: kmsg.TransactionStateOngoing, parts: []TopicPartition{tp("t", 1)}, start: 5, update: 6}))
	f.Add(txnKey("a"), []byte(nil))
	f.Add([]byte{0, 1, 0, 1, 'x'}, []byte{0, 0})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		c := New(Config{})
		if err := c.Load(key, value); err != nil {
			return
		}
		for _, x := range c.snapshot() {
			m := x.m
			got, err := decodeValue(txnValue(m))
			if err != nil {
				t.Fatalf("re-encoding %+v: %v", m, err)
			}
			if len(got.parts) == 0 {
				got.parts = nil
			}
			if len(m.parts) == 0 {
				m.parts = nil
			}
			if got.pid != m.pid || got.epoch != m.epoch || got.state != m.state || len(got.parts) != len(m.parts) {
				t.Fatalf("re-encoding %+v gave %+v", m, got)
			}
		}
		ctx, cancel := context.WithTimeout(ctxb(), 10*time.Second)
		defer cancel()
		if err := c.Recover(ctx); err != nil {
			t.Fatalf("recover: %v", err)
		}
		_ = c.Close(ctxb())
	})
}
