package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/broker"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
	"github.com/runnel-io/runnel/topology"
)

const testTimeout = 60 * time.Second

func startLog(t *testing.T) string {
	t.Helper()
	b, err := broker.Start(t.Context(), broker.Config{Addr: "127.0.0.1:0", Dir: t.TempDir(), GroupInitialRebalanceDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.Addr()
}

var events = topology.NewTopic("events", processor.String, processor.String)

// countTopology counts records per key.
func countTopology(t *testing.T, policy processor.Policy, fail func(string) bool) (*topology.Group[string, int64], *topology.Topology) {
	t.Helper()
	g := topology.NewGroup("counter", processor.String, processor.Int64)
	topology.Input(g, events, func(ctx processor.Context[string, int64], key, v string) error {
		if fail != nil && fail(v) {
			return fmt.Errorf("cannot count %q", v)
		}
		n, _ := ctx.Value()
		return ctx.SetValue(n + 1)
	})
	g.OnError(policy)
	topo, err := topology.New(g)
	if err != nil {
		t.Fatal(err)
	}
	return g, topo
}

type instance struct {
	rt     *runtime.Runtime
	cancel context.CancelFunc
	done   chan error
}

func startInstance(t *testing.T, topo *topology.Topology, addr, dir string, partitions int32) *instance {
	t.Helper()
	rt, err := runtime.New(t.Context(), topo, runtime.Options{Brokers: []string{addr}, Dir: dir, Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	in := &instance{rt: rt, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- rt.Run(ctx) }()
	t.Cleanup(func() { in.stop(t); rt.Close() })
	return in
}

// stop cancels the instance and waits for Run to return; a second call
// is harmless.
func (in *instance) stop(t *testing.T) {
	t.Helper()
	in.cancel()
	if err, ok := <-in.done; ok {
		close(in.done)
		if err != nil {
			t.Errorf("run: %v", err)
		}
	}
}

func emit(t *testing.T, rt *runtime.Runtime, n, keys int, value func(i int) string) map[string]int64 {
	t.Helper()
	em, err := runtime.NewEmitter(t.Context(), rt, events)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	var mu sync.Mutex
	var failed error
	for i := range n {
		k := fmt.Sprintf("key-%d", i%keys)
		em.EmitAsync(k, value(i), func(err error) {
			if err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
			}
		})
		want[k]++
	}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := em.Flush(ctx); err != nil || failed != nil {
		t.Fatalf("emit: %v %v", err, failed)
	}
	return want
}

// awaitCounts waits until a view of the counter's table equals want.
func awaitCounts(t *testing.T, rt *runtime.Runtime, g *topology.Group[string, int64], want map[string]int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	v, err := runtime.NewView(ctx, rt, g)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]int64
	for {
		changed := v.Changed()
		got = map[string]int64{}
		if err := v.Iterate(func(k string, n int64) bool { got[k] = n; return true }); err != nil {
			t.Fatal(err)
		}
		if maps.Equal(got, want) {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			for k, w := range want {
				if got[k] != w {
					t.Fatalf("key %s: count %d, want %d (%d keys counted of %d)", k, got[k], w, len(got), len(want))
				}
			}
			t.Fatalf("counts differ: %d keys, want %d", len(got), len(want))
		}
	}
}

func TestOneInstanceCountsExactly(t *testing.T) {
	addr := startLog(t)
	g, topo := countTopology(t, processor.Stop(), nil)
	in := startInstance(t, topo, addr, t.TempDir(), 8)
	want := emit(t, in.rt, 20000, 500, func(i int) string { return "x" })
	awaitCounts(t, in.rt, g, want)
	if n := in.rt.Stats("counter").Processed.Load(); n != 20000 {
		t.Fatalf("processed %d records, want 20000", n)
	}
}

// Three instances split 12 partitions; one stops cleanly mid-stream, its
// partitions move to the others (restored from the changelog), and the
// final counts are exact.
func TestThreeInstancesShareAndHandOver(t *testing.T) {
	addr := startLog(t)
	g, topo := countTopology(t, processor.Stop(), nil)
	a := startInstance(t, topo, addr, t.TempDir(), 12)
	b := startInstance(t, topo, addr, t.TempDir(), 12)
	c := startInstance(t, topo, addr, t.TempDir(), 12)
	// Wait until the 12 partitions are split between the three.
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond) // ownership is a counter; nothing to wait on
	defer tick.Stop()
	for {
		na, nb, nc := a.rt.Stats("counter").Partitions.Load(), b.rt.Stats("counter").Partitions.Load(), c.rt.Stats("counter").Partitions.Load()
		if na > 0 && nb > 0 && nc > 0 && na+nb+nc == 12 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("partitions never split: %d, %d, %d", na, nb, nc)
		case <-tick.C:
		}
	}
	want := emit(t, a.rt, 15000, 1000, func(i int) string { return "x" })
	for _, in := range []*instance{a, b, c} {
		for in.rt.Stats("counter").Processed.Load() == 0 {
			select {
			case <-ctx.Done():
				t.Fatal("an instance that owns partitions processed nothing")
			case <-tick.C:
			}
		}
	}
	c.stop(t)
	more := emit(t, a.rt, 15000, 1000, func(i int) string { return "x" })
	for k, n := range more {
		want[k] += n
	}
	awaitCounts(t, a.rt, g, want)
	restored := a.rt.Stats("counter").Restored.Load() + b.rt.Stats("counter").Restored.Load()
	if restored == 0 {
		t.Fatal("the stopped instance's partitions moved without a restore from the changelog")
	}
}

