package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/broker"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
	"github.com/runnel-io/runnel/state"
	"github.com/runnel-io/runnel/topology"
)

const testTimeout = 60 * time.Second

// forEachLog runs body on each log the runtime must work with: the bundled
// one, and kfake, an in-memory Kafka cluster of three brokers whose
// partitions are led by different brokers and whose group coordinator is
// one of them, so that nothing depends on the bundled log's ways.
func forEachLog(t *testing.T, body func(t *testing.T, addrs []string)) {
	t.Helper()
	t.Run("runnel", func(t *testing.T) { body(t, []string{startLog(t)}) })
	t.Run("kfake", func(t *testing.T) { body(t, startKfake(t)) })
}

// startLog starts the bundled log, closed when the test ends, and returns
// its address.
func startLog(t *testing.T) string {
	t.Helper()
	if os.Getenv("RUNNEL_RUNTIME_LOG") == "kfake" {
		return startKfake(t)[0]
	}
	b, err := broker.Start(t.Context(), broker.Config{Addr: "127.0.0.1:0", Dir: t.TempDir(), GroupInitialRebalanceDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b.Addr()
}

// startKfake starts a kfake cluster of three brokers, closed when the test
// ends, and returns their addresses.
func startKfake(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// testLogger logs to the test's output when RUNNEL_TEST_LOG is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("RUNNEL_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
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
	return g, newTopology(t, g)
}

func newTopology(t *testing.T, groups ...topology.AnyGroup) *topology.Topology {
	t.Helper()
	topo, err := topology.New(groups...)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

type instance struct {
	rt     *runtime.Runtime
	cancel context.CancelFunc
	done   chan error
}

// options returns the Options of an instance on the log at addrs, keeping
// its state in dir and creating missing topics with partitions partitions.
func options(t *testing.T, addrs []string, dir string, partitions int32) runtime.Options {
	return runtime.Options{Brokers: addrs, Dir: dir, Partitions: partitions, Logger: testLogger(t)}
}

// startInstance runs topo in a new runtime, stopped and closed when the
// test ends.
func startInstance(t *testing.T, topo *topology.Topology, opts runtime.Options) *instance {
	t.Helper()
	rt, err := runtime.New(t.Context(), topo, opts)
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

// kv is a record's key and value.
type kv struct{ k, v string }

// emitKVs emits records to topic through the runtime's emitter, in order,
// and waits until all are acknowledged.
func emitKVs(t *testing.T, rt *runtime.Runtime, topic topology.Topic[string, string], kvs ...kv) {
	t.Helper()
	em, err := runtime.NewEmitter(t.Context(), rt, topic)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var failed error
	for _, r := range kvs {
		em.EmitAsync(r.k, r.v, func(err error) {
			if err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
			}
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	err = em.Flush(ctx)
	mu.Lock()
	defer mu.Unlock()
	if err != nil || failed != nil {
		t.Fatalf("emit to %s: %v %v", topic.Name(), err, failed)
	}
}

// emitTo emits n records to topic, with keys key-0 to key-<keys-1> in
// turn, and returns how many each key got.
func emitTo(t *testing.T, rt *runtime.Runtime, topic topology.Topic[string, string], n, keys int, value func(i int) string) map[string]int64 {
	t.Helper()
	want := map[string]int64{}
	kvs := make([]kv, n)
	for i := range n {
		kvs[i] = kv{fmt.Sprintf("key-%d", i%keys), value(i)}
		want[kvs[i].k]++
	}
	emitKVs(t, rt, topic, kvs...)
	return want
}

func emit(t *testing.T, rt *runtime.Runtime, n, keys int, value func(i int) string) map[string]int64 {
	t.Helper()
	return emitTo(t, rt, events, n, keys, value)
}

// awaitTable waits until a view of g's table holds exactly want.
func awaitTable[V comparable](t *testing.T, rt *runtime.Runtime, g *topology.Group[string, V], want map[string]V) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	v, err := runtime.NewView(ctx, rt, g)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]V
	for {
		changed := v.Changed()
		got = map[string]V{}
		if err := v.Iterate(func(k string, val V) bool { got[k] = val; return true }); err != nil {
			t.Fatal(err)
		}
		if maps.Equal(got, want) {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			for k, w := range want {
				if have, ok := got[k]; !ok || have != w {
					t.Fatalf("table of %s: key %s: %v (row present: %v), want %v (%d keys of %d)", g.Name(), k, have, ok, w, len(got), len(want))
				}
			}
			for k, have := range got {
				if _, ok := want[k]; !ok {
					t.Fatalf("table of %s: key %s: %v, want no row", g.Name(), k, have)
				}
			}
			t.Fatalf("table of %s differs: %d keys, want %d", g.Name(), len(got), len(want))
		}
	}
}

// awaitCounts waits until a view of the counter's table equals want.
func awaitCounts(t *testing.T, rt *runtime.Runtime, g *topology.Group[string, int64], want map[string]int64) {
	t.Helper()
	awaitTable(t, rt, g, want)
}

// awaitPartitions waits until the instance owns n partitions of group (its
// restores are done by then: they happen before a partition is owned).
func awaitPartitions(t *testing.T, in *instance, group string, n int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond) // ownership is a counter; nothing to wait on
	defer tick.Stop()
	for in.rt.Stats(group).Partitions.Load() != n {
		select {
		case <-ctx.Done():
			t.Fatalf("instance owns %d partitions of %s, want %d", in.rt.Stats(group).Partitions.Load(), group, n)
		case <-tick.C:
		}
	}
}

func TestOneInstanceCountsExactly(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		g, topo := countTopology(t, processor.Stop(), nil)
		in := startInstance(t, topo, options(t, addrs, t.TempDir(), 8))
		want := emit(t, in.rt, 20000, 500, func(i int) string { return "x" })
		awaitCounts(t, in.rt, g, want)
		if n := in.rt.Stats("counter").Processed.Load(); n != 20000 {
			t.Fatalf("processed %d records, want 20000", n)
		}
	})
}

// Three instances split 12 partitions; one stops cleanly mid-stream, its
// partitions move to the others (restored from the changelog), and the
// final counts are exact.
func TestThreeInstancesShareAndHandOver(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		g, topo := countTopology(t, processor.Stop(), nil)
		a := startInstance(t, topo, options(t, addrs, t.TempDir(), 12))
		b := startInstance(t, topo, options(t, addrs, t.TempDir(), 12))
		c := startInstance(t, topo, options(t, addrs, t.TempDir(), 12))
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
	})
}

