package txn

import (
	"context"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestInitProducerIDNewAndBump(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.mustInit("a")
	if epoch != 0 {
		t.Fatalf("first epoch %d, want 0", epoch)
	}
	pid2, epoch2 := e.mustInit("a")
	if pid2 != pid || epoch2 != 1 {
		t.Fatalf("re-init: %d/%d, want %d/1", pid2, epoch2, pid)
	}
	if s := e.c.Stats(); s.Fencings != 1 {
		t.Fatalf("fencings %d, want 1", s.Fencings)
	}
	other, _ := e.mustInit("b")
	if other == pid {
		t.Fatal("two transactional ids share a producer id")
	}
	checkReplays(t, e.c, e.store.records())
}

func TestInitProducerIDValidation(t *testing.T) {
	e := newEnv(t)
	wantCode(t, "zero timeout", e.init("a", 3, 0).ErrorCode, kerr.InvalidTransactionTimeout.Code)
	wantCode(t, "timeout over max", e.init("a", 3, 60001).ErrorCode, kerr.InvalidTransactionTimeout.Code)
	wantCode(t, "empty id", e.init("", 3, 1000).ErrorCode, kerr.InvalidRequest.Code)
	wantCode(t, "half KIP-360 pair", e.init("a", 3, 1000, 5, -1).ErrorCode, kerr.InvalidRequest.Code)
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionTimeoutMillis = 1000
	wantCode(t, "null id", e.c.InitProducerID(ctxb(), req).ErrorCode, kerr.InvalidRequest.Code)
	if len(e.store.records()) != 0 {
		t.Fatal("rejected requests wrote records")
	}
	// A failed write leaves no trace.
	e.store.fail(1)
	wantCode(t, "failed write", e.init("a", 3, 1000).ErrorCode, kerr.CoordinatorNotAvailable.Code)
	wantCode(t, "describe after failed write", e.describe("a").ErrorCode, kerr.TransactionalIDNotFound.Code)
}

func TestCommitV3(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.mustInit("a")
	e.mustAdd("a", pid, epoch, tp("t", 0), tp("t", 1))
	e.mustAdd("a", pid, epoch, tp("t", 1), tp("u", 0)) // idempotent for t/1
	if d := e.describe("a"); d.State != "Ongoing" || len(d.Topics) != 2 {
		t.Fatalf("describe: %+v", d)
	}
	resp := e.end(3, "a", pid, epoch, true)
	wantCode(t, "commit", resp.ErrorCode, 0)
	want := []markerCall{{pid, epoch, true, []TopicPartition{tp("t", 0), tp("t", 1), tp("u", 0)}}}
	if got := e.markers.all(); !reflect.DeepEqual(got, want) {
		t.Fatalf("markers %+v, want %+v", got, want)
	}
	waitIdle(t, e.c)
	if s := e.state("a"); s != "CompleteCommit" {
		t.Fatalf("state %s", s)
	}
	// A retried commit succeeds and writes nothing; an abort now is invalid.
	n := len(e.store.records())
	wantCode(t, "retried commit", e.end(3, "a", pid, epoch, true).ErrorCode, 0)
	wantCode(t, "abort after commit", e.end(3, "a", pid, epoch, false).ErrorCode, kerr.InvalidTxnState.Code)
	if len(e.store.records()) != n || len(e.markers.all()) != 1 {
		t.Fatal("retry wrote something")
	}
	// Next transaction, aborted, on the same epoch (v3 does not bump).
	e.mustAdd("a", pid, epoch, tp("t", 2))
	wantCode(t, "abort", e.end(3, "a", pid, epoch, false).ErrorCode, 0)
	waitIdle(t, e.c)
	wantCode(t, "retried abort", e.end(3, "a", pid, epoch, false).ErrorCode, 0)
	wantCode(t, "commit after abort", e.end(3, "a", pid, epoch, true).ErrorCode, kerr.InvalidTxnState.Code)
	if got := e.markers.all(); len(got) != 2 || got[1].commit || !reflect.DeepEqual(got[1].parts, []TopicPartition{tp("t", 2)}) {
		t.Fatalf("abort markers %+v", got)
	}
	s := e.c.Stats()
	if s.Commits != 1 || s.Aborts != 1 || s.Open != 0 {
		t.Fatalf("stats %+v", s)
	}
	checkReplays(t, e.c, e.store.records())
}

func TestEndTxnErrors(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.mustInit("a")
	wantCode(t, "unknown id", e.end(3, "zz", pid, epoch, true).ErrorCode, kerr.InvalidProducerIDMapping.Code)
	wantCode(t, "empty id", e.end(3, "", pid, epoch, true).ErrorCode, kerr.InvalidRequest.Code)
	wantCode(t, "wrong pid", e.end(3, "a", pid+1, epoch, true).ErrorCode, kerr.InvalidProducerIDMapping.Code)
	wantCode(t, "wrong epoch v1", e.end(1, "a", pid, epoch+1, true).ErrorCode, kerr.InvalidProducerEpoch.Code)
	wantCode(t, "wrong epoch v2", e.end(2, "a", pid, epoch+1, true).ErrorCode, kerr.ProducerFenced.Code)
	wantCode(t, "commit of empty", e.end(3, "a", pid, epoch, true).ErrorCode, kerr.InvalidTxnState.Code)
	wantCode(t, "abort of empty", e.end(3, "a", pid, epoch, false).ErrorCode, kerr.InvalidTxnState.Code)
	wantCode(t, "v5 commit of empty", e.end(5, "a", pid, epoch, true).ErrorCode, kerr.InvalidTxnState.Code)
}

func TestAddPartitionsErrors(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.mustInit("a")
	got := e.add(3, "a", pid, epoch, tp("t", 0), tp("missing", 0))
	want := map[string]int16{"t/0": kerr.OperationNotAttempted.Code, "missing/0": kerr.UnknownTopicOrPartition.Code}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("unknown topic: %v", got)
	}
	if s := e.state("a"); s != "Empty" {
		t.Fatalf("a failed add changed the state to %s", s)
	}
	for _, c := range []struct {
		name    string
		version int16
		id      string
		pid     int64
		epoch   int16
		want    int16
	}{
		{"unknown id", 3, "zz", pid, epoch, kerr.InvalidProducerIDMapping.Code},
		{"wrong pid", 3, "a", pid + 1, epoch, kerr.InvalidProducerIDMapping.Code},
		{"old epoch v1", 1, "a", pid, epoch - 1, kerr.InvalidProducerEpoch.Code},
		{"old epoch v2", 2, "a", pid, epoch - 1, kerr.ProducerFenced.Code},
		{"empty id", 3, "", pid, epoch, kerr.InvalidRequest.Code},
	} {
		got := e.add(c.version, c.id, c.pid, c.epoch, tp("t", 0))
		wantCode(t, c.name, got["t/0"], c.want)
	}
	// While a transaction completes, adds are refused with CONCURRENT_TRANSACTIONS.
	e.mustAdd("a", pid, epoch, tp("t", 0))
	e.markers.fail(1)
	done := make(chan int16)
	go func() { done <- e.end(3, "a", pid, epoch, true).ErrorCode }()
	waitFor(t, func() bool { return e.state("a") == "PrepareCommit" })
	wantCode(t, "add while completing", e.add(3, "a", pid, epoch, tp("t", 1))["t/1"], kerr.ConcurrentTransactions.Code)
	wantCode(t, "commit while completing", e.end(3, "a", pid, epoch, true).ErrorCode, kerr.ConcurrentTransactions.Code)
	wantCode(t, "abort while completing", e.end(3, "a", pid, epoch, false).ErrorCode, kerr.InvalidTxnState.Code)
	wantCode(t, "init while completing", e.init("a", 3, 1000).ErrorCode, kerr.ConcurrentTransactions.Code)
	advanceUntil(t, e.clock, func() bool { return len(e.markers.all()) == 1 })
	wantCode(t, "commit after marker retry", <-done, 0)
}

