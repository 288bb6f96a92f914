package topotest_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
	"github.com/runnel-io/runnel/topology"
	"github.com/runnel-io/runnel/topology/topotest"
)

// keyIn returns the first key "<prefix><i>" that the driver puts in
// partition p of topic.
func keyIn[V any](t *testing.T, d *topotest.Driver, topic topology.Topic[string, V], prefix string, p int32) string {
	t.Helper()
	for i := range 1000 {
		if k := prefix + strconv.Itoa(i); topotest.PartitionOf(d, topic, k) == p {
			return k
		}
	}
	t.Fatalf("no key %s<i> in partition %d of %s", prefix, p, topic.Name())
	return ""
}

var (
	placed = topology.NewTopic("placed", processor.String, processor.String)
	where  = topology.NewTopic("where", processor.String, processor.String)
)

// placer reports where its records run: for a record of key k read from
// placed it emits "in/k" = the partition it ran in, and loops "loop/k",
// whose handler emits "loop/k" = the partition it ran in. So the topic
// where holds, for every key, the partitions chosen for a fed record, a
// loop record and, as each record's own partition, the outputs.
func placer() *topology.Topology {
	g := topology.NewStatelessGroup("placer", processor.String)
	out := topology.Output(g, where)
	loop := topology.Loop(g, processor.String, func(ctx processor.Context[string, processor.NoTable], key, _ string) error {
		return out.Emit(ctx, key, strconv.Itoa(int(ctx.Partition())))
	})
	topology.Input(g, placed, func(ctx processor.Context[string, processor.NoTable], key, _ string) error {
		if err := out.Emit(ctx, "in/"+key, strconv.Itoa(int(ctx.Partition()))); err != nil {
			return err
		}
		return loop.Emit(ctx, "loop/"+key, "")
	})
	return must(topology.New(g))
}

// placement is where one output record of the placer went: "p<partition
// of the record> ran in <partition its handler ran in>".
func placement(partition int32, ranIn string) string {
	return fmt.Sprintf("p%d ran in %s", partition, ranIn)
}

