package kafka

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/goleak"
)

// TestNoGoroutineOutlivesClose runs a client through everything it does
// (produce, admin calls, a bounded read, a tail read, a group membership)
// and checks that once the calls returned and the client is closed, none
// of the goroutines they started is left. It is not parallel, so that the
// goroutines present at its start are only those of the tests paused
// around it and of its broker.
func TestNoGoroutineOutlivesClose(t *testing.T) {
	addr := startBroker(t)
	before := goleak.IgnoreCurrent()

	c, err := New(ctxFor(t), testConfig(t, addr))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	if err := c.EnsureTopic(ctx, "leak", 2, nil); err != nil {
		t.Fatal(err)
	}
	fill(t, c, "leak", 2, 10)
	if _, _, err := c.Offsets(ctx, "leak", 1); err != nil {
		t.Fatal(err)
	}
	if offs, _, err := readAll(ctx, c, "leak", 0, 0, 10); err != nil || len(offs) != 10 {
		t.Fatalf("read: %d records, %v", len(offs), err)
	}

	tail, stopTail := context.WithCancel(ctx)
	tailed := make(chan error, 1)
	go func() { tailed <- c.ReadPartition(tail, "leak", 1, 0, -1, func(*Record) error { return nil }) }()

	m := join(t, c, "m", "leak-group", []string{"leak"})
	awaitConsumed(t, []string{"leak"}, 2, 10, m)
	m.leave(t)
	stopTail()
	if err := <-tailed; !errors.Is(err, context.Canceled) {
		t.Fatalf("tail read: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, before)
}
