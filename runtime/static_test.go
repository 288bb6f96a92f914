package runtime_test

import (
	"testing"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
)

// A static member (Options.InstanceID) that restarts within the session
// timeout gets its own partitions back, without a rebalance, so its local
// stores are still the right ones: it restores nothing.
func TestStaticMemberGetsItsPartitionsBack(t *testing.T) {
	addr := startLog(t)
	addrs := []string{addr}
	g, topo := countTopology(t, processor.Stop(), nil)
	dirA, dirB := t.TempDir(), t.TempDir()
	static := func(dir, id string) (o runtime.Options) {
		o = options(t, addrs, dir, 6)
		o.InstanceID, o.SessionTimeout = id, 30*time.Second
		return o
	}
	a := startInstance(t, topo, static(dirA, "a"))
	b := startInstance(t, topo, static(dirB, "b"))
	awaitPartitions(t, a, "counter", 3)
	awaitPartitions(t, b, "counter", 3)
	want := emit(t, a.rt, 3000, 60, func(int) string { return "x" })
	awaitCounts(t, a.rt, g, want)

	a.stop(t)
	a2 := startInstance(t, topo, static(dirA, "a"))
	awaitPartitions(t, a2, "counter", 3)
	more := emit(t, b.rt, 600, 60, func(int) string { return "x" })
	for k, n := range more {
		want[k] += n
	}
	awaitCounts(t, b.rt, g, want)
	if n := a2.rt.Stats("counter").Restored.Load(); n != 0 {
		t.Fatalf("the static member restored %d changelog records after its restart; its own stores were current, want 0", n)
	}
	if n := b.rt.Stats("counter").Restored.Load(); n != 0 {
		t.Fatalf("the other member restored %d records: the restart rebalanced the group", n)
	}
}
