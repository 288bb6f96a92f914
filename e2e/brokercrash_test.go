package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestBrokerCrash is scenario 2 of issue 5: `runnel serve` is killed with
// SIGKILL while three counter instances process and the producer is
// sending, round after round, and restarted on the same data directory and
// the same address. The counters are not restarted: they reconnect by
// themselves and finish.
//
// Each kill lands once an instance has processed records it has not
// committed, so that the broker dies with the counters' changelog writes
// and commits in flight. Nothing is lost and, as no processor dies and
// every producer is idempotent, nothing is counted twice: checkChangelog
// accounts for each changelog record with no duplicate allowed, and every
// key's count is exact.
func TestBrokerCrash(t *testing.T) {
	sz := scenarioSize(size{keys: 10_000, rounds: 10}, size{keys: 1_000, rounds: 2})
	rng := newRand(t)
	began := time.Now()
	dataDir := t.TempDir()
	srv, addr := startBroker(t, dataDir, "127.0.0.1:0")
	c := connect(t, addr)
	c.watch(srv)

	const instances = 3
	procs := make([]*process, instances)
	for i := range procs {
		procs[i] = c.watch(startCounter(t, fmt.Sprintf("counter-%d", i), addr, filepath.Join(t.TempDir(), fmt.Sprint(i)), brokerKillFlags...))
	}
	const perSecond = brokerKillLoad
	stopLoad := c.startLoad(rng.Uint64(), sz.keys, perSecond)
	defer stopLoad()

	for round := range sz.rounds {
		// A random moment: up to a second of input more is committed.
		c.awaitCommitted(c.committed()+rng.Int64N(perSecond), 2*time.Minute)
		c.produce(rng, burst, sz.keys)
		s := c.awaitInFlight(procs, burst/4, 2*time.Minute)
		srv.kill()
		t.Logf("round %d: killed runnel serve with SIGKILL; just before, %s (%v)", round, s, time.Since(began).Round(time.Millisecond))
		// The same address: the counters and the producer know no other.
		srv, _ = startBroker(t, dataDir, addr)
		c.watch(srv)
	}

	stopLoad()
	c.flush(2 * time.Minute)
	c.awaitCommitted(-1, 3*time.Minute)
	consumed := time.Since(began)
	for _, p := range procs {
		stopInstance(p)
	}
	l := c.checkChangelog(addr, nil)
	t.Logf("%d records over %d keys, %d broker kills: input consumed after %v; changelog of %d records, none counted twice",
		c.ackedRecords(), sz.keys, sz.rounds, consumed.Round(time.Millisecond), l.records)
}
