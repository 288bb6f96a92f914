package txn

import (
	"bytes"
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// blockingStore blocks appends for one transactional id until released.
type blockingStore struct {
	memStore
	key     []byte
	entered chan struct{}
	release chan struct{}
}

func (s *blockingStore) Append(ctx context.Context, key, value []byte) error {
	if bytes.Equal(key, s.key) {
		s.entered <- struct{}{}
		<-s.release
	}
	return s.memStore.Append(ctx, key, value)
}

func TestIdsProceedInParallel(t *testing.T) {
	bs := &blockingStore{entered: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, func(c *Config) { c.Store = bs })
	pa, ea := e.mustInit("a")
	bs.key = txnKey("a")
	done := make(chan map[string]int16)
	go func() { done <- e.add(3, "a", pa, ea, tp("t", 0)) }()
	<-bs.entered // a's write is in progress and holds a's lock
	pb, eb := e.mustInit("b")
	e.mustAdd("b", pb, eb, tp("t", 1))
	if got := e.end(3, "b", pb, eb, true).ErrorCode; got != 0 {
		t.Fatalf("b commit: %s", codeName(got))
	}
	close(bs.release)
	if got := <-done; got["t/0"] != 0 {
		t.Fatalf("a add: %s", codeName(got["t/0"]))
	}
}

func TestRetriedAddWritesNothing(t *testing.T) {
	e := newEnv(t)
	pid, epoch := e.mustInit("a")
	e.mustAdd("a", pid, epoch, tp("t", 0), tp("t", 1))
	n := len(e.store.records())
	e.mustAdd("a", pid, epoch, tp("t", 1), tp("t", 0))
	wantCode(t, "retried implicit add", e.c.CheckProduce(ctxb(), "a", pid, epoch, tp("t", 0), true), 0)
	if len(e.store.records()) != n {
		t.Fatal("a retried add wrote a record")
	}
	// A failed write answers an error and leaves the state as it was.
	e.store.fail(1)
	wantCode(t, "failed add", e.add(3, "a", pid, epoch, tp("t", 2))["t/2"], kerr.CoordinatorNotAvailable.Code)
	if d := e.describe("a"); len(d.Topics[0].Partitions) != 2 {
		t.Fatalf("failed add changed partitions: %v", d.Topics)
	}
	e.store.fail(1)
	wantCode(t, "failed end", e.end(3, "a", pid, epoch, true).ErrorCode, kerr.CoordinatorNotAvailable.Code)
	if s := e.state("a"); s != "Ongoing" {
		t.Fatalf("failed end left %s", s)
	}
	wantCode(t, "end", e.end(3, "a", pid, epoch, true).ErrorCode, 0)
	checkReplays(t, e.c, e.store.records())
}
