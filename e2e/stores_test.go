package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/state"
)

// outputTopic is where the counters of TestBrokerCrashStores emit each
// key's new count.
const outputTopic = "e2e-counts"

// TestBrokerCrashStores is the end-to-end test of issue 11, item 1: a local
// store must never get ahead of its changelog. Round after round, while
// three counter instances count a steady input and write their table's
// changelog, `runnel serve` is killed with SIGKILL once an instance has work
// in flight, kept down for a while and restarted on its data directory and
// address. In the first round and every other one after it, the broker
// stays down for 4 s, as long as an outage that made processors give up
// (issue 11, item 2), and the counters are stopped with SIGTERM once it is
// back (or found exited, if they gave up on it); in the others they are
// killed with SIGKILL while it is down, their changelog writes waiting for
// it. Then every table store
// they left on disk is opened and compared with the changelog
// (checkStores): a store holds exactly the changelog up to its checkpoint,
// no row the changelog lacks, and no other value of a row. The counters
// are restarted on the same state directories for the next round.
//
// At the end, with the input consumed and the counters stopped cleanly,
// the stores of the partitions' last owners reach the changelog's end and
// so hold its latest value of every key; the group's output (each key's
// count as emitted, the last one winning) agrees with the table; and
// checkChangelog accounts for every changelog record. A counter killed or
// exited non-zero may leave records in flight, counted again after its
// restart: those are allowed, within the input not committed before the
// broker's kill.
func TestBrokerCrashStores(t *testing.T) {
	// Two rounds, one of each kind, by default; -e2e.long doubles them.
	full := size{keys: 2_000, rounds: 2}
	if long() {
		full.rounds = 4
	}
	sz := scenarioSize(full, size{keys: 1_000, rounds: 2})
	const (
		instances = 3
		perSecond = brokerKillLoad
		// stoppedDown is how long the broker stays dead in a round whose
		// counters are stopped once it is back: they should ride it out.
		stoppedDown = 4 * time.Second
		// killedDown is how long it stays dead in the other rounds, whose
		// counters are killed meanwhile: longer than the runtime's
		// checkpoint interval (a second), so that their stores may be
		// checkpointed while changelog writes wait for the broker.
		killedDown = 2 * time.Second
	)
	rng := newRand(t)
	began := time.Now()
	dataDir := t.TempDir()
	srv, addr := startBroker(t, dataDir, "127.0.0.1:0")
	c := connect(t, addr)
	c.watch(srv)

	flags := append([]string{"-output", outputTopic}, brokerKillFlags...)
	base := t.TempDir()
	dirs := map[string]string{} // by instance, kept across restarts
	procs := make([]*process, instances)
	start := func(round int) {
		for i := range procs {
			name := fmt.Sprintf("counter-%d", i)
			dirs[name] = filepath.Join(base, name)
			procs[i] = c.watch(startCounter(t, fmt.Sprintf("%s.%d", name, round), addr, dirs[name], flags...))
		}
	}
	start(0)
	stopLoad := c.startLoad(rng.Uint64(), sz.keys, perSecond)
	defer stopLoad()

	var deaths []death
	for round := range sz.rounds {
		c.awaitRunning(procs, 2*time.Minute)
		// A random moment: up to a second of input more is committed.
		c.awaitCommitted(c.committed()+rng.Int64N(perSecond), 2*time.Minute)
		c.produce(rng, burst, sz.keys)
		s := c.awaitInFlight(procs, burst/4, 2*time.Minute)
		committed := c.commits()
		srv.kill()
		t.Logf("round %d: killed runnel serve with SIGKILL; just before, %s (%v)", round, s, time.Since(began).Round(time.Millisecond))
		// Not synchronisation: the outage is the scenario.
		var exits map[*process]error
		if round%2 == 1 {
			time.Sleep(killedDown)
			exits = map[*process]error{}
			for _, p := range procs {
				if gone, err := p.exitedByItself(); gone {
					p.ending.Store(true)
					exits[p] = fmt.Errorf("exited by itself (%v) while the broker was down", err)
					continue
				}
				p.kill()
				exits[p] = errors.New("killed with SIGKILL while the broker was down")
			}
			srv, _ = startBroker(t, dataDir, addr)
		} else {
			time.Sleep(stoppedDown)
			srv, _ = startBroker(t, dataDir, addr)
			exits = stopAll(procs)
		}
		c.watch(srv)

		// A counter killed, or exited non-zero, may have left records
		// processed and not committed, in any partition: those since the
		// commits read before the broker's kill.
		ends := c.partitionEnds(inputTopic)
		for p, err := range exits {
			d := death{what: fmt.Sprintf("round %d: %s: %v", round, p.name, err)}
			for part := range int32(partitions) {
				d.spans = append(d.spans, span{partition: part, from: committed[part], to: ends[part]})
			}
			deaths = append(deaths, d)
			t.Logf("%s", d.what)
		}
		logStores(t, round, checkStores(t, dirs, c.readAll(addr, tableTopic), false))
		start(round + 1)
	}

	stopLoad()
	c.flush(time.Minute)
	c.awaitCommitted(-1, 3*time.Minute)
	for _, p := range procs {
		stopInstance(p)
	}
	logStores(t, sz.rounds, checkStores(t, dirs, c.readAll(addr, tableTopic), true))
	l := c.checkChangelog(addr, deaths)
	checkOutput(t, c.readAll(addr, outputTopic), l.table)
	t.Logf("%d records over %d keys, %d broker kills, %d counter exits: %d records counted twice, of at most %d in flight at those exits",
		c.ackedRecords(), sz.keys, sz.rounds, len(deaths), l.duplicates, bound(deaths))
}

