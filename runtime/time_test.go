package runtime_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/topology"
)

var (
	t0      = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	results = topology.NewTopic("results", processor.String, processor.String)
)

// at is a record of events with an explicit timestamp, for partition 0.
func at(key string, ts time.Time) *kgo.Record {
	return &kgo.Record{Topic: events.Name(), Partition: 0, Key: []byte(key), Value: []byte("x"), Timestamp: ts}
}

// readAll returns the values of the next n records of a reader, sorted.
func readAll(r *topicReader, n int) []string {
	var out []string
	for _, rec := range r.next(n) {
		out = append(out, string(rec.Key)+" "+string(rec.Value))
	}
	slices.Sort(out)
	return out
}

// perMinute counts events per key in 1-minute tumbling windows with 10s of
// grace, and emits each window's final count to results.
func perMinute(t *testing.T) *topology.Topology {
	g := topology.NewStatelessGroup("per-minute", processor.String)
	out := topology.Output(g, results)
	counts := topology.Windowed(g, "counts", topology.WindowConfig[string, processor.NoTable, int64]{
		Windows: processor.Tumbling(time.Minute).WithGrace(10 * time.Second),
		Values:  processor.Int64,
		Emit:    processor.EmitFinal,
		OnResult: func(ctx processor.Context[string, processor.NoTable], key string, w processor.Window, n int64) error {
			return out.Emit(ctx, key, fmt.Sprintf("%s=%d", w.Start.Format("15:04"), n))
		},
	})
	topology.Input(g, events, func(ctx processor.Context[string, processor.NoTable], key, _ string) error {
		_, err := counts.Add(ctx, func(_ processor.Window, n int64, _ bool) int64 { return n + 1 })
		return err
	})
	return newTopology(t, g)
}

// A per-minute tumbling count emits each window's final count once, when
// stream time passes its end plus the grace period; a record for a closed
// window is dropped and counted as late.
func TestWindowedCountEmitsFinalResults(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		topo := perMinute(t)
		createTopic(t, addrs, events.Name(), 1, nil)
		in := startInstance(t, topo, options(t, addrs, t.TempDir(), 1))
		r := newTopicReader(t, addrs, results.Name())

		produce(t, addrs,
			at("a", t0), at("b", t0.Add(5*time.Second)), at("a", t0.Add(59*time.Second)),
			at("a", t0.Add(time.Minute)), // the next window: 09:01
			at("b", t0.Add(65*time.Second)),
			at("a", t0.Add(69*time.Second)), // within grace of 09:00 but in 09:01
		)
		// Stream time 09:01:09 < 09:01:10: 09:00 is not closed yet, and a
		// late-but-in-grace record still counts.
		produce(t, addrs, at("b", t0.Add(50*time.Second)))
		produce(t, addrs, at("c", t0.Add(70*time.Second))) // closes 09:00
		got := readAll(r, 2)
		if want := []string{"a 09:00=2", "b 09:00=2"}; !slices.Equal(got, want) {
			t.Fatalf("final results of 09:00: %q, want %q", got, want)
		}
		produce(t, addrs, at("a", t0.Add(30*time.Second))) // too late for 09:00
		produce(t, addrs, at("c", t0.Add(3*time.Minute)))  // closes 09:01 and 09:02's nothing
		got = readAll(r, 3)
		if want := []string{"a 09:01=2", "b 09:01=1", "c 09:01=1"}; !slices.Equal(got, want) {
			t.Fatalf("final results of 09:01: %q, want %q", got, want)
		}
		if n := in.rt.Stats("per-minute").Late.Load(); n != 1 {
			t.Fatalf("late records: %d, want 1", n)
		}
	})
}

// timerGroup sets, for each record, a stream-time timer a minute after
// the record's time; the callback writes "fired at HH:MM" into the key's
// row and emits the same.
func timerGroup() *topology.Group[string, string] {
	g := topology.NewGroup("reminders", processor.String, processor.String)
	out := topology.Output(g, results)
	tm := topology.Timer(g, "remind", func(ctx processor.Context[string, string], key string, at time.Time) error {
		v := "fired at " + at.Format("15:04")
		if err := ctx.SetValue(v); err != nil {
			return err
		}
		return out.Emit(ctx, key, v)
	})
	topology.Input(g, events, func(ctx processor.Context[string, string], key, _ string) error {
		if err := ctx.SetValue("waiting"); err != nil {
			return err
		}
		return tm.At(ctx, ctx.Timestamp().Add(time.Minute))
	})
	return g
}

