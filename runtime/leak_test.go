package runtime_test

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
)

// TestNoGoroutineOutlivesClose runs an instance (New, Run, a view of its
// table) and checks that once Run returned, the view's context ended and
// the runtime is closed, no goroutine they started is left. It is not
// parallel, so that the goroutines present at its start are only those of
// the tests paused around it and of its log.
func TestNoGoroutineOutlivesClose(t *testing.T) {
	addrs := []string{startLog(t)}
	before := goleak.IgnoreCurrent()

	g, topo := countTopology(t, processor.Stop(), nil)
	rt, err := runtime.New(t.Context(), topo, options(t, addrs, t.TempDir(), 2))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- rt.Run(ctx) }()
	emitKVs(t, rt, events, kv{"a", "1"}, kv{"b", "2"}, kv{"a", "3"})
	awaitCondition(t, "the records are processed", func() bool { return rt.Stats("counter").Processed.Load() == 3 })

	vctx, stopView := context.WithCancel(t.Context())
	v, err := runtime.NewView(vctx, rt, g)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.WaitCaughtUp(vctx); err != nil {
		t.Fatal(err)
	}
	stopView()
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("run: %v", err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	// goleveldb's closed DB drains its memory pool on a goroutine of its
	// own that waits up to a second after Close: goleveldb's, bounded,
	// and not one the runtime started.
	goleak.VerifyNone(t, before, goleak.IgnoreTopFunction("github.com/syndtr/goleveldb/leveldb.(*DB).mpoolDrain"))
}
