package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestProcessorCrash is scenario 1 of issue 5: three counter instances
// count the input by key over 12 partitions while, round after round, one
// of them is killed with SIGKILL at a random moment of the processing and
// restarted on its state directory. Afterwards the input is fully consumed
// and every key's count is at least its true count (at-least-once); the
// records counted twice are reported.
func TestProcessorCrash(t *testing.T) {
	sz := scenarioSize(size{records: 500_000, keys: 10_000, rounds: 10}, size{records: 50_000, keys: 1_000, rounds: 3})
	rng := newRand(t)
	began := time.Now()
	_, addr := startBroker(t, t.TempDir(), "127.0.0.1:0")
	c := connect(t, addr)

	const instances = 3
	dirs := make([]string, instances)
	procs := make([]*process, instances)
	for i := range procs {
		dirs[i] = filepath.Join(t.TempDir(), fmt.Sprint(i))
		procs[i] = c.watch(startCounter(t, fmt.Sprintf("counter-%d", i), addr, dirs[i]))
	}

	// The input arrives in one chunk per round; each round kills an
	// instance once the group has committed a random share of its chunk,
	// so that the kill lands while records are being produced, processed
	// and committed (and, from the second round on, often while the group is
	// still rebalancing after the previous kill).
	perRound := sz.records / sz.rounds
	var produced int64
	for round := range sz.rounds {
		n := perRound
		if round == sz.rounds-1 {
			n = sz.records - round*perRound
		}
		// Not flushed before the wait: processing keeps pace with the
		// producer, so the kill finds the victim with records in flight
		// rather than idle after the chunk.
		c.produce(rng, n, sz.keys)
		target := produced + rng.Int64N(int64(n))
		produced += int64(n)
		c.awaitCommitted(target, 2*time.Minute)
		victim := rng.IntN(instances)
		procs[victim].kill()
		t.Logf("round %d: killed counter-%d with SIGKILL at %d committed records (%v)", round, victim, target, time.Since(began).Round(time.Millisecond))
		procs[victim] = c.watch(startCounter(t, fmt.Sprintf("counter-%d.%d", victim, round+1), addr, dirs[victim]))
	}

	c.flush(time.Minute)
	c.awaitCommitted(-1, 3*time.Minute)
	consumed := time.Since(began)
	var processed int64
	for _, p := range procs {
		processed += stopInstance(p).processed
	}
	dups := c.checkAtLeast(c.readTable(addr))
	t.Logf("%d records over %d keys, %d kills: input consumed after %v; %d records counted twice (%.3f%%)",
		sz.records, sz.keys, sz.rounds, consumed.Round(time.Millisecond), dups, 100*float64(dups)/float64(sz.records))
}
