package runtime_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/topology"
	"github.com/runnel-io/runnel/topology/topotest"
)

// rulesTopology exercises the rules of internal/core that the runtime and
// topotest share: a skip policy, stream time (with a record that fails and
// one that is late), a windowed table closing by stream time, a
// stream-time timer, and a wall-clock timer whose callback reports stream
// time. Each callback writes what it saw to results.
func rulesTopology(t *testing.T) *topology.Topology {
	g := topology.NewGroup("rules", processor.String, processor.Int64)
	g.OnError(processor.Skip())
	out := topology.Output(g, results)
	counts := topology.Windowed(g, "counts", topology.WindowConfig[string, int64, int64]{
		Windows: processor.Tumbling(time.Minute),
		Values:  processor.Int64,
		Emit:    processor.EmitFinal,
		OnResult: func(ctx processor.Context[string, int64], key string, w processor.Window, n int64) error {
			return out.Emit(ctx, key, fmt.Sprintf("window %s=%d", w.Start.Format("15:04"), n))
		},
	})
	report := func(what string) processor.TimerHandler[string, int64] {
		return func(ctx processor.Context[string, int64], key string, at time.Time) error {
			n, _ := ctx.Value()
			return out.Emit(ctx, key, fmt.Sprintf("%s row=%d stream=%s", what, n, ctx.StreamTime().Sub(t0)))
		}
	}
	later := topology.Timer(g, "later", report("stream-time timer"))
	wall := topology.Timer(g, "wall", report("wall-clock timer"))
	topology.Input(g, events, func(ctx processor.Context[string, int64], key, v string) error {
		if v == "bad" {
			return errors.New("bad record")
		}
		n, _ := ctx.Value()
		if err := ctx.SetValue(n + 1); err != nil {
			return err
		}
		if _, err := counts.Add(ctx, func(_ processor.Window, n int64, _ bool) int64 { return n + 1 }); err != nil {
			return err
		}
		switch v {
		case "later":
			return later.At(ctx, ctx.Timestamp().Add(90*time.Second))
		case "wall":
			return wall.AtWallClock(ctx, ctx.WallClock().Add(100*time.Millisecond))
		}
		return nil
	})
	return newTopology(t, g)
}

// rulesInput is what the scenario feeds, in order: key, value, event time.
var rulesInput = []struct {
	key, value string
	at         time.Duration
}{
	{"a", "x", 0},
	{"b", "x", 10 * time.Second},
	{"a", "later", 20 * time.Second}, // a stream-time timer at 1m50s
	{"x", "bad", 30 * time.Second},   // skipped, but stream time counts it
	{"a", "x", 70 * time.Second},     // closes 09:00
	{"c", "x", 5 * time.Second},      // late: 09:00 is closed
	{"b", "x", 130 * time.Second},    // fires the timer, closes 09:01
	{"w", "wall", 131 * time.Second}, // a wall-clock timer 100ms from now
}

// rulesOutcome is what a run of the scenario shows: the results (key,
// value and, except for the wall-clock timer's, event time) and the
// group's counts of skipped and late records.
type rulesOutcome struct {
	results       []string
	skipped, late int
}

func rulesResult(key, value string, ts time.Time) string {
	if strings.HasPrefix(value, "wall-clock") {
		return key + " " + value // at the wall clock's time: not comparable
	}
	return fmt.Sprintf("%s %s @%s", key, value, ts.Sub(t0))
}

// The runtime, on the bundled log, and topotest run one scenario by the
// same rules: the same results, in the same order, and the same counts.
// It covers the rules the two once disagreed on: inside a wall-clock
// timer's callback, stream time is the records' (not the timer's time).
func TestRuntimeAndTopotestFollowTheSameRules(t *testing.T) {
	// topotest
	d := topotest.New(t, rulesTopology(t))
	for _, in := range rulesInput {
		if err := topotest.Feed(d, events, in.key, in.value, topotest.At(t0.Add(in.at))); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.AdvanceWallClock(time.Second); err != nil {
		t.Fatal(err)
	}
	var want rulesOutcome
	for _, m := range topotest.Emitted(d, results) {
		want.results = append(want.results, rulesResult(m.Key, m.Value, m.Timestamp))
	}
	want.skipped, want.late = d.Skipped("rules"), d.Late("rules")

	// The outcome the rules give, spelled out, so that the two cannot
	// agree on something else.
	wantResults := []string{
		"a window 09:00=2 @1m0s",
		"b window 09:00=1 @1m0s",
		"a stream-time timer row=3 stream=2m10s @1m50s",
		"a window 09:01=1 @2m0s",
		"w wall-clock timer row=1 stream=2m11s",
	}
	if !slices.Equal(want.results, wantResults) || want.skipped != 1 || want.late != 1 {
		t.Fatalf("topotest: results %q, skipped %d, late %d; want %q, 1, 1", want.results, want.skipped, want.late, wantResults)
	}

	// The runtime, on the bundled log.
	addrs := []string{startLog(t)}
	createTopic(t, addrs, events.Name(), 1, nil)
	inst := startInstance(t, rulesTopology(t), options(t, addrs, t.TempDir(), 1))
	var recs []*kgo.Record
	for _, in := range rulesInput {
		r := at(in.key, t0.Add(in.at))
		r.Value = []byte(in.value)
		recs = append(recs, r)
	}
	produce(t, addrs, recs...)
	var got rulesOutcome
	for _, r := range newTopicReader(t, addrs, results.Name()).next(len(want.results)) {
		got.results = append(got.results, rulesResult(string(r.Key), string(r.Value), r.Timestamp))
	}
	stats := inst.rt.Stats("rules")
	got.skipped, got.late = int(stats.Skipped.Load()), int(stats.Late.Load())
	if !slices.Equal(got.results, want.results) || got.skipped != want.skipped || got.late != want.late {
		t.Errorf("runtime: results %q, skipped %d, late %d\ntopotest: results %q, skipped %d, late %d",
			got.results, got.skipped, got.late, want.results, want.skipped, want.late)
	}
}