func TestBatchedAddAndVerify(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.mustInit("a")
	e.mustAdd("a", pid, epoch, tp("t", 0))
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = 4
	verify := kmsg.AddPartitionsToTxnRequestTransaction{TransactionalID: "a", ProducerID: pid, ProducerEpoch: epoch, VerifyOnly: true,
		Topics: []kmsg.AddPartitionsToTxnRequestTransactionTopic{{Topic: "t", Partitions: []int32{0, 1}}}}
	fenced := kmsg.AddPartitionsToTxnRequestTransaction{TransactionalID: "a", ProducerID: pid, ProducerEpoch: epoch + 3, VerifyOnly: true,
		Topics: []kmsg.AddPartitionsToTxnRequestTransactionTopic{{Topic: "t", Partitions: []int32{0}}}}
	unknown := kmsg.AddPartitionsToTxnRequestTransaction{TransactionalID: "nope", ProducerID: pid, ProducerEpoch: epoch,
		Topics: []kmsg.AddPartitionsToTxnRequestTransactionTopic{{Topic: "t", Partitions: []int32{0}}}}
	add := kmsg.AddPartitionsToTxnRequestTransaction{TransactionalID: "a", ProducerID: pid, ProducerEpoch: epoch,
		Topics: []kmsg.AddPartitionsToTxnRequestTransactionTopic{{Topic: "t", Partitions: []int32{2}}}}
	req.Transactions = append(req.Transactions, verify, fenced, unknown, add)
	resp := e.c.AddPartitionsToTxn(ctxb(), req)
	codes := func(i int) []int16 {
		var out []int16
		for _, tt := range resp.Transactions[i].Topics {
			for _, p := range tt.Partitions {
				out = append(out, p.ErrorCode)
			}
		}
		return out
	}
	if len(resp.Transactions) != 4 {
		t.Fatalf("%d results", len(resp.Transactions))
	}
	for i, want := range [][]int16{
		{0, kerr.TransactionAbortable.Code},
		{kerr.ProducerFenced.Code},
		{kerr.InvalidProducerIDMapping.Code},
		{0},
	} {
		if got := codes(i); !reflect.DeepEqual(got, want) {
			t.Fatalf("transaction %d: codes %v, want %v", i, got, want)
		}
	}
	if d := e.describe("a"); !reflect.DeepEqual(d.Topics[0].Partitions, []int32{0, 2}) {
		t.Fatalf("partitions %v", d.Topics)
	}
}