// The driver places fed records, loop records and outputs in the
// partitions the runtime does, on the real log: the same topology, fed
// the same keys, writes the same records to the same partitions, having
// run each handler in the same partition.
func TestPartitionsPlaceRecordsLikeTheRuntime(t *testing.T) {
	const partitions, keys = 5, 200
	topo := placer()

	d := topotest.New(t, topo, topotest.Partitions(partitions))
	for i := range keys {
		feed(t, d, placed, "k"+strconv.Itoa(i), "")
	}
	inDriver := map[string]string{}
	for _, m := range topotest.Emitted(d, where) {
		inDriver[m.Key] = placement(m.Partition, m.Value)
	}
	if len(inDriver) != 2*keys {
		t.Fatalf("the driver wrote %d distinct records to %s, want %d", len(inDriver), where.Name(), 2*keys)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rt, err := runtime.New(ctx, topo, runtime.Options{Dir: t.TempDir(), Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	done := make(chan error, 1)
	run, stop := context.WithCancel(ctx)
	go func() { done <- rt.Run(run) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	em, err := runtime.NewEmitter(ctx, rt, placed)
	if err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		em.EmitAsync("k"+strconv.Itoa(i), "", nil)
	}
	if err := em.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(rt.Brokers()...), kgo.ConsumeTopics(where.Name()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	inRuntime := map[string]string{}
	for len(inRuntime) < len(inDriver) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d records of %s from the runtime, want %d: %v", len(inRuntime), where.Name(), len(inDriver), err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) { inRuntime[string(r.Key)] = placement(r.Partition, string(r.Value)) })
	}
	for _, k := range slices.Sorted(maps.Keys(inDriver)) {
		if inRuntime[k] != inDriver[k] {
			t.Errorf("%s: the driver put it in %s, the runtime in %s", k, inDriver[k], inRuntime[k])
		}
	}
	used := map[string]bool{}
	for _, v := range inDriver {
		used[v] = true
	}
	if len(used) < partitions {
		t.Errorf("the keys went to %d places, want them spread over all %d partitions", len(used), partitions)
	}
}

var (
	visits = topology.NewTopic("visits", processor.String, processor.String)
	tally  = topology.NewTopic("tally", processor.String, processor.Int64)
)

// visitCounter counts visits per key in its table and emits each new
// count to tally; every minute it emits, per partition, "rows/<p>" = the
// number of rows its partition's table holds.
func visitCounter() (*topology.Group[string, int64], *topology.Topology) {
	g := topology.NewGroup("visit-counter", processor.String, processor.Int64)
	out := topology.Output(g, tally)
	topology.Input(g, visits, func(ctx processor.Context[string, int64], key, _ string) error {
		n, _ := ctx.Value()
		if err := ctx.SetValue(n + 1); err != nil {
			return err
		}
		return out.Emit(ctx, key, n+1)
	})
	topology.Punctuate(g, time.Minute, func(ctx processor.Context[string, int64], _ time.Time) error {
		var rows int64
		if err := ctx.Rows(func(string, int64) error { rows++; return nil }); err != nil {
			return err
		}
		return out.Emit(ctx, fmt.Sprintf("rows/%d", ctx.Partition()), rows)
	})
	return g, must(topology.New(g))
}

// Each partition has its own table rows, and its own punctuations; every
// record lands in its key's partition, changelog writes in the partition of
// the row, and offsets count per partition.
func TestPartitionsKeepTablesApart(t *testing.T) {
	g, topo := visitCounter()
	d := topotest.New(t, topo, topotest.Partitions(3))
	if n := d.Partitions(); n != 3 {
		t.Fatalf("Partitions() = %d, want 3", n)
	}
	// Four keys in each partition, the i-th visited i times.
	want := map[int32]map[string]int64{}
	for p := range int32(3) {
		want[p] = map[string]int64{}
		for i := 0; len(want[p]) < 4; i++ {
			k := fmt.Sprintf("p%d-%d", p, i)
			if topotest.PartitionOf(d, visits, k) == p {
				want[p][k] = int64(len(want[p]) + 1)
			}
		}
	}
	for p := range int32(3) {
		for k, n := range want[p] {
			for range n {
				feed(t, d, visits, k, "")
			}
		}
	}
	for p := range int32(3) {
		for k, n := range want[p] {
			if got, ok := topotest.Get(d, g, k); !ok || got != n {
				t.Errorf("row %s: %d, %v; want %d", k, got, ok, n)
			}
		}
	}
	for _, topic := range []string{visits.Name(), topology.TableTopic("visit-counter"), tally.Name()} {
		next := map[int32]int64{}
		for _, r := range d.Records(topic) {
			if p := topotest.PartitionOf(d, visits, string(r.Key)); r.Partition != p {
				t.Errorf("%s: key %s in partition %d, want its key's %d", topic, r.Key, r.Partition, p)
			}
			if r.Offset != next[r.Partition] {
				t.Errorf("%s-%d: offset %d, want %d", topic, r.Partition, r.Offset, next[r.Partition])
			}
			next[r.Partition] = r.Offset + 1
		}
		if len(next) != 3 {
			t.Errorf("%s: records in %d partitions, want 3", topic, len(next))
		}
	}
	for _, m := range topotest.Emitted(d, tally) {
		if p := topotest.PartitionOf(d, tally, m.Key); m.Partition != p {
			t.Errorf("emitted %s=%d to partition %d, want its key's %d", m.Key, m.Value, m.Partition, p)
		}
	}

	// A punctuation runs once in each partition, and sees its rows only.
	before := len(topotest.Emitted(d, tally))
	if err := d.AdvanceWallClock(time.Minute); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, m := range topotest.Emitted(d, tally)[before:] {
		rows = append(rows, fmt.Sprintf("%s=%d", m.Key, m.Value))
	}
	checkStrings(t, "rows of each partition", rows, []string{"rows/0=4", "rows/1=4", "rows/2=4"})
}

// Each partition has its own stream time, windows and timers: a record
// far ahead in one partition makes no record of another late, and
// advancing one partition's stream time leaves the others alone.
func TestPartitionsKeepStreamTimeApart(t *testing.T) {
	g, win, topo := windowCounter(processor.Tumbling(time.Minute).WithGrace(10*time.Second), processor.EmitUpdates)
	d := topotest.New(t, topo, topotest.Partitions(2))
	ahead := keyIn(t, d, clicks, "ahead-", 0)
	behind := keyIn(t, d, clicks, "behind-", 1)

	feed(t, d, clicks, ahead, Click{}, topotest.At(t0.Add(5*time.Minute)))
	feed(t, d, clicks, behind, Click{}, topotest.At(t0))
	if got := d.StreamTimeIn("counter", 0); !got.Equal(t0.Add(5 * time.Minute)) {
		t.Errorf("partition 0's stream time %v, want 5m", got.Sub(t0))
	}
	if got := d.StreamTimeIn("counter", 1); !got.Equal(t0) {
		t.Errorf("partition 1's stream time %v, want 0s", got.Sub(t0))
	}
	if got := d.StreamTime("counter"); !got.Equal(t0.Add(5 * time.Minute)) {
		t.Errorf("the group's stream time %v, want the latest partition's, 5m", got.Sub(t0))
	}
	checkStrings(t, "windows of "+behind, windowsOf(d, g, win, behind, t0), []string{"[0s,1m0s)=1"})
	if n := d.Late("counter"); n != 0 {
		t.Errorf("%d records late, want 0", n)
	}
	// A record of partition 0 as old is late there.
	old := keyIn(t, d, clicks, "old-", 0)
	feed(t, d, clicks, old, Click{}, topotest.At(t0))
	if l0, l1 := d.LateIn("counter", 0), d.LateIn("counter", 1); l0 != 1 || l1 != 0 {
		t.Errorf("late records: %d in partition 0, %d in 1; want 1 and 0", l0, l1)
	}

	// Timers are the partition's own: each has its key's expiry timer.
	for p, key := range []string{ahead, behind} {
		var names []string
		for _, tm := range d.TimersIn("counter", int32(p)) {
			names = append(names, string(tm.Key))
		}
		checkStrings(t, fmt.Sprintf("keys of partition %d's timers", p), names, []string{key})
	}
	if n := len(d.Timers("counter")); n != 2 {
		t.Errorf("the group has %d timers, want both partitions' 2", n)
	}

	if err := d.AdvanceStreamTimeIn("counter", 1, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if a, b := d.StreamTimeIn("counter", 0), d.StreamTimeIn("counter", 1); !a.Equal(t0.Add(5*time.Minute)) || !b.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("after advancing partition 1 to 2m: stream times %v and %v", a.Sub(t0), b.Sub(t0))
	}
	if err := d.AdvanceStreamTime("counter", t0.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if a, b := d.StreamTimeIn("counter", 0), d.StreamTimeIn("counter", 1); !a.Equal(t0.Add(5*time.Minute)) || !b.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("after advancing the group to 3m: stream times %v and %v, want 5m and 3m", a.Sub(t0), b.Sub(t0))
	}
	if err := d.AdvanceStreamTimeIn("counter", 2, t0); err == nil {
		t.Error("advancing partition 2 of 2 did not fail")
	}
}

var ledger = topology.NewTopic("ledger", processor.String, processor.String)

// A record looped to a key is processed in the partition of that key,
// where its row is, and its changelog write lands there too.
func TestLoopRecordLandsInItsKeysPartition(t *testing.T) {
	var ran []string
	g := topology.NewGroup("forwarder", processor.String, processor.Int64)
	loop := topology.Loop(g, processor.String, func(ctx processor.Context[string, int64], key, _ string) error {
		ran = append(ran, fmt.Sprintf("%s in %s-%d@%d", key, ctx.Topic(), ctx.Partition(), ctx.Offset()))
		n, _ := ctx.Value()
		return ctx.SetValue(n + 1)
	})
	topology.Input(g, ledger, func(ctx processor.Context[string, int64], _, to string) error {
		return loop.Emit(ctx, to, "")
	})
	d := topotest.New(t, must(topology.New(g)), topotest.Partitions(2))
	from := keyIn(t, d, ledger, "from-", 0)
	to := keyIn(t, d, ledger, "to-", 1)
	feed(t, d, ledger, from, to)
	feed(t, d, ledger, from, to)

	checkStrings(t, "loop records", ran, []string{to + " in forwarder-loop-1@0", to + " in forwarder-loop-1@1"})
	if n, ok := topotest.Get(d, g, to); !ok || n != 2 {
		t.Errorf("row %s: %d, %v; want 2", to, n, ok)
	}
	for _, r := range d.Records(topology.TableTopic("forwarder")) {
		if r.Partition != 1 {
			t.Errorf("changelog write of %s in partition %d, want 1", r.Key, r.Partition)
		}
	}
}

// Move is an input of the looper: its event time, and the key to loop it
// to, if any.
type Move struct {
	At     time.Time
	LoopTo string
}

// moves is the looper's input; its records' event time is in their value.
var moves = topology.NewTopic("in", processor.String, processor.JSON[Move]()).
	WithTimestamps(func(_ string, m Move, _ time.Time) time.Time { return m.At })

// looper is a stateless group g counting its input's records in 1-minute
// tumbling windows with 10 s grace, which loops each record that says so
// to another key. If countLoops, the loop handler counts the looped
// records in the same windows, and the windows' final results go to
// counts; if not, it does nothing and every update goes to counts. The
// loop handler notes in seen the event time and stream time it saw.
func looper(seen *[]string, countLoops bool) (*topology.Group[string, processor.NoTable], processor.Windowed[string, processor.NoTable, int64], *topology.Topology) {
	g := topology.NewStatelessGroup("g", processor.String)
	out := topology.Output(g, counts)
	mode := processor.EmitUpdates
	if countLoops {
		mode = processor.EmitFinal
	}
	win := topology.Windowed(g, "moves", topology.WindowConfig[string, processor.NoTable, int64]{
		Windows: processor.Tumbling(time.Minute).WithGrace(10 * time.Second),
		Values:  processor.Int64,
		Emit:    mode,
		OnResult: func(ctx processor.Context[string, processor.NoTable], key string, w processor.Window, n int64) error {
			return out.Emit(ctx, key, Count{Start: w.Start, End: w.End, N: n})
		},
	})
	count := func(ctx processor.Context[string, processor.NoTable]) error {
		_, err := win.Add(ctx, func(_ processor.Window, n int64, _ bool) int64 { return n + 1 })
		return err
	}
	loop := topology.Loop(g, processor.JSON[Move](), func(ctx processor.Context[string, processor.NoTable], key string, _ Move) error {
		stream := "none"
		if st := ctx.StreamTime(); !st.IsZero() {
			stream = st.Sub(t0).String()
		}
		*seen = append(*seen, fmt.Sprintf("%s at %v, stream time %s", key, ctx.Timestamp().Sub(t0), stream))
		if countLoops {
			return count(ctx)
		}
		return nil
	})
	topology.Input(g, moves, func(ctx processor.Context[string, processor.NoTable], _ string, m Move) error {
		if err := count(ctx); err != nil {
			return err
		}
		if m.LoopTo != "" {
			return loop.Emit(ctx, m.LoopTo, m)
		}
		return nil
	})
	return g, win, must(topology.New(g))
}

// A record a group loops to itself, from a partition whose stream time is
// far ahead, does not move the receiving partition's stream time: that
// partition's own records, in order, are not made late (issue 11's
// reproduction).
func TestLoopRecordDoesNotMakeTheReceivingPartitionsRecordsLate(t *testing.T) {
	var seen []string
	g, win, topo := looper(&seen, false)
	d := topotest.New(t, topo, topotest.Partitions(2))
	src := keyIn(t, d, moves, "src-", 0)
	dst := keyIn(t, d, moves, "dst-", 1)
	loopKey := keyIn(t, d, moves, "loop-", 1)

	feed(t, d, moves, src, Move{At: t0.Add(5 * time.Minute), LoopTo: loopKey})
	checkStrings(t, "loop records", seen, []string{loopKey + " at 5m0s, stream time none"})
	feed(t, d, moves, dst, Move{At: t0})

	if n := d.Late("g"); n != 0 {
		t.Errorf("%d records late, want 0", n)
	}
	checkStrings(t, "windows of "+dst, windowsOf(d, g, win, dst, t0), []string{"[0s,1m0s)=1"})
	if st := d.StreamTimeIn("g", 1); !st.Equal(t0) {
		t.Errorf("partition 1's stream time %v, want its own record's 0s", st.Sub(t0))
	}
}

// A loop record is processed at its own event time, and a windowed update
// it makes is judged late or not against the receiving partition's stream
// time; being ahead, it fires none of that partition's stream-time timers.
func TestLoopRecordIsJudgedByTheReceivingPartitionsStreamTime(t *testing.T) {
	var seen []string
	g, win, topo := looper(&seen, true)
	d := topotest.New(t, topo, topotest.Partitions(2))
	src := keyIn(t, d, moves, "src-", 0)
	dst := keyIn(t, d, moves, "dst-", 1)
	resultsOf := func(key string) []string {
		var out []string
		for _, r := range results(d) {
			if strings.HasPrefix(r, key+" ") {
				out = append(out, strings.TrimPrefix(r, key+" "))
			}
		}
		return out
	}

	// Partition 1 is at 5m; a record looped there at 0s is late for its
	// window, which closed at 1m10s in partition 1's stream time.
	feed(t, d, moves, dst, Move{At: t0.Add(5 * time.Minute)})
	feed(t, d, moves, src, Move{At: t0, LoopTo: dst})
	if l0, l1 := d.LateIn("g", 0), d.LateIn("g", 1); l0 != 0 || l1 != 1 {
		t.Errorf("late records: %d in partition 0, %d in 1; want 0 and 1", l0, l1)
	}

	// A record looped there at 10m is counted in its own window, and
	// leaves partition 1 at 5m: the window [5m, 6m) is still open.
	feed(t, d, moves, src, Move{At: t0.Add(10 * time.Minute), LoopTo: dst})
	checkStrings(t, "loop records", seen, []string{dst + " at 0s, stream time 5m0s", dst + " at 10m0s, stream time 5m0s"})
	checkStrings(t, "windows of "+dst, windowsOf(d, g, win, dst, t0), []string{"[5m0s,6m0s)=1", "[10m0s,11m0s)=1"})
	if st := d.StreamTimeIn("g", 1); !st.Equal(t0.Add(5 * time.Minute)) {
		t.Errorf("partition 1's stream time %v, want 5m", st.Sub(t0))
	}
	checkStrings(t, "results of "+dst, resultsOf(dst), nil)

	// Partition 1's own record at 7m closes [5m, 6m); [10m, 11m) stays open.
	feed(t, d, moves, dst, Move{At: t0.Add(7 * time.Minute)})
	checkStrings(t, "results of "+dst, resultsOf(dst), []string{"[5m0s,6m0s)=1 @6m10s"})
	checkStrings(t, "results of "+src, resultsOf(src), []string{"[0s,1m0s)=1 @1m10s"})
}

// A timer that a loop record's handler sets at or before the receiving
// partition's stream time fires right after the record, as after any
// record: loop records move no stream time, but hold back no due timer.
func TestLoopRecordFiresTheTimersItSetsDue(t *testing.T) {
	var fired []string
	g := topology.NewStatelessGroup("g", processor.String)
	due := topology.Timer(g, "due", func(ctx processor.Context[string, processor.NoTable], key string, at time.Time) error {
		fired = append(fired, fmt.Sprintf("%s at %v in partition %d", key, at.Sub(t0), ctx.Partition()))
		return nil
	})
	loop := topology.Loop(g, processor.JSON[Move](), func(ctx processor.Context[string, processor.NoTable], _ string, _ Move) error {
		return due.At(ctx, ctx.StreamTime())
	})
	topology.Input(g, moves, func(ctx processor.Context[string, processor.NoTable], _ string, m Move) error {
		if m.LoopTo != "" {
			return loop.Emit(ctx, m.LoopTo, m)
		}
		return nil
	})
	d := topotest.New(t, must(topology.New(g)), topotest.Partitions(2))
	src := keyIn(t, d, moves, "src-", 0)
	dst := keyIn(t, d, moves, "dst-", 1)
	feed(t, d, moves, dst, Move{At: t0.Add(time.Minute)})
	feed(t, d, moves, src, Move{At: t0.Add(5 * time.Minute), LoopTo: dst})
	checkStrings(t, "timers fired", fired, []string{dst + " at 1m0s in partition 1"})
	if st := d.StreamTimeIn("g", 1); !st.Equal(t0.Add(time.Minute)) {
		t.Errorf("partition 1's stream time %v, want 1m", st.Sub(t0))
	}
}