// A restarted instance restores only the changelog records written while
// it was away.
func TestRestartRestoresOnlyTheTail(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		g, topo := countTopology(t, processor.Stop(), nil)
		dirA := t.TempDir()
		a := startInstance(t, topo, options(t, addrs, dirA, 4))
		want := emit(t, a.rt, 2000, 100, func(int) string { return "x" })
		awaitCounts(t, a.rt, g, want)
		a.stop(t)

		b := startInstance(t, topo, options(t, addrs, t.TempDir(), 4))
		more := emit(t, b.rt, 300, 100, func(int) string { return "x" })
		for k, n := range more {
			want[k] += n
		}
		awaitCounts(t, b.rt, g, want)
		b.stop(t)

		a2 := startInstance(t, topo, options(t, addrs, dirA, 4))
		awaitPartitions(t, a2, "counter", 4)
		if n := a2.rt.Stats("counter").Restored.Load(); n != 300 {
			t.Fatalf("restarted instance restored %d changelog records, want the 300 written while it was away", n)
		}
		// Its store is whole: counting on from it stays exact.
		more = emit(t, a2.rt, 100, 100, func(int) string { return "x" })
		for k, n := range more {
			want[k] += n
		}
		awaitCounts(t, a2.rt, g, want)
	})
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
		forEachLog(t, func(t *testing.T, addrs []string) {
			g, topo := countTopology(t, processor.Skip(), bad)
			in := startInstance(t, topo, options(t, addrs, t.TempDir(), 2))
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
	})
	t.Run("dead letter", func(t *testing.T) {
		forEachLog(t, func(t *testing.T, addrs []string) {
			_, topo := countTopology(t, processor.DeadLetter("counter-dlq"), bad)
			in := startInstance(t, topo, options(t, addrs, t.TempDir(), 2))
			emit(t, in.rt, 100, 5, value)
			// An input offset is committed only once the dead letter its
			// record caused is acknowledged; and a stopped instance has
			// flushed every write. So from here on the dead-letter topic
			// holds all it ever will.
			awaitCommittedToEnd(t, addrs, "counter", "events")
			in.stop(t)

			var badAt []string // partition/offset of every bad input record
			for _, r := range readToEnd(t, addrs, "events") {
				if string(r.Value) == "bad" {
					badAt = append(badAt, fmt.Sprintf("%d/%d", r.Partition, r.Offset))
				}
			}
			var lettered []string
			for _, r := range readToEnd(t, addrs, "counter-dlq") {
				h := map[string]string{}
				for _, x := range r.Headers {
					h[x.Key] = string(x.Value)
				}
				if string(r.Key) != "key-3" || string(r.Value) != "bad" || h["runnel.topic"] != "events" ||
					h["runnel.group"] != "counter" || !strings.Contains(h["runnel.error"], `cannot count "bad"`) {
					t.Fatalf("dead letter %s=%s with headers %v", r.Key, r.Value, h)
				}
				lettered = append(lettered, h["runnel.partition"]+"/"+h["runnel.offset"])
			}
			slices.Sort(badAt)
			slices.Sort(lettered)
			if len(badAt) != 10 || !slices.Equal(lettered, badAt) {
				t.Fatalf("dead letters of the input records at %v, want one of each bad record, at %v", lettered, badAt)
			}
		})
	})
	t.Run("stop", func(t *testing.T) {
		forEachLog(t, func(t *testing.T, addrs []string) {
			_, topo := countTopology(t, processor.Stop(), bad)
			rt, err := runtime.New(t.Context(), topo, options(t, addrs, t.TempDir(), 1))
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
			offs, err := newKadm(t, addrs).FetchOffsets(ctx, "counter")
			if err != nil {
				t.Fatal(err)
			}
			// Records 0 to 2 succeeded, so exactly 3 is committed: less would
			// process them again, more would skip the failed record.
			if o, ok := offs.Lookup("events", 0); !ok || o.Err != nil || o.At != 3 {
				t.Fatalf("committed offset of events partition 0: %d (committed: %v, error: %v), want 3", o.At, ok, o.Err)
			}
		})
	})
}