func TestAddOffsetsAndChecks(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.mustInit("a")
	wantCode(t, "offsets before add", e.c.CheckTxnOffsetCommit("a", pid, epoch, "g"), kerr.InvalidTxnState.Code)
	wantCode(t, "add offsets", e.addOffsets(3, "a", pid, epoch, "g"), 0)
	wantCode(t, "offsets after add", e.c.CheckTxnOffsetCommit("a", pid, epoch, "g"), 0)
	wantCode(t, "other group", e.c.CheckTxnOffsetCommit("a", pid, epoch, "gg"), kerr.InvalidTxnState.Code)
	wantCode(t, "offsets fenced", e.c.CheckTxnOffsetCommit("a", pid, epoch-1, "g"), kerr.ProducerFenced.Code)
	wantCode(t, "offsets wrong pid", e.c.CheckTxnOffsetCommit("a", pid+9, epoch, "g"), kerr.InvalidProducerIDMapping.Code)
	wantCode(t, "add offsets v1 fenced", e.addOffsets(1, "a", pid, epoch+1, "g"), kerr.InvalidProducerEpoch.Code)
	if d := e.describe("a"); d.Topics[0].Topic != "__consumer_offsets" || d.Topics[0].Partitions[0] != 1 {
		t.Fatalf("offsets partition not added: %+v", d.Topics)
	}

	wantCode(t, "produce outside txn", e.c.CheckProduce(ctxb(), "a", pid, epoch, tp("t", 0), false), kerr.InvalidTxnState.Code)
	wantCode(t, "produce implicit add", e.c.CheckProduce(ctxb(), "a", pid, epoch, tp("t", 0), true), 0)
	wantCode(t, "produce after add", e.c.CheckProduce(ctxb(), "a", pid, epoch, tp("t", 0), false), 0)
	wantCode(t, "produce fenced", e.c.CheckProduce(ctxb(), "a", pid, epoch-1, tp("t", 0), false), kerr.InvalidProducerEpoch.Code)
	wantCode(t, "produce unknown", e.c.CheckProduce(ctxb(), "b", pid, epoch, tp("t", 0), true), kerr.InvalidProducerIDMapping.Code)
	wantCode(t, "commit", e.end(3, "a", pid, epoch, true).ErrorCode, 0)
	want := []TopicPartition{tp("__consumer_offsets", 1), tp("t", 0)}
	if got := e.markers.all(); len(got) != 1 || !reflect.DeepEqual(got[0].parts, want) {
		t.Fatalf("markers %+v", got)
	}
	// KIP-890: TxnOffsetCommit v5 adds the group itself and starts the transaction.
	wantCode(t, "implicit offsets", e.c.AddTxnOffsetCommit(ctxb(), "a", pid, epoch, "g"), 0)
	wantCode(t, "offsets after implicit add", e.c.CheckTxnOffsetCommit("a", pid, epoch, "g"), 0)
	checkReplays(t, e.c, e.store.records())
}

