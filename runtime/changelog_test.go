package runtime_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime/internal/kafka"
	"github.com/runnel-io/runnel/state"
	"github.com/runnel-io/runnel/topology"
)

// A callback that writes and then fails, under a policy that goes on,
// leaves no trace: the next record of its key reads the row as it was,
// and the changelog agrees with the table.
func TestFailedHandlerWritesAreDropped(t *testing.T) {
	for name, policy := range map[string]processor.Policy{"skip": processor.Skip(), "dead-letter": processor.DeadLetter("dead")} {
		t.Run(name, func(t *testing.T) {
			addrs := []string{startLog(t)}
			g := topology.NewGroup("counter", processor.String, processor.Int64)
			topology.Input(g, events, func(ctx processor.Context[string, int64], key, v string) error {
				n, _ := ctx.Value()
				if err := ctx.SetValue(n + 1); err != nil {
					return err
				}
				if v == "bad" {
					return errors.New("counted, then failed")
				}
				return nil
			})
			g.OnError(policy)
			dir := t.TempDir()
			in := startInstance(t, newTopology(t, g), options(t, addrs, dir, 2))
			emitKVs(t, in.rt, events, kv{"a", "ok"}, kv{"a", "bad"}, kv{"a", "ok"}, kv{"b", "bad"}, kv{"b", "ok"})
			awaitCounts(t, in.rt, g, map[string]int64{"a": 2, "b": 1})
			in.stop(t)
			in.rt.Close()
			changelog := readChangelog(t, addrs, "counter-table", 2)
			for p, recs := range changelog {
				st := openStore(t, dir, "counter", p)
				checkStoreMatchesChangelog(t, st, recs)
				st.Close()
			}
		})
	}
}

// changeRecord is one record of a changelog partition.
type changeRecord struct {
	offset     int64
	key, value []byte
}

// readChangelog reads every partition of a changelog from its start to its
// high watermark.
func readChangelog(t *testing.T, addrs []string, topic string, partitions int32) map[int32][]changeRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	ends, err := newKadm(t, addrs).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	out := map[int32][]changeRecord{}
	offsets := map[int32]kgo.Offset{}
	left := 0
	for p := range partitions {
		out[p] = nil
		o, _ := ends.Lookup(topic, p)
		if o.Offset > 0 {
			offsets[p] = kgo.NewOffset().At(0)
			left++
		}
	}
	if left == 0 {
		return out
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %v", topic, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, _ := ends.Lookup(topic, r.Partition)
			if r.Offset >= end.Offset {
				return
			}
			out[r.Partition] = append(out[r.Partition], changeRecord{r.Offset, r.Key, r.Value})
			if r.Offset == end.Offset-1 {
				left--
			}
		})
	}
	return out
}

// openStore opens the table store of a group's partition in an instance's
// state directory, the way the runtime does by default.
func openStore(t *testing.T, dir, group string, p int32) *state.LevelDB {
	t.Helper()
	st, err := state.OpenLevelDB(filepath.Join(dir, "state", group, "table", strconv.Itoa(int(p))), state.LevelDBOptions{})
	if err != nil {
		t.Fatalf("open store of %s/%d: %v", group, p, err)
	}
	return st
}

// checkStoreMatchesChangelog checks that a store holds exactly the
// changelog up to its checkpoint: each row the latest value of its key
// there, and no other row.
func checkStoreMatchesChangelog(t *testing.T, st state.Store, recs []changeRecord) {
	t.Helper()
	next, ok, err := st.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		next = 0
	}
	if len(recs) > 0 && next > recs[len(recs)-1].offset+1 {
		t.Fatalf("store checkpoint %d is past the changelog's end %d", next, recs[len(recs)-1].offset+1)
	}
	want := map[string]string{}
	for _, r := range recs {
		if r.offset >= next {
			break
		}
		if r.value == nil {
			delete(want, string(r.key))
		} else {
			want[string(r.key)] = string(r.value)
		}
	}
	got := map[string]string{}
	it := st.Iterate(nil, nil)
	for it.Next() {
		got[string(it.Key())] = string(it.Value())
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	it.Close()
	if maps.Equal(got, want) {
		return
	}
	for k, v := range got {
		if w, ok := want[k]; !ok || w != v {
			t.Errorf("store row %q = %x, changelog up to the checkpoint %d has %x (present: %v)", k, v, next, w, ok)
		}
	}
	for k, w := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("store lacks row %q = %x that the changelog has before the checkpoint %d", k, w, next)
		}
	}
	t.FailNow()
}