// In-memory stores keep nothing across a restart: the restarted instance
// restores its whole table from the changelog and counts on exactly.
func TestMemoryStores(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		g, topo := countTopology(t, processor.Stop(), nil)
		opts := options(t, addrs, t.TempDir(), 4)
		opts.Stores = state.MemoryOpener()
		a := startInstance(t, topo, opts)
		want := emit(t, a.rt, 2000, 100, func(int) string { return "x" })
		awaitCounts(t, a.rt, g, want)
		if n := a.rt.Stats("counter").Restored.Load(); n != 0 {
			t.Fatalf("first instance restored %d records from an empty changelog, want 0", n)
		}
		a.stop(t)

		a2 := startInstance(t, topo, opts)
		awaitPartitions(t, a2, "counter", 4)
		// One changelog record per input record, all still there: kfake
		// does not compact, and the bundled log compacts closed segments
		// only, which 2000 small records do not fill.
		if n := a2.rt.Stats("counter").Restored.Load(); n != 2000 {
			t.Fatalf("restarted instance restored %d changelog records, want the whole changelog of 2000", n)
		}
		more := emit(t, a2.rt, 300, 100, func(int) string { return "x" })
		for k, n := range more {
			want[k] += n
		}
		awaitCounts(t, a2.rt, g, want)
	})
}

// awaitCommittedToEnd waits until group has committed, on every partition
// of topic, the topic's end offset: every record in it is done with.
func awaitCommittedToEnd(t *testing.T, addrs []string, group, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	adm := newKadm(t, addrs)
	tick := time.NewTicker(10 * time.Millisecond) // commits are polled: nothing to wait on
	defer tick.Stop()
	for {
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		committed, cerr := adm.FetchOffsets(ctx, group)
		if err == nil {
			err = cerr
		}
		lag := int64(0)
		if err == nil {
			ends.Each(func(end kadm.ListedOffset) {
				c, ok := committed.Lookup(topic, end.Partition)
				switch {
				case !ok:
					lag += end.Offset
				case c.At < end.Offset:
					lag += end.Offset - c.At
				}
			})
		}
		if err == nil && lag == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("group %s on %s: %d records not committed (last error: %v)", group, topic, lag, err)
		case <-tick.C:
		}
	}
}

// readToEnd reads topic from its start up to its end offsets as they are
// when it is called, and returns what it found, including any record that
// came past them meanwhile.
func readToEnd(t *testing.T, addrs []string, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	ends, err := newKadm(t, addrs).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	want := map[int32]int64{} // the partitions still to read, and where they end
	starts := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			starts[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(want) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: starts}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []*kgo.Record
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("topic %s: partitions %v not read to their end", topic, want)
		}
		for _, e := range fs.Errors() {
			t.Logf("read %s: partition %d: %v", topic, e.Partition, e.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got = append(got, r)
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return got
}

// newKadm returns an admin client of the log at addrs, closed when the
// test ends.
func newKadm(t *testing.T, addrs []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// createTopic creates a topic the way an operator would, before the
// runtime starts.
func createTopic(t *testing.T, addrs []string, name string, partitions int32, configs map[string]*string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	res, err := newKadm(t, addrs).CreateTopic(ctx, partitions, -1, configs, name)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// produce sends records with a Kafka client and waits until all are
// acknowledged. Records go to the partition they name.
func produce(t *testing.T, addrs []string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// topicReader reads a topic from its start, record by record.
type topicReader struct {
	t     *testing.T
	topic string
	cl    *kgo.Client
	buf   []*kgo.Record
}

func newTopicReader(t *testing.T, addrs []string, topic string) *topicReader {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &topicReader{t: t, topic: topic, cl: cl}
}

// next returns the next n records of the topic, in the order of each
// partition.
func (r *topicReader) next(n int) []*kgo.Record {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), testTimeout)
	defer cancel()
	for len(r.buf) < n {
		fs := r.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			r.t.Fatalf("topic %s: %d more records, want %d", r.topic, len(r.buf), n)
		}
		for _, e := range fs.Errors() {
			r.t.Logf("consume %s: partition %d: %v", r.topic, e.Partition, e.Err)
		}
		r.buf = append(r.buf, fs.Records()...)
	}
	out := r.buf[:n:n]
	r.buf = r.buf[n:]
	return out
}

// consume reads topic from its start until it has n records, and fails if
// the reads found more.
func consume(t *testing.T, addrs []string, topic string, n int) []*kgo.Record {
	t.Helper()
	r := newTopicReader(t, addrs, topic)
	got := r.next(n)
	if len(r.buf) > 0 {
		t.Fatalf("topic %s has %d records or more, want %d", topic, n+len(r.buf), n)
	}
	return got
}