// Timers are persisted: one set by an instance that stops fires on the
// instance that gets the partition next, restored from the state
// changelog, once stream time reaches it there.
func TestTimersSurviveARestartAndMove(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		g := timerGroup()
		topo := newTopology(t, g)
		createTopic(t, addrs, events.Name(), 1, nil)
		r := newTopicReader(t, addrs, results.Name())

		a := startInstance(t, topo, options(t, addrs, t.TempDir(), 1))
		produce(t, addrs, at("k1", t0), at("k2", t0.Add(30*time.Second)))
		awaitTable(t, a.rt, g, map[string]string{"k1": "waiting", "k2": "waiting"})
		a.stop(t)

		// Another instance, with its own empty state directory: the
		// partition moves, and its timers with it.
		b := startInstance(t, topo, options(t, addrs, t.TempDir(), 1))
		awaitPartitions(t, b, "reminders", 1)
		if n := b.rt.Stats("reminders").Restored.Load(); n == 0 {
			t.Fatal("the new owner restored nothing from the changelogs")
		}
		produce(t, addrs, at("k3", t0.Add(70*time.Second))) // fires k1's timer only
		if got, want := readAll(r, 1), []string{"k1 fired at 09:01"}; !slices.Equal(got, want) {
			t.Fatalf("fired: %q, want %q", got, want)
		}
		awaitTable(t, b.rt, g, map[string]string{"k1": "fired at 09:01", "k2": "waiting", "k3": "waiting"})
		produce(t, addrs, at("k4", t0.Add(5*time.Minute))) // fires k2's and k3's, in order
		if got, want := r.next(2), []string{"k2 fired at 09:01", "k3 fired at 09:02"}; string(got[0].Key)+" "+string(got[0].Value) != want[0] || string(got[1].Key)+" "+string(got[1].Value) != want[1] {
			t.Fatalf("fired %s %s then %s %s, want %q", got[0].Key, got[0].Value, got[1].Key, got[1].Value, want)
		}
	})
}

// A wall-clock timer fires with no record arriving, and a punctuation
// visits every row of its partitions' table.
func TestWallClockTimersAndPunctuation(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		g := topology.NewGroup("balances", processor.String, processor.Int64)
		out := topology.Output(g, results)
		tm := topology.Timer(g, "settle", func(ctx processor.Context[string, int64], key string, _ time.Time) error {
			n, _ := ctx.Value()
			return out.Emit(ctx, key, fmt.Sprintf("settled %d", n))
		})
		topology.Punctuate(g, 100*time.Millisecond, func(ctx processor.Context[string, int64], _ time.Time) error {
			var keys []string
			var sum int64
			if err := ctx.Rows(func(k string, n int64) error {
				keys = append(keys, k)
				sum += n
				return nil
			}); err != nil {
				return err
			}
			if len(keys) == 3 {
				return out.Emit(ctx, "total", fmt.Sprintf("%s=%d", strings.Join(keys, ","), sum))
			}
			return nil
		})
		topology.Input(g, events, func(ctx processor.Context[string, int64], key, v string) error {
			if v == "settle" {
				return tm.AtWallClock(ctx, ctx.WallClock().Add(200*time.Millisecond))
			}
			n, _ := ctx.Value()
			return ctx.SetValue(n + 10)
		})
		topo := newTopology(t, g)
		createTopic(t, addrs, events.Name(), 1, nil)
		startInstance(t, topo, options(t, addrs, t.TempDir(), 1))
		r := newTopicReader(t, addrs, results.Name())
		settle := func(key string) *kgo.Record {
			r := at(key, t0)
			r.Value = []byte("settle")
			return r
		}
		produce(t, addrs, at("c", t0), at("a", t0), at("b", t0), at("a", t0), settle("a"), settle("b"), settle("c"))
		settled, complete := map[string]string{}, false
		for len(settled) < 3 || !complete {
			rec := r.next(1)[0]
			switch k, v := string(rec.Key), string(rec.Value); k {
			case "total":
				// Before the second "a" is processed the sum is 30.
				if v != "a,b,c=40" && v != "a,b,c=30" {
					t.Fatalf("punctuation saw %q, want the rows a,b,c in order, summing to 30 then 40", v)
				}
				complete = complete || v == "a,b,c=40"
			default:
				if prev, ok := settled[k]; ok && prev != v {
					t.Fatalf("%s settled twice: %q then %q", k, prev, v)
				}
				settled[k] = v
			}
		}
		want := map[string]string{"a": "settled 20", "b": "settled 10", "c": "settled 10"}
		for k, v := range want {
			if settled[k] != v {
				t.Fatalf("%s: %q, want %q (all: %v)", k, settled[k], v, settled)
			}
		}
	})
}

// Stream time is kept with the state: on the instance that gets the
// partition next, a window closed before the move stays closed, so a late
// record cannot produce a second "final" result.
func TestStreamTimeSurvivesAMove(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		topo := perMinute(t)
		createTopic(t, addrs, events.Name(), 1, nil)
		r := newTopicReader(t, addrs, results.Name())
		a := startInstance(t, topo, options(t, addrs, t.TempDir(), 1))
		produce(t, addrs, at("a", t0), at("a", t0.Add(20*time.Second)), at("b", t0.Add(80*time.Second)))
		if got, want := readAll(r, 1), []string{"a 09:00=2"}; !slices.Equal(got, want) {
			t.Fatalf("final results: %q, want %q", got, want)
		}
		a.stop(t)

		b := startInstance(t, topo, options(t, addrs, t.TempDir(), 1))
		produce(t, addrs, at("a", t0.Add(30*time.Second)), at("c", t0.Add(3*time.Minute)))
		if got, want := readAll(r, 1), []string{"b 09:01=1"}; !slices.Equal(got, want) {
			t.Fatalf("final results after the move: %q, want %q (and no second result for a's 09:00)", got, want)
		}
		if n := b.rt.Stats("per-minute").Late.Load(); n != 1 {
			t.Fatalf("late records after the move: %d, want 1", n)
		}
	})
}
