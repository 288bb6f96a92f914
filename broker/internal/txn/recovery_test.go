package txn

import (
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// history runs a long scripted history of several transactional ids through e: commits and
// aborts of both protocol versions, offsets, fencing by a new instance, KIP-360 recovery, a
// timeout, a marker write that fails once, an expired id, and transactions left open.
func history(t *testing.T, e *env) {
	t.Helper()
	ok := func(what string, code int16) {
		t.Helper()
		wantCode(t, what, code, 0)
	}
	pa, ea := e.mustInit("a")
	e.mustAdd("a", pa, ea, tp("t", 0), tp("t", 1))
	ok("a commit", e.end(3, "a", pa, ea, true).ErrorCode)

	pb, eb := e.mustInit("b")
	e.mustAdd("b", pb, eb, tp("u", 0))
	ok("b offsets", e.addOffsets(3, "b", pb, eb, "g"))
	ok("b abort", e.end(3, "b", pb, eb, false).ErrorCode)

	pc, ec := e.mustInit("c")
	ok("c produce", e.c.CheckProduce(ctxb(), "c", pc, ec, tp("t", 2), true))
	r := e.end(5, "c", pc, ec, true)
	ok("c commit", r.ErrorCode)
	ec = r.ProducerEpoch
	ok("c produce 2", e.c.CheckProduce(ctxb(), "c", pc, ec, tp("t", 3), true))
	ok("c offsets", e.c.AddTxnOffsetCommit(ctxb(), "c", pc, ec, "g"))
	r = e.end(5, "c", pc, ec, false)
	ok("c abort", r.ErrorCode)
	ec = r.ProducerEpoch
	r = e.end(5, "c", pc, ec, false)
	ok("c empty abort", r.ErrorCode)
	if r.ProducerEpoch != ec+1 {
		t.Fatalf("empty abort answered epoch %d, want %d", r.ProducerEpoch, ec+1)
	}

	e.mustInit("x") // idle: expires below
	e.mustAdd("a", pa, ea, tp("t", 3))
	pa, ea = e.mustInit("a") // a new instance fences the open transaction

	rd := e.init("d", 3, 2000)
	ok("d init", rd.ErrorCode)
	e.mustAdd("d", rd.ProducerID, rd.ProducerEpoch, tp("t", 0))
	e.clock.Advance(3 * time.Second) // d times out
	waitIdle(t, e.c)

	pb, eb = e.mustInit("b")
	e.mustAdd("b", pb, eb, tp("u", 1), tp("u", 2))
	e.markers.fail(1)
	done := make(chan int16)
	go func() { done <- e.end(3, "b", pb, eb, true).ErrorCode }()
	advanceUntil(t, e.clock, func() bool { return e.state("b") == "CompleteCommit" })
	ok("b commit after retry", <-done)

	e.clock.Advance(61 * time.Minute) // x (and every idle id) expires
	waitIdle(t, e.c)

	r2 := e.init("a", 4, 10000, pa, int64(ea)) // KIP-360 recovery
	ok("a recover", r2.ErrorCode)
	pa, ea = r2.ProducerID, r2.ProducerEpoch
	e.mustAdd("a", pa, ea, tp("t", 5))
	ok("a commit 2", e.end(3, "a", pa, ea, true).ErrorCode)
	e.mustAdd("a", pa, ea, tp("t", 6)) // left open

	pc, ec = e.mustInit("c")
	ok("c produce 3", e.c.CheckProduce(ctxb(), "c", pc, ec, tp("t", 7), true))
	r = e.end(5, "c", pc, ec, true)
	ok("c commit 3", r.ErrorCode)
	ok("c produce 4", e.c.CheckProduce(ctxb(), "c", pc, r.ProducerEpoch, tp("t", 8), true)) // left open
	waitIdle(t, e.c)
}

// TestRecoveryAtEveryRecord cuts the state log of a long history after every record, as a
// crash would, and recovers a new coordinator from each prefix: every transaction past its
// decision must be finished with that decision (markers written), every open one aborted with
// a fenced epoch, nothing else touched, and the log must still replay.
func TestRecoveryAtEveryRecord(t *testing.T) {
	log := &eventLog{}
	e := newEnv(t, func(c *Config) { c.TransactionalIDExpiration = time.Hour })
	e.store.log, e.markers.log = log, log
	history(t, e)
	recs := e.store.records()
	checkMarkerOrder(t, recs, log.events)
	if len(recs) < 40 {
		t.Fatalf("history wrote only %d records", len(recs))
	}

	seen := make(map[kmsg.TransactionState]int) // states recovered from, over all cuts
	for cut := 0; cut <= len(recs); cut++ {
		prefix := recs[:cut]
		before := durable(replay(t, prefix))
		store := &memStore{recs: append([]record(nil), prefix...)}
		markers := &memMarkers{}
		c := New(Config{Store: store, Markers: markers, Clock: newFakeClock()})
		for _, r := range prefix {
			if err := c.Load(r.key, r.value); err != nil {
				t.Fatalf("cut %d: load: %v", cut, err)
			}
		}
		if err := c.Recover(ctxb()); err != nil {
			t.Fatalf("cut %d: recover: %v", cut, err)
		}
		waitIdle(t, c)
		after := durable(c)
		calls := markers.all()
		used := make([]bool, len(calls))
		expectMarker := func(id string, pid int64, epoch int16, commit bool, parts []TopicPartition) {
			t.Helper()
			if len(parts) == 0 {
				return
			}
			for i, mc := range calls {
				if !used[i] && mc.pid == pid && mc.epoch == epoch && mc.commit == commit && reflect.DeepEqual(mc.parts, parts) {
					used[i] = true
					return
				}
			}
			t.Fatalf("cut %d: %s: no marker (commit=%v) for %d/%d %v among %+v", cut, id, commit, pid, epoch, parts, calls)
		}
		for id, b := range before {
			seen[b.state]++
			a, ok := after[id]
			if !ok {
				t.Fatalf("cut %d: %s lost", cut, id)
			}
			switch b.state {
			case kmsg.TransactionStatePrepareCommit, kmsg.TransactionStatePrepareAbort:
				commit := b.state == kmsg.TransactionStatePrepareCommit
				if want := completed(b, a.update); !reflect.DeepEqual(a, want) {
					t.Fatalf("cut %d: %s recovered to %+v, want %+v", cut, id, a, want)
				}
				expectMarker(id, b.pid, b.epoch, commit, b.parts)
			case kmsg.TransactionStateOngoing:
				if a.state != kmsg.TransactionStateCompleteAbort || a.pid != b.pid || a.epoch <= b.epoch {
					t.Fatalf("cut %d: open %s recovered to %+v", cut, id, a)
				}
				expectMarker(id, b.pid, a.epoch, false, b.parts)
			default:
				if !reflect.DeepEqual(a, b) {
					t.Fatalf("cut %d: settled %s changed from %+v to %+v", cut, id, b, a)
				}
			}
		}
		if len(after) != len(before) {
			t.Fatalf("cut %d: %d ids after recovery, %d before", cut, len(after), len(before))
		}
		for i, u := range used {
			if !u {
				t.Fatalf("cut %d: unexpected marker %+v", cut, calls[i])
			}
		}
		all := store.records()
		checkReplays(t, c, all)
		// A second crash right after recovery changes nothing.
		c2 := replay(t, all)
		if err := c2.Recover(ctxb()); err != nil {
			t.Fatal(err)
		}
		waitIdle(t, c2)
		if got := durable(c2); !reflect.DeepEqual(got, after) {
			t.Fatalf("cut %d: second recovery changed %+v to %+v", cut, after, got)
		}
		_ = c.Close(ctxb())
		_ = c2.Close(ctxb())
	}
	for _, s := range []kmsg.TransactionState{kmsg.TransactionStateOngoing, kmsg.TransactionStatePrepareCommit,
		kmsg.TransactionStatePrepareAbort, kmsg.TransactionStateCompleteCommit, kmsg.TransactionStateCompleteAbort} {
		if seen[s] == 0 {
			t.Errorf("no cut left a transaction in %s", s)
		}
	}
	t.Logf("%d records; states at the cuts: %v", len(recs), seen)
}

// checkMarkerOrder checks that the markers of every completed transaction were written after
// its decision and before its Complete record.
func checkMarkerOrder(t *testing.T, recs []record, events []event) {
	t.Helper()
	prepared := make(map[string]int) // id -> index of its pending decision record
	for i, r := range recs {
		if r.value == nil {
			continue
		}
		var k kmsg.TxnMetadataKey
		if err := k.ReadFrom(r.key); err != nil {
			t.Fatal(err)
		}
		m, err := decodeValue(r.value)
		if err != nil {
			t.Fatal(err)
		}
		switch m.state {
		case kmsg.TransactionStatePrepareCommit, kmsg.TransactionStatePrepareAbort:
			prepared[k.TransactionalID] = i
		case kmsg.TransactionStateCompleteCommit, kmsg.TransactionStateCompleteAbort:
			j, ok := prepared[k.TransactionalID]
			if !ok {
				t.Fatalf("record %d: %s completed without a decision", i, k.TransactionalID)
			}
			delete(prepared, k.TransactionalID)
			p, _ := decodeValue(recs[j].value)
			if len(p.parts) == 0 {
				continue
			}
			// Find the marker event between record j+1 and record i+1.
			found, pos := false, 0
			for _, ev := range events {
				if ev.record != 0 {
					pos = ev.record
					continue
				}
				if pos >= j+1 && pos < i+1 && ev.marker.pid == p.pid && ev.marker.epoch == p.epoch &&
					ev.marker.commit == (p.state == kmsg.TransactionStatePrepareCommit) {
					found = true
				}
			}
			if !found {
				t.Fatalf("record %d: %s completed without markers between its decision and completion", i, k.TransactionalID)
			}
		}
	}
}
