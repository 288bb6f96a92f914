package e2e

import (
	"path/filepath"
	"testing"
	"time"
)

// TestRestartFromCheckpoints is scenario 4 of issue 5: an instance stopped
// cleanly and restarted restores only the changelog tail after its stores'
// checkpoints, not the whole changelog.
//
// One instance owns all 12 partitions, so which partitions it restores
// does not depend on how a group of several would be assigned. It is
// restarted twice: once with nothing new in the changelog (it must restore
// nothing), and once after another instance, on a state directory of its
// own, processed more input and so wrote a known number of changelog
// records meanwhile (it must restore exactly those). Nothing is killed, so
// every key's count is exact at the end.
func TestRestartFromCheckpoints(t *testing.T) {
	sz := size{records: 100_000, keys: 5_000}
	if testing.Short() {
		sz = size{records: 20_000, keys: 1_000}
	}
	rng := newRand(t)
	_, addr := startBroker(t, t.TempDir(), "127.0.0.1:0")
	c := connect(t, addr)
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")

	a := startCounter(t, "counter-a", addr, dirA)
	c.produce(rng, sz.records, sz.keys)
	c.flush(time.Minute)
	c.awaitCommitted(-1, 2*time.Minute)
	stopInstance(a)
	changelog := c.endOffsets(tableTopic)

	// A clean restart with no new input: the checkpoints cover the whole
	// changelog.
	a = startCounter(t, "counter-a.1", addr, dirA)
	if n := awaitAssigned(a, partitions, 0, time.Minute); n != 0 {
		t.Errorf("counter-a restored %d changelog records after a clean restart with nothing new, want 0 (the changelog holds %d)", n, changelog)
	}
	if st := stopInstance(a); st.restored != 0 || st.processed != 0 {
		t.Errorf("counter-a restored %d and processed %d records in a run with nothing new, want 0 and 0", st.restored, st.processed)
	}

	// Another instance, which has no state yet, restores the whole
	// changelog and processes more input while counter-a is stopped.
	b := startCounter(t, "counter-b", addr, dirB)
	if n := awaitAssigned(b, partitions, 0, time.Minute); n == 0 && changelog > 0 {
		t.Errorf("counter-b, on an empty state directory, restored nothing of a changelog of %d records", changelog)
	}
	c.produce(rng, sz.records/4, sz.keys)
	c.flush(time.Minute)
	c.awaitCommitted(-1, 2*time.Minute)
	stopInstance(b)
	tail := c.endOffsets(tableTopic) - changelog

	a = startCounter(t, "counter-a.2", addr, dirA)
	if n := awaitAssigned(a, partitions, 0, time.Minute); n != tail {
		t.Errorf("counter-a restored %d changelog records after restarting, want %d: the records counter-b wrote after counter-a's checkpoints (the changelog holds %d)", n, tail, changelog+tail)
	}
	stopInstance(a)

	c.checkExact(c.readTable(addr), "no instance was killed")
	t.Logf("changelog: %d records before counter-b, %d written by counter-b and restored by counter-a", changelog, tail)
}