// logStores logs what checkStores found after a round.
func logStores(t *testing.T, round int, reps map[string]storeReport) {
	t.Helper()
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(reps)) {
		r := reps[name]
		fmt.Fprintf(&b, "; %s: %d stores, %d rows", name, r.stores, r.rows)
		if len(r.behind) > 0 {
			fmt.Fprintf(&b, ", behind the changelog (partition:records) %s", strings.Join(r.behind, " "))
		}
	}
	t.Logf("after round %d, the stores compared with the changelog%s", round, b.String())
}

// stopAll sends SIGTERM to every process of procs at once, so that they
// stop together rather than rebalance onto each other, and waits for their
// exits. It returns the exit error of each that exited non-zero, by itself
// before or after the signal.
func stopAll(procs []*process) map[*process]error {
	for _, p := range procs {
		p.terminate()
	}
	out := map[*process]error{}
	for _, p := range procs {
		if err := p.awaitEnd(time.Minute); err != nil {
			out[p] = fmt.Errorf("exited with %w", err)
		}
	}
	return out
}

// storeReport is what checkStores found of one instance's stores.
type storeReport struct {
	stores, rows int
	// behind lists the stores whose checkpoint is short of the changelog's
	// end, as "partition:records behind".
	behind []string
}

// checkStores opens every table store the counting group left under each
// instance's state directory in dirs (by instance name), once the
// instances have exited, and compares it with records, the changelog read
// to its end: a store must hold exactly what a restore of the changelog up
// to the store's checkpoint would, every row with the changelog's value of
// its key at that point and no key the changelog lacks there. A store at
// the changelog's end so holds its latest value of every key. With
// complete, every partition of the changelog must have a store at its end:
// that of the instance that owned it last, stopped cleanly.
func checkStores(t *testing.T, dirs map[string]string, records []*kgo.Record, complete bool) map[string]storeReport {
	t.Helper()
	byPartition := map[int32][]*kgo.Record{}
	for _, r := range records {
		byPartition[r.Partition] = append(byPartition[r.Partition], r)
	}
	end := func(p int32) int64 {
		rs := byPartition[p]
		if len(rs) == 0 {
			return 0
		}
		return rs[len(rs)-1].Offset + 1
	}
	out := map[string]storeReport{}
	atEnd := map[int32]bool{}
	bad := 0
	report := func(format string, args ...any) {
		bad++
		if bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	names := slices.Sorted(maps.Keys(dirs))
	for _, name := range names {
		var rep storeReport
		root := filepath.Join(dirs[name], "state", group, "table")
		entries, err := os.ReadDir(root)
		if errors.Is(err, fs.ErrNotExist) {
			out[name] = rep
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, e := range entries {
			n, err := strconv.ParseInt(e.Name(), 10, 32)
			if err != nil || !e.IsDir() {
				t.Fatalf("%s: unexpected %s in %s", name, e.Name(), root)
			}
			p := int32(n)
			where := fmt.Sprintf("%s's store of %s-%d", name, tableTopic, p)
			checkpoint, rows := readStore(t, filepath.Join(root, e.Name()), where)
			rep.stores++
			rep.rows += len(rows)
			switch e := end(p); {
			case checkpoint > e:
				report("%s: checkpoint %d, past the changelog's end %d", where, checkpoint, e)
			case checkpoint == e:
				atEnd[p] = true
			default:
				rep.behind = append(rep.behind, fmt.Sprintf("%d:%d", p, e-checkpoint))
			}
			// What a restore up to the checkpoint holds, and the latest
			// value, to tell a store ahead from one behind.
			want, latest := map[string][]byte{}, map[string][]byte{}
			for _, r := range byPartition[p] {
				if r.Offset < checkpoint {
					want[string(r.Key)] = r.Value
				}
				latest[string(r.Key)] = r.Value
			}
			for k, v := range rows {
				w, ok := want[k]
				switch {
				case !ok && latest[k] == nil:
					report("%s: key %q = %s, which the changelog has never held", where, k, count(v))
				case !ok:
					report("%s: key %q = %s, which the changelog holds only past the store's checkpoint %d (latest %s)", where, k, count(v), checkpoint, count(latest[k]))
				case !bytes.Equal(v, w):
					report("%s: key %q = %s, the changelog's value up to the checkpoint %d is %s (latest %s)", where, k, count(v), checkpoint, count(w), count(latest[k]))
				}
			}
			for k, w := range want {
				if _, ok := rows[k]; !ok {
					report("%s: key %q missing; the changelog up to the checkpoint %d holds %s", where, k, checkpoint, count(w))
				}
			}
		}
		out[name] = rep
	}
	if complete {
		for p, rs := range byPartition {
			if len(rs) > 0 && !atEnd[p] {
				report("no instance's store of %s-%d reaches the changelog's end %d", tableTopic, p, end(p))
			}
		}
	}
	if bad > 20 {
		t.Errorf("... and %d more store rows are wrong", bad-20)
	}
	return out
}

// readStore opens a table store and returns its checkpoint (0 if it has
// none) and rows.
func readStore(t *testing.T, dir, where string) (int64, map[string][]byte) {
	t.Helper()
	st, err := state.OpenLevelDB(dir, state.LevelDBOptions{})
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	defer st.Close()
	checkpoint, _, err := st.Checkpoint()
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	rows := map[string][]byte{}
	it := st.Iterate(nil, nil)
	defer it.Close()
	for it.Next() {
		rows[string(it.Key())] = bytes.Clone(it.Value())
	}
	if err := it.Err(); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return checkpoint, rows
}

// count renders a count as the table holds it.
func count(v []byte) string {
	if len(v) != 8 {
		return fmt.Sprintf("%x (not an int64)", v)
	}
	return strconv.FormatInt(int64(binary.BigEndian.Uint64(v)), 10)
}

// checkOutput fails the test unless the last count the group emitted for
// each key (records of topic, in offset order) is the table's, and the two
// hold the same keys.
func checkOutput(t *testing.T, records []*kgo.Record, table map[string]int64) {
	t.Helper()
	emitted := map[string][]byte{}
	for _, r := range records {
		emitted[string(r.Key)] = r.Value
	}
	var bad []string
	for k, v := range emitted {
		if w, ok := table[k]; !ok {
			bad = append(bad, fmt.Sprintf("key %q: last emitted %s, not in the table", k, count(v)))
		} else if count(v) != strconv.FormatInt(w, 10) {
			bad = append(bad, fmt.Sprintf("key %q: last emitted %s, the table holds %d", k, count(v), w))
		}
	}
	for k, w := range table {
		if _, ok := emitted[k]; !ok {
			bad = append(bad, fmt.Sprintf("key %q: the table holds %d, never emitted", k, w))
		}
	}
	slices.Sort(bad)
	for i, b := range bad {
		if i == 20 {
			t.Errorf("... and %d more keys disagree", len(bad)-20)
			break
		}
		t.Errorf("%s output against %s: %s", outputTopic, tableTopic, b)
	}
}
