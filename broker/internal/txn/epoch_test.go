package txn

import (
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestEndTxnV5BumpsEpoch(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.mustInit("a")
	wantCode(t, "implicit add", e.c.CheckProduce(ctxb(), "a", pid, epoch, tp("t", 0), true), 0)
	resp := e.end(5, "a", pid, epoch, true)
	wantCode(t, "commit", resp.ErrorCode, 0)
	if resp.ProducerID != pid || resp.ProducerEpoch != epoch+1 {
		t.Fatalf("v5 commit answered %d/%d, want %d/%d", resp.ProducerID, resp.ProducerEpoch, pid, epoch+1)
	}
	// The markers carry the bumped epoch, fencing late writes of the ended transaction.
	if got := e.markers.all(); len(got) != 1 || got[0].epoch != epoch+1 {
		t.Fatalf("markers %+v", got)
	}
	waitIdle(t, e.c)
	// A retry (old epoch) is recognised and answered with the new epoch; the opposite
	// decision is invalid.
	r := e.end(5, "a", pid, epoch, true)
	wantCode(t, "retried commit", r.ErrorCode, 0)
	if r.ProducerEpoch != epoch+1 {
		t.Fatalf("retry answered epoch %d", r.ProducerEpoch)
	}
	wantCode(t, "abort retry of commit", e.end(5, "a", pid, epoch, false).ErrorCode, kerr.InvalidTxnState.Code)
	wantCode(t, "older epoch", e.end(5, "a", pid, epoch-1, true).ErrorCode, kerr.ProducerFenced.Code)
	wantCode(t, "old epoch produce", e.c.CheckProduce(ctxb(), "a", pid, epoch, tp("t", 0), true), kerr.InvalidProducerEpoch.Code)
	// An abort with no transaction bumps the epoch (KIP-890) and writes no markers.
	r = e.end(5, "a", pid, epoch+1, false)
	wantCode(t, "empty abort", r.ErrorCode, 0)
	if r.ProducerEpoch != epoch+2 || len(e.markers.all()) != 1 {
		t.Fatalf("empty abort: epoch %d, %d marker calls", r.ProducerEpoch, len(e.markers.all()))
	}
	waitIdle(t, e.c)
	wantCode(t, "retried empty abort", e.end(5, "a", pid, epoch+1, false).ErrorCode, 0)
	checkReplays(t, e.c, e.store.records())
}

func TestInitFencesOngoingTransaction(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.mustInit("a")
	e.mustAdd("a", pid, epoch, tp("t", 0), tp("t", 1))
	// A new instance (no KIP-360 fields) takes over: the open transaction is aborted at a
	// bumped epoch, and the new instance gets the epoch after that.
	pid2, epoch2 := e.mustInit("a")
	if pid2 != pid || epoch2 != epoch+2 {
		t.Fatalf("new instance got %d/%d, want %d/%d", pid2, epoch2, pid, epoch+2)
	}
	want := []markerCall{{pid, epoch + 1, false, []TopicPartition{tp("t", 0), tp("t", 1)}}}
	if got := e.markers.all(); !reflect.DeepEqual(got, want) {
		t.Fatalf("markers %+v, want %+v", got, want)
	}
	wantCode(t, "old instance commits", e.end(3, "a", pid, epoch, true).ErrorCode, kerr.ProducerFenced.Code)
	wantCode(t, "old instance adds", e.add(3, "a", pid, epoch, tp("t", 2))["t/2"], kerr.ProducerFenced.Code)
	s := e.c.Stats()
	if s.Aborts != 1 || s.Fencings != 1 || s.Commits != 0 {
		t.Fatalf("stats %+v", s)
	}
	checkReplays(t, e.c, e.store.records())
}

func TestKIP360Recovery(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.mustInit("a")
	// The producer recovers with its own id and epoch: epoch bumped, nobody counted fenced.
	r := e.init("a", 4, 1000, pid, int64(epoch))
	wantCode(t, "recover", r.ErrorCode, 0)
	if r.ProducerID != pid || r.ProducerEpoch != epoch+1 {
		t.Fatalf("recovered to %d/%d", r.ProducerID, r.ProducerEpoch)
	}
	// Its retry (the response was lost) gets the same epoch again.
	r = e.init("a", 4, 1000, pid, int64(epoch))
	if r.ErrorCode != 0 || r.ProducerEpoch != epoch+1 {
		t.Fatalf("retry: %s epoch %d", codeName(r.ErrorCode), r.ProducerEpoch)
	}
	// A fenced instance (older epoch) gets PRODUCER_FENCED, or INVALID_PRODUCER_EPOCH before v4.
	pid2, epoch2 := e.mustInit("a")
	wantCode(t, "fenced v4", e.init("a", 4, 1000, pid2, int64(epoch2-1)).ErrorCode, kerr.ProducerFenced.Code)
	wantCode(t, "fenced v3", e.init("a", 3, 1000, pid2, int64(epoch2-1)).ErrorCode, kerr.InvalidProducerEpoch.Code)
	wantCode(t, "other pid", e.init("a", 4, 1000, pid2+100, int64(epoch2)).ErrorCode, kerr.ProducerFenced.Code)
	// Recovering with an open transaction aborts it and keeps the producer.
	e.mustAdd("a", pid2, epoch2, tp("t", 0))
	r = e.init("a", 4, 1000, pid2, int64(epoch2))
	wantCode(t, "recover with open transaction", r.ErrorCode, 0)
	if r.ProducerEpoch != epoch2+2 {
		t.Fatalf("epoch after recovering over an open transaction %d, want %d", r.ProducerEpoch, epoch2+2)
	}
	if got := e.markers.all(); len(got) != 1 || got[0].commit || got[0].epoch != epoch2+1 {
		t.Fatalf("markers %+v", got)
	}
	if s := e.c.Stats(); s.Fencings != 1 {
		t.Fatalf("fencings %d, want 1 (only the new instance)", s.Fencings)
	}
	// A new transactional id may be initialised with KIP-360 fields from an idempotent
	// producer's id.
	wantCode(t, "new id with fields", e.init("b", 4, 1000, 999, 3).ErrorCode, 0)
}

// loadState makes id's durable state m, as if it had been written before a restart.
func loadState(t *testing.T, e *env, id string, m meta) {
	t.Helper()
	if err := e.store.Append(ctxb(), txnKey(id), txnValue(m)); err != nil {
		t.Fatal(err)
	}
	e.reopen()
}

func TestEpochExhaustion(t *testing.T) {
	e := newEnv(t)
	last := int16(math.MaxInt16 - 2)
	loadState(t, e, "a", meta{pid: 7, prevPid: -1, nextPid: -1, epoch: last, timeoutMs: 1000,
		state: kmsg.TransactionStateCompleteCommit, start: -1})
	pid, epoch := e.mustInit("a")
	if pid != 7 || epoch != last+1 {
		t.Fatalf("got %d/%d", pid, epoch)
	}
	// epoch 32766 is the last one a producer may have: the next init rotates the id. The
	// producer asks with its id and epoch (KIP-360), so its retry is recognised.
	r := e.init("a", 4, 1000, 7, int64(last+1))
	if r.ErrorCode != 0 || r.ProducerID == 7 || r.ProducerEpoch != 0 {
		t.Fatalf("after exhaustion got %s %d/%d, want a new id at epoch 0", codeName(r.ErrorCode), r.ProducerID, r.ProducerEpoch)
	}
	r2 := e.init("a", 4, 1000, 7, int64(last+1))
	if r2.ErrorCode != 0 || r2.ProducerID != r.ProducerID || r2.ProducerEpoch != 0 {
		t.Fatalf("retry of rotation: %s %d/%d", codeName(r2.ErrorCode), r2.ProducerID, r2.ProducerEpoch)
	}
	// A new instance at the exhausted epoch rotates too.
	loadState(t, e, "b", meta{pid: 8, prevPid: -1, nextPid: -1, epoch: last + 1, timeoutMs: 1000,
		state: kmsg.TransactionStateCompleteAbort, start: -1})
	if pid, epoch := e.mustInit("b"); pid == 8 || epoch != 0 {
		t.Fatalf("new instance after exhaustion got %d/%d", pid, epoch)
	}
	checkReplays(t, e.c, e.store.records())
}

func TestEndTxnV5RotatesExhaustedProducer(t *testing.T) {
	e := newEnv(t)
	last := int16(math.MaxInt16 - 1)
	loadState(t, e, "a", meta{pid: 7, prevPid: -1, nextPid: -1, epoch: last, timeoutMs: 1000,
		state: kmsg.TransactionStateEmpty, start: -1})
	wantCode(t, "implicit add", e.c.CheckProduce(ctxb(), "a", 7, last, tp("t", 0), true), 0)
	r := e.end(5, "a", 7, last, true)
	wantCode(t, "commit", r.ErrorCode, 0)
	if r.ProducerID == 7 || r.ProducerEpoch != 0 {
		t.Fatalf("answered %d/%d, want a new producer id at epoch 0", r.ProducerID, r.ProducerEpoch)
	}
	if got := e.markers.all(); len(got) != 1 || got[0].pid != 7 || got[0].epoch != math.MaxInt16 {
		t.Fatalf("markers %+v", got)
	}
	waitIdle(t, e.c)
	// The retry with the old id and last epoch is recognised.
	r2 := e.end(5, "a", 7, last, true)
	if r2.ErrorCode != 0 || r2.ProducerID != r.ProducerID {
		t.Fatalf("retry: %s %d/%d", codeName(r2.ErrorCode), r2.ProducerID, r2.ProducerEpoch)
	}
	checkReplays(t, e.c, e.store.records())
}

func TestTransactionTimeout(t *testing.T) {
	e := newEnv(t)
	r := e.init("a", 4, 5000)
	pid, epoch := r.ProducerID, r.ProducerEpoch
	e.mustAdd("a", pid, epoch, tp("t", 0))
	pidB, epochB := e.mustInit("b")
	wantCode(t, "implicit add b", e.c.CheckProduce(ctxb(), "b", pidB, epochB, tp("t", 1), true), 0) // KIP-890 producer
	e.clock.Advance(4 * time.Second)
	if e.state("a") != "Ongoing" {
		t.Fatal("aborted before its timeout")
	}
	e.clock.Advance(2 * time.Second) // a is past 5s; b (10s) is not
	waitIdle(t, e.c)
	if s := e.state("a"); s != "CompleteAbort" {
		t.Fatalf("a: %s", s)
	}
	if e.state("b") != "Ongoing" {
		t.Fatal("b aborted early")
	}
	wantCode(t, "timed-out producer commits", e.end(3, "a", pid, epoch, true).ErrorCode, kerr.ProducerFenced.Code)
	wantCode(t, "timed-out producer adds", e.add(3, "a", pid, epoch, tp("t", 0))["t/0"], kerr.ProducerFenced.Code)
	e.clock.Advance(5 * time.Second)
	waitIdle(t, e.c)
	// A KIP-890 producer is fenced by two epochs, so its EndTxn is not taken for a retry.
	if d := e.describe("b"); d.State != "CompleteAbort" || d.ProducerEpoch != epochB+2 {
		t.Fatalf("b: %+v", d)
	}
	wantCode(t, "timed-out v5 producer commits", e.end(5, "b", pidB, epochB, true).ErrorCode, kerr.ProducerFenced.Code)
	wantCode(t, "timed-out v5 producer aborts", e.end(5, "b", pidB, epochB, false).ErrorCode, kerr.ProducerFenced.Code)
	want := []markerCall{
		{pid, epoch + 1, false, []TopicPartition{tp("t", 0)}},
		{pidB, epochB + 2, false, []TopicPartition{tp("t", 1)}},
	}
	if got := e.markers.all(); !reflect.DeepEqual(got, want) {
		t.Fatalf("markers %+v, want %+v", got, want)
	}
	if s := e.c.Stats(); s.Timeouts != 2 || s.Aborts != 2 {
		t.Fatalf("stats %+v", s)
	}
	// The producer re-initialises and carries on.
	pid3, epoch3 := e.mustInit("a")
	if pid3 != pid || epoch3 != epoch+2 {
		t.Fatalf("re-init %d/%d", pid3, epoch3)
	}
	checkReplays(t, e.c, e.store.records())
}

func TestTransactionalIDExpiration(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TransactionalIDExpiration = time.Hour })
	e.mustInit("idle")
	pid, epoch := e.mustInit("busy")
	e.clock.Advance(30 * time.Minute)
	e.mustAdd("busy", pid, epoch, tp("t", 0))
	e.clock.Advance(31 * time.Minute)
	waitIdle(t, e.c)
	wantCode(t, "expired", e.describe("idle").ErrorCode, kerr.TransactionalIDNotFound.Code)
	if e.state("busy") != "CompleteAbort" { // it timed out after 10s, and was used 31m ago
		t.Fatalf("busy: %s", e.state("busy"))
	}
	recs := e.store.records()
	tombstones := 0
	for _, r := range recs {
		if r.value == nil {
			tombstones++
		}
	}
	if tombstones != 1 {
		t.Fatalf("%d tombstones, want 1", tombstones)
	}
	checkReplays(t, e.c, recs)
}

