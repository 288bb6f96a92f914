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
// themselves and finish. No acknowledged input record and no committed
// table row is lost: the input is fully consumed and every key's count is
// at least its true count.
func TestBrokerCrash(t *testing.T) {
	sz := scenarioSize(size{records: 300_000, keys: 10_000, rounds: 10}, size{records: 30_000, keys: 1_000, rounds: 2})
	rng := newRand(t)
	began := time.Now()
	dataDir := t.TempDir()
	srv, addr := startBroker(t, dataDir, "127.0.0.1:0")
	c := connect(t, addr)
	c.watch(srv)

	const instances = 3
	procs := make([]*process, instances)
	for i := range procs {
		procs[i] = c.watch(startCounter(t, fmt.Sprintf("counter-%d", i), addr, filepath.Join(t.TempDir(), fmt.Sprint(i))))
	}

	perRound := sz.records / sz.rounds
	var produced int64
	for round := range sz.rounds {
		n := perRound
		if round == sz.rounds-1 {
			n = sz.records - round*perRound
		}
		// The chunk is not flushed before the kill: produces are in flight
		// when the broker dies, and the producer retries them against the
		// restarted broker.
		c.produce(rng, n, sz.keys)
		target := produced + rng.Int64N(int64(n))
		produced += int64(n)
		c.awaitCommitted(target, 2*time.Minute)
		srv.kill()
		t.Logf("round %d: killed runnel serve with SIGKILL at %d committed records (%v)", round, target, time.Since(began).Round(time.Millisecond))
		// The same address: the counters and the producer know no other.
		srv, _ = startBroker(t, dataDir, addr)
		c.watch(srv)
	}

	c.flush(2 * time.Minute)
	c.awaitCommitted(-1, 3*time.Minute)
	consumed := time.Since(began)
	for _, p := range procs {
		stopInstance(p)
	}
	dups := c.checkAtLeast(c.readTable(addr))
	t.Logf("%d records over %d keys, %d broker kills: input consumed after %v; %d records counted twice (%.3f%%)",
		sz.records, sz.keys, sz.rounds, consumed.Round(time.Millisecond), dups, 100*float64(dups)/float64(sz.records))
}
