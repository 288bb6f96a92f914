package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// roundTime is about how long a kill round of TestProcessorCrash takes,
// mostly the wait for a killed instance's session to time out; the load is
// paced so that the rounds see about the scenario's records.
const roundTime = 7 * time.Second

// TestProcessorCrash is scenario 1 of issue 5: three counter instances
// count the input by key over 12 partitions while, round after round, one
// of them is killed with SIGKILL and restarted on its state directory. The
// input keeps arriving at a steady pace throughout.
//
// Each kill lands at a random moment, but only once the victim has
// processed records it has not committed (its monitor's offsets against
// the group's commits, read just before the kill; issue 11): a kill of an
// idle instance tests nothing.
//
// Afterwards the input is fully consumed, and checkChangelog accounts for
// every changelog record: each input record is counted at least once, more
// often only if it was in flight (past the committed offset, before the
// end offset) in a partition of a killed instance, and the table's counts
// are exactly the true counts plus those records counted again. The
// duplicates are logged, with their bound, the records in flight at the
// kills.
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
		procs[i] = c.watch(startCounter(t, fmt.Sprintf("counter-%d", i), addr, dirs[i], monitorFlags...))
	}
	perSecond := max(100, sz.records/sz.rounds/int(roundTime/time.Second))
	stopLoad := c.startLoad(rng.Uint64(), sz.keys, perSecond)
	defer stopLoad()

	var deaths []death
	var processedInFlight int64
	for round := range sz.rounds {
		// A random moment: up to a second of input more is committed.
		c.awaitCommitted(c.committed()+rng.Int64N(int64(perSecond)), 2*time.Minute)
		victim := rng.IntN(instances)
		s := c.awaitInFlight([]*process{procs[victim]}, 0, 2*time.Minute)
		procs[victim].kill()
		// What the victim may have processed: its partitions' records from
		// the commits read before the kill to the ends after it.
		ends := c.partitionEnds(inputTopic)
		d := death{what: fmt.Sprintf("round %d: counter-%d killed", round, victim)}
		var uncommitted int64
		for _, p := range s.parts() {
			d.spans = append(d.spans, span{partition: p, from: s.committed[p], to: ends[p]})
			uncommitted += ends[p] - s.committed[p]
		}
		deaths = append(deaths, d)
		processedInFlight += s.inFlight()
		t.Logf("round %d: killed counter-%d with SIGKILL: just before, %s; %d records of its partitions uncommitted after the kill (%v)",
			round, victim, s, uncommitted, time.Since(began).Round(time.Millisecond))
		procs[victim] = c.watch(startCounter(t, fmt.Sprintf("counter-%d.%d", victim, round+1), addr, dirs[victim], monitorFlags...))
	}

	stopLoad()
	c.flush(time.Minute)
	c.awaitCommitted(-1, 3*time.Minute)
	consumed := time.Since(began)
	for _, p := range procs {
		stopInstance(p)
	}
	l := c.checkChangelog(addr, deaths)
	acked := c.ackedRecords()
	t.Logf("%d records over %d keys, %d kills: input consumed after %v; %d records counted twice (%.3f%%), of at most %d in flight at the kills (%d of them seen processed and not committed)",
		acked, sz.keys, sz.rounds, consumed.Round(time.Millisecond), l.duplicates, 100*float64(l.duplicates)/float64(acked), bound(deaths), processedInFlight)
}