func TestDescribeAndList(t *testing.T) {
	e := newEnv(t)
	pidA, epochA := e.mustInit("app-a")
	e.clock.Advance(time.Second)
	e.mustAdd("app-a", pidA, epochA, tp("t", 1), tp("t", 0), tp("s", 4))
	e.mustInit("app-b")
	pidC, _ := e.mustInit("other")
	e.clock.Advance(3 * time.Second)

	d := e.describe("app-a")
	if d.ErrorCode != 0 || d.State != "Ongoing" || d.ProducerID != pidA || d.TimeoutMillis != 10000 ||
		d.StartTimestamp != e.clock.Now().Add(-3*time.Second).UnixMilli() {
		t.Fatalf("describe: %+v", d)
	}
	wantTopics := []kmsg.DescribeTransactionsResponseTransactionStateTopic{
		{Topic: "s", Partitions: []int32{4}}, {Topic: "t", Partitions: []int32{0, 1}}}
	if !reflect.DeepEqual(d.Topics, wantTopics) {
		t.Fatalf("topics %+v", d.Topics)
	}
	wantCode(t, "describe unknown", e.describe("nope").ErrorCode, kerr.TransactionalIDNotFound.Code)

	list := func(mod func(*kmsg.ListTransactionsRequest)) []string {
		req := kmsg.NewPtrListTransactionsRequest()
		req.Version = 2
		mod(req)
		resp := e.c.ListTransactions(ctxb(), req)
		if resp.ErrorCode != 0 {
			t.Fatalf("list: %s", codeName(resp.ErrorCode))
		}
		var ids []string
		for _, s := range resp.TransactionStates {
			ids = append(ids, s.TransactionalID+":"+s.TransactionState)
		}
		return ids
	}
	for _, c := range []struct {
		name string
		mod  func(*kmsg.ListTransactionsRequest)
		want []string
	}{
		{"all", func(*kmsg.ListTransactionsRequest) {}, []string{"app-a:Ongoing", "app-b:Empty", "other:Empty"}},
		{"state", func(r *kmsg.ListTransactionsRequest) { r.StateFilters = []string{"Ongoing"} }, []string{"app-a:Ongoing"}},
		{"producer", func(r *kmsg.ListTransactionsRequest) { r.ProducerIDFilters = []int64{pidC} }, []string{"other:Empty"}},
		{"duration", func(r *kmsg.ListTransactionsRequest) {
			r.StateFilters = []string{"Ongoing"}
			r.DurationFilterMillis = 2000
		}, []string{"app-a:Ongoing"}},
		{"long duration", func(r *kmsg.ListTransactionsRequest) {
			r.StateFilters = []string{"Ongoing"}
			r.DurationFilterMillis = 5000
		}, nil},
		{"pattern", func(r *kmsg.ListTransactionsRequest) { p := "^app-"; r.TransactionalIDPattern = &p }, []string{"app-a:Ongoing", "app-b:Empty"}},
	} {
		if got := list(c.mod); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	req := kmsg.NewPtrListTransactionsRequest()
	req.Version = 2
	bad := "("
	req.TransactionalIDPattern = &bad
	wantCode(t, "bad pattern", e.c.ListTransactions(ctxb(), req).ErrorCode, kerr.InvalidRegularExpression.Code)
	req = kmsg.NewPtrListTransactionsRequest()
	req.StateFilters = []string{"Bogus"}
	if resp := e.c.ListTransactions(ctxb(), req); !reflect.DeepEqual(resp.UnknownStateFilters, []string{"Bogus"}) || len(resp.TransactionStates) != 3 {
		t.Fatalf("unknown state filter: %+v", resp)
	}
}
