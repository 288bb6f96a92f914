package runtime_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
)

// emitLog records the outcome of each record an emitter sent, by value.
type emitLog struct {
	mu      sync.Mutex
	ok      map[int]bool
	failed  map[int]error
	settled int
	changed chan struct{}
}

func newEmitLog() *emitLog {
	return &emitLog{ok: map[int]bool{}, failed: map[int]error{}, changed: make(chan struct{})}
}

func (l *emitLog) emit(em *runtime.Emitter[string, string], key string, i int) {
	em.EmitAsync(key, strconv.Itoa(i), func(err error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if err != nil {
			l.failed[i] = err
		} else {
			l.ok[i] = true
		}
		l.settled++
		close(l.changed)
		l.changed = make(chan struct{})
	})
}

// await waits until n records are settled.
func (l *emitLog) await(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(testTimeout)
	for {
		l.mu.Lock()
		settled, changed := l.settled, l.changed
		l.mu.Unlock()
		if settled >= n {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("%d of %d records settled", settled, n)
		}
	}
}

// keyValues reads the values the log holds for key, in log order.
func keyValues(t *testing.T, addrs []string, key string, partitions int32) []int {
	t.Helper()
	var out []int
	for _, r := range readAllRecords(t, addrs, events.Name(), partitions) {
		if string(r.key) != key {
			continue
		}
		v, err := strconv.Atoi(string(r.value))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// kvRange returns records of key with values from to to-1.
func kvRange(key string, from, to int) []kv {
	var out []kv
	for i := from; i < to; i++ {
		out = append(out, kv{key, strconv.Itoa(i)})
	}
	return out
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// An emitter rides out an outage of the log shorter than the delivery
// timeout: every record of the key is acknowledged, and the log holds
// them once each, in the order they were emitted.
func TestEmitterRidesOutAnOutage(t *testing.T) {
	proxy, addrs := startCuttableLog(t)
	_, topo := countTopology(t, processor.Stop(), nil)
	rt, err := runtime.New(t.Context(), topo, options(t, addrs, t.TempDir(), 4))
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	em, err := runtime.NewEmitter(t.Context(), rt, events)
	if err != nil {
		t.Fatal(err)
	}
	l := newEmitLog()
	const n = 3000
	for i := range n / 2 {
		l.emit(em, "k", i)
	}
	proxy.Cut()
	for i := n / 2; i < n; i++ {
		l.emit(em, "k", i)
	}
	// The outage's length is the scenario, not a wait for something.
	time.Sleep(2 * time.Second)
	proxy.Restore()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := em.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	l.await(t, n)
	if len(l.failed) > 0 {
		t.Fatalf("%d records failed in an outage shorter than the delivery timeout", len(l.failed))
	}
	if got := keyValues(t, addrs, "k", 4); !slices.Equal(got, seq(0, n)) {
		t.Fatalf("the log holds %d records of the key, not the %d emitted in order", len(got), n)
	}
}

// Past the delivery timeout, records fail; every record emitted to the
// partition after a failure fails too, until Resume. So the log holds a
// prefix of what was emitted for the key, the records reported failed
// are exactly the ones it lacks, and re-emitting them after Resume keeps
// the key's order.
func TestEmitterFailsEveryLaterRecordOfAPartitionUntilResume(t *testing.T) {
	proxy, addrs := startCuttableLog(t)
	_, topo := countTopology(t, processor.Stop(), nil)
	opts := options(t, addrs, t.TempDir(), 4)
	opts.DeliveryTimeout = time.Second
	rt, err := runtime.New(t.Context(), topo, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	em, err := runtime.NewEmitter(t.Context(), rt, events)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	l := newEmitLog()

	// The key's first records, from another instance.
	first, err := runtime.New(t.Context(), topo, options(t, addrs, t.TempDir(), 4))
	if err != nil {
		t.Fatal(err)
	}
	emitKVs(t, first, events, kvRange("k", 0, 100)...)
	first.Close()
	for i := range 100 {
		l.ok[i] = true
	}
	// Cut before this producer's first record, so that none of its
	// records is on the wire when the log goes: they can only wait, and
	// fail at their deadline.
	proxy.Cut()
	for i := 100; i < 300; i++ {
		l.emit(em, "k", i)
	}
	l.await(t, 200)
	proxy.Restore()
	// The log is back, but the partition stays failed.
	for i := 300; i < 400; i++ {
		l.emit(em, "k", i)
	}
	l.await(t, 300)
	err = em.Flush(ctx)
	if err == nil {
		t.Fatal("flush reported no failure")
	}
	t.Logf("flush: %v", err)
	var unsent int
	for i := 300; i < 400; i++ {
		if errors.Is(l.failed[i], runtime.ErrPartitionFailed) {
			unsent++
		}
	}
	if unsent != 100 {
		t.Fatalf("%d of the 100 records emitted after the failure failed as ErrPartitionFailed", unsent)
	}
	got := keyValues(t, addrs, "k", 4)
	checkPrefix(t, got, l, 400)

	// Resumed, the failed records are re-emitted in order, then new ones.
	if err := em.Resume("k"); err != nil {
		t.Fatal(err)
	}
	resent := newEmitLog()
	for i := len(got); i < 500; i++ {
		resent.emit(em, "k", i)
	}
	if err := em.Flush(ctx); err != nil {
		t.Fatalf("flush after resume: %v", err)
	}
	if got := keyValues(t, addrs, "k", 4); !slices.Equal(got, seq(0, 500)) {
		t.Fatalf("after resume the log holds %v of the key, want 0 to 499 in order", got)
	}
}

// checkPrefix checks that the log holds, of the n records emitted, a
// prefix in order, and that the ones reported failed are exactly the
// rest.
func checkPrefix(t *testing.T, got []int, l *emitLog, n int) {
	t.Helper()
	if !slices.Equal(got, seq(0, len(got))) {
		t.Fatalf("the log holds %v of the key: not a prefix of what was emitted", got)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range n {
		inLog := i < len(got)
		if inLog == (l.failed[i] != nil) || inLog != l.ok[i] {
			t.Fatalf("record %d: in the log %v, reported acknowledged %v, failed: %v", i, inLog, l.ok[i], l.failed[i])
		}
	}
	t.Logf("the log holds records 0 to %d of the key; %d failed", len(got)-1, n-len(got))
}