// countsOutput is where the counter below emits each new count.
var countsOutput = topology.NewTopic("counts", processor.String, processor.Int64)

// emittingCounter counts records per key in its table and emits every new
// count to countsOutput.
func emittingCounter() *topology.Group[string, int64] {
	g := topology.NewGroup("counter", processor.String, processor.Int64)
	counts := topology.Output(g, countsOutput)
	topology.Input(g, events, func(ctx processor.Context[string, int64], key, _ string) error {
		n, _ := ctx.Value()
		if err := ctx.SetValue(n + 1); err != nil {
			return err
		}
		return counts.Emit(ctx, key, n+1)
	})
	return g
}

// The log goes away while an instance writes its changelog, for longer
// than the delivery timeout: the instance stops, and its store holds
// exactly the changelog up to its checkpoint, however many changes were
// in flight. Restarted on the same directory it finishes the input, and
// then its table, the changelog, a fresh instance's restore and the last
// output of each key all agree.
func TestStoreNeverAheadOfItsChangelog(t *testing.T) {
	proxy, addrs := startCuttableLog(t)
	g := emittingCounter()
	topo := newTopology(t, g)
	dir := t.TempDir()
	const partitions, n, keys = 4, 30000, 300
	opts := options(t, addrs, dir, partitions)
	opts.DeliveryTimeout = time.Second

	in := startInstance(t, topo, opts)
	want := emit(t, in.rt, n, keys, func(int) string { return "x" })
	// Cut while the instance is busy: records processed, more to come.
	awaitCondition(t, "the instance is processing", func() bool {
		p := in.rt.Stats("counter").Processed.Load()
		return p > n/10
	})
	proxy.Cut()
	err := in.wait(t)
	// Whichever gives up first, a write or the group's membership, the
	// error says that the delivery timeout passed.
	if !errors.Is(err, kafka.ErrDeliveryTimeout) {
		t.Fatalf("the instance stopped with %v; want a delivery timeout", err)
	}
	t.Logf("instance stopped, after %d of %d records: %v", in.rt.Stats("counter").Processed.Load(), n, err)
	in.rt.Close()
	proxy.Restore()

	changelog := readChangelog(t, addrs, "counter-table", partitions)
	for p, recs := range changelog {
		st := openStore(t, dir, "counter", p)
		checkStoreMatchesChangelog(t, st, recs)
		st.Close()
	}

	// Restarted on its directory, it finishes the input.
	in = startInstance(t, topo, opts)
	awaitCondition(t, "the input is processed", func() bool { return committedAll(t, addrs, "counter", events.Name(), n) })
	in.stop(t)
	in.rt.Close()
	changelog = readChangelog(t, addrs, "counter-table", partitions)
	table := map[string]int64{}
	for p, recs := range changelog {
		st := openStore(t, dir, "counter", p)
		checkStoreMatchesChangelog(t, st, recs)
		if next, _, _ := st.Checkpoint(); len(recs) > 0 && next != recs[len(recs)-1].offset+1 {
			t.Errorf("partition %d: checkpoint %d after a clean stop, changelog end %d", p, next, recs[len(recs)-1].offset+1)
		}
		st.Close()
		for _, r := range recs {
			v, err := processor.Int64.Decode(r.value)
			if err != nil {
				t.Fatal(err)
			}
			table[string(r.key)] = v
		}
	}
	// At least once: a count may include records processed twice, never
	// fewer than were sent.
	dups := int64(0)
	for k, w := range want {
		if table[k] < w {
			t.Errorf("key %s: count %d, want at least %d", k, table[k], w)
		}
		dups += table[k] - w
	}
	t.Logf("records counted twice after the outage: %d", dups)

	// The last output of each key is its row.
	last := map[string]int64{}
	for _, r := range readAllRecords(t, addrs, countsOutput.Name(), partitions) {
		v, err := processor.Int64.Decode(r.value)
		if err != nil {
			t.Fatal(err)
		}
		last[string(r.key)] = v
	}
	if !maps.Equal(last, table) {
		t.Errorf("last outputs differ from the table: %d keys against %d", len(last), len(table))
	}

	// A fresh instance restores the same table.
	fresh := startInstance(t, topo, options(t, addrs, t.TempDir(), partitions))
	awaitCounts(t, fresh.rt, g, table)
}

