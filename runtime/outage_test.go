package runtime_test

import (
	"testing"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime/internal/outage"
)

// startCuttableLog starts the bundled log behind a proxy the test can cut
// (outage.Broker), closed when the test ends, and returns it and the
// address clients use.
func startCuttableLog(t *testing.T) (*outage.Broker, []string) {
	t.Helper()
	o := outage.Start(t, testLogger(t))
	return o, []string{o.Addr()}
}

// An instance rides out an outage of the log shorter than the delivery
// timeout: it does not stop, and once the log is back its counts are
// exact, with every record counted once.
func TestInstanceRidesOutAnOutage(t *testing.T) {
	proxy, addrs := startCuttableLog(t)
	g, topo := countTopology(t, processor.Stop(), nil)
	in := startInstance(t, topo, options(t, addrs, t.TempDir(), 4))
	want := emit(t, in.rt, 20000, 200, func(int) string { return "x" })
	awaitCondition(t, "the instance is processing", func() bool { return in.rt.Stats("counter").Processed.Load() > 2000 })
	proxy.Cut()
	// The outage's length is the scenario, not a wait for something.
	select {
	case err := <-in.done:
		t.Fatalf("the instance stopped during the outage: %v", err)
	case <-time.After(3 * time.Second):
	}
	proxy.Restore()
	awaitCounts(t, in.rt, g, want)
	if n := in.rt.Stats("counter").Processed.Load(); n != 20000 {
		t.Fatalf("processed %d records, want each of the 20000 once", n)
	}
	select {
	case err := <-in.done:
		t.Fatalf("the instance stopped: %v", err)
	default:
	}
}