// A restarted instance restores only the changelog records written while
// it was away.
func TestRestartRestoresOnlyTheTail(t *testing.T) {
	addr := startLog(t)
	g, topo := countTopology(t, processor.Stop(), nil)
	dirA := t.TempDir()
	a := startInstance(t, topo, addr, dirA, 4)
	want := emit(t, a.rt, 2000, 100, func(int) string { return "x" })
	awaitCounts(t, a.rt, g, want)
	a.stop(t)

	b := startInstance(t, topo, addr, t.TempDir(), 4)
	more := emit(t, b.rt, 300, 100, func(int) string { return "x" })
	for k, n := range more {
		want[k] += n
	}
	awaitCounts(t, b.rt, g, want)
	b.stop(t)

	a2 := startInstance(t, topo, addr, dirA, 4)
	awaitCounts(t, a2.rt, g, want)
	awaitPartitions(t, a2, 4)
	if n := a2.rt.Stats("counter").Restored.Load(); n != 300 {
		t.Fatalf("restarted instance restored %d changelog records, want the 300 written while it was away", n)
	}
}

func TestErrorPolicies(t *testing.T) {
	bad := func(v string) bool { return v == "bad" }
	value := func(i int) string {
		if i%10 == 3 {
			return "bad"
		}
		return "ok"
	}
	t.Run("skip", func(t *testing.T) {
		addr := startLog(t)
		g, topo := countTopology(t, processor.Skip(), bad)
		in := startInstance(t, topo, addr, t.TempDir(), 2)
		all := emit(t, in.rt, 100, 5, value)
		want := map[string]int64{}
		for k, n := range all {
			want[k] = n
		}
		want["key-3"] -= 10 // records 3, 13, 23, ... are bad, all of key-3
		awaitCounts(t, in.rt, g, want)
		if n := in.rt.Stats("counter").Skipped.Load(); n != 10 {
			t.Fatalf("skipped %d, want 10", n)
		}
	})
	t.Run("dead letter", func(t *testing.T) {
		addr := startLog(t)
		_, topo := countTopology(t, processor.DeadLetter("counter-dlq"), bad)
		in := startInstance(t, topo, addr, t.TempDir(), 2)
		emit(t, in.rt, 100, 5, value)
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("counter-dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
		defer cancel()
		var got []*kgo.Record
		for len(got) < 10 {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("dead-letter topic has %d records, want 10", len(got))
			}
			got = append(got, fs.Records()...)
		}
		for _, r := range got {
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			if string(r.Key) != "key-3" || string(r.Value) != "bad" || h["runnel.topic"] != "events" ||
				h["runnel.group"] != "counter" || h["runnel.offset"] == "" || h["runnel.partition"] == "" ||
				!strings.Contains(h["runnel.error"], `cannot count "bad"`) {
				t.Fatalf("dead letter %s=%s with headers %v", r.Key, r.Value, h)
			}
		}
	})
	t.Run("stop", func(t *testing.T) {
		addr := startLog(t)
		_, topo := countTopology(t, processor.Stop(), bad)
		rt, err := runtime.New(t.Context(), topo, runtime.Options{Brokers: []string{addr}, Dir: t.TempDir(), Partitions: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer rt.Close()
		emit(t, rt, 10, 5, value)
		ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
		defer cancel()
		err = rt.Run(ctx)
		var re *processor.RecordError
		if !errors.As(err, &re) || re.Topic != "events" || re.Partition != 0 || re.Offset != 3 {
			t.Fatalf("run stopped with %v, want the record error of events partition 0 offset 3", err)
		}
		// Nothing past the failed record is committed: offset 3 is where a
		// restart begins.
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		offs, err := kadm.NewClient(cl).FetchOffsets(ctx, "counter")
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := offs.Lookup("events", 0); ok && o.At > 3 {
			t.Fatalf("committed offset %d past the failed record at 3", o.At)
		}
	})
}

// awaitPartitions waits until the instance owns n partitions (its
// restores are done by then: they happen before a partition is owned).
func awaitPartitions(t *testing.T, in *instance, n int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond) // ownership is a counter; nothing to wait on
	defer tick.Stop()
	for in.rt.Stats("counter").Partitions.Load() != n {
		select {
		case <-ctx.Done():
			t.Fatalf("instance owns %d partitions, want %d", in.rt.Stats("counter").Partitions.Load(), n)
		case <-tick.C:
		}
	}
}