// readAllRecords reads every record of a topic up to its high watermark.
func readAllRecords(t *testing.T, addrs []string, topic string, partitions int32) []changeRecord {
	t.Helper()
	var out []changeRecord
	for _, recs := range readChangelog(t, addrs, topic, partitions) {
		out = append(out, recs...)
	}
	return out
}

// committedAll reports whether group has committed the end of every
// partition of topic, n records in all.
func committedAll(t *testing.T, addrs []string, group, topic string, n int64) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	adm := newKadm(t, addrs)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return false
	}
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return false
	}
	var total int64
	done := true
	ends.Each(func(o kadm.ListedOffset) {
		total += o.Offset
		c, ok := offs.Lookup(topic, o.Partition)
		if !ok || c.At < o.Offset {
			done = false
		}
	})
	if total != n {
		t.Fatalf("topic %s holds %d records, want %d", topic, total, n)
	}
	return done
}

// awaitCondition polls cond until it holds, failing the test after
// testTimeout. For conditions that are counters or remote state, with
// nothing to wait on.
func awaitCondition(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wait waits for Run to return by itself and returns its error.
func (in *instance) wait(t *testing.T) error {
	t.Helper()
	select {
	case err, ok := <-in.done:
		if ok {
			close(in.done)
		}
		return err
	case <-time.After(testTimeout):
		t.Fatal("the instance did not stop")
		return nil
	}
}

// A handler that succeeds, followed by a timer callback that fails under
// the stop policy: the handler's change never got its changelog record,
// and it must not reach the store when the instance stops.
func TestChangeOfAStoppedRecordNeverReachesTheStore(t *testing.T) {
	addrs := []string{startLog(t)}
	g := topology.NewGroup("counter", processor.String, processor.Int64)
	broken := topology.Timer(g, "broken", func(processor.Context[string, int64], string, time.Time) error {
		return errors.New("the timer fails")
	})
	topology.Input(g, events, func(ctx processor.Context[string, int64], key, v string) error {
		n, _ := ctx.Value()
		if err := ctx.SetValue(n + 1); err != nil {
			return err
		}
		if v == "arm" {
			return broken.At(ctx, ctx.Timestamp())
		}
		return nil
	})
	g.OnError(processor.Stop())
	dir := t.TempDir()
	in := startInstance(t, newTopology(t, g), options(t, addrs, dir, 1))
	emitKVs(t, in.rt, events, kv{"a", "ok"}, kv{"a", "arm"})
	if err := in.wait(t); err == nil {
		t.Fatal("the instance ran on after the timer failed under the stop policy")
	}
	in.rt.Close()
	st := openStore(t, dir, "counter", 0)
	defer st.Close()
	checkStoreMatchesChangelog(t, st, readChangelog(t, addrs, "counter-table", 1)[0])
}