func TestNotReadyAndClosed(t *testing.T) {
	c := New(Config{})
	id := "a"
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionalID, req.TransactionTimeoutMillis = &id, 1000
	wantCode(t, "before recover", c.InitProducerID(ctxb(), req).ErrorCode, kerr.CoordinatorLoadInProgress.Code)
	wantCode(t, "produce before recover", c.CheckProduce(ctxb(), "a", 1, 0, tp("t", 0), true), kerr.NotEnoughReplicas.Code)
	if err := c.Recover(ctxb()); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "after recover", c.InitProducerID(ctxb(), req).ErrorCode, 0)
	if err := c.Load(txnKey("b"), nil); err == nil {
		t.Fatal("load after recover accepted")
	}
	if err := c.Close(ctxb()); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(ctxb()); err != nil {
		t.Fatal("second close:", err)
	}
	wantCode(t, "after close", c.InitProducerID(ctxb(), req).ErrorCode, kerr.CoordinatorNotAvailable.Code)
	list := c.ListTransactions(ctxb(), kmsg.NewPtrListTransactionsRequest())
	wantCode(t, "list after close", list.ErrorCode, kerr.CoordinatorNotAvailable.Code)
}

func TestCloseAnswersWaitingEndTxn(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.mustInit("a")
	e.mustAdd("a", pid, epoch, tp("t", 0))
	e.markers.fail(1000)
	done := make(chan int16)
	go func() { done <- e.end(3, "a", pid, epoch, true).ErrorCode }()
	waitFor(t, func() bool { return e.state("a") == "PrepareCommit" })
	ctx, cancel := context.WithCancel(ctxb())
	defer cancel()
	if err := e.c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "end after close", <-done, kerr.CoordinatorNotAvailable.Code)
	// The decision is durable: the restarted coordinator commits.
	e.markers.fail(0)
	c := e.reopen()
	waitIdle(t, c)
	if s := e.state("a"); s != "CompleteCommit" {
		t.Fatalf("after restart: %s", s)
	}
	if got := e.markers.all(); len(got) != 1 || !got[0].commit {
		t.Fatalf("markers %+v", got)
	}
}
