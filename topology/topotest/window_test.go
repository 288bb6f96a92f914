package topotest_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/topology"
	"github.com/runnel-io/runnel/topology/topotest"
)

// t0 is the base of the event times of these tests; it is aligned to every
// window size they use.
var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Count is the result of a windowed count.
type Count struct {
	Start, End time.Time
	N          int64
}

var counts = topology.NewTopic("counts", processor.String, processor.JSON[Count]())

// windowCounter counts each user's clicks in windows w, passing the results
// to the topic counts as mode says; sessions merge by adding.
func windowCounter(w processor.Windows, mode processor.EmitMode) (*topology.Group[string, processor.NoTable], processor.Windowed[string, processor.NoTable, int64], *topology.Topology) {
	g := topology.NewStatelessGroup("counter", processor.String)
	out := topology.Output(g, counts)
	win := topology.Windowed(g, "clicks", topology.WindowConfig[string, processor.NoTable, int64]{
		Windows: w,
		Values:  processor.Int64,
		Merge:   func(a, b int64) int64 { return a + b },
		Emit:    mode,
		OnResult: func(ctx processor.Context[string, processor.NoTable], user string, w processor.Window, n int64) error {
			return out.Emit(ctx, user, Count{Start: w.Start, End: w.End, N: n})
		},
	})
	topology.Input(g, clicks, func(ctx processor.Context[string, processor.NoTable], user string, c Click) error {
		_, err := win.Add(ctx, func(_ processor.Window, n int64, _ bool) int64 { return n + 1 })
		return err
	})
	return g, win, must(topology.New(g))
}

// span writes a window relative to base, to keep expectations short.
func span(base time.Time, w processor.Window) string {
	return fmt.Sprintf("[%v,%v)", w.Start.Sub(base), w.End.Sub(base))
}

// windowsOf returns the windows of key in the counter's table as
// "[start,end)=count", relative to base.
func windowsOf(d *topotest.Driver, g *topology.Group[string, processor.NoTable], win processor.Windowed[string, processor.NoTable, int64], key string, base time.Time) []string {
	var out []string
	for _, w := range topotest.Window(d, g, win, key) {
		out = append(out, fmt.Sprintf("%s=%d", span(base, w.Window), w.Value))
	}
	return out
}

// results returns the counts emitted as "user [start,end)=n @time",
// relative to t0.
func results(d *topotest.Driver) []string {
	var out []string
	for _, m := range topotest.Emitted(d, counts) {
		out = append(out, fmt.Sprintf("%s %s=%d @%v", m.Key, span(t0, processor.Window{Start: m.Value.Start, End: m.Value.End}), m.Value.N, m.Timestamp.Sub(t0)))
	}
	return out
}

func checkStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func TestTumblingWindows(t *testing.T) {
	g, win, topo := windowCounter(processor.Tumbling(time.Minute), processor.EmitUpdates)
	d := topotest.New(t, topo)
	// A window is [start, end): a record at a boundary opens the next one.
	for _, ts := range []time.Duration{0, time.Minute - time.Nanosecond, time.Minute} {
		feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(ts)))
	}
	feed(t, d, clicks, "bob", Click{}, topotest.At(t0.Add(90*time.Second)))
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(150*time.Second)))

	checkStrings(t, "alice's windows", windowsOf(d, g, win, "alice", t0), []string{"[0s,1m0s)=2", "[1m0s,2m0s)=1", "[2m0s,3m0s)=1"})
	checkStrings(t, "bob's windows", windowsOf(d, g, win, "bob", t0), []string{"[1m0s,2m0s)=1"})
	checkStrings(t, "results", results(d), []string{
		"alice [0s,1m0s)=1 @0s",
		"alice [0s,1m0s)=2 @59.999999999s",
		"alice [1m0s,2m0s)=1 @1m0s",
		"bob [1m0s,2m0s)=1 @1m30s",
		"alice [2m0s,3m0s)=1 @2m30s",
	})
	// Every window write is in the state changelog, keyed like the store.
	log := d.Records(topology.StateTopic("counter"))
	if len(log) != 5 {
		t.Fatalf("%d state changelog records, want 5", len(log))
	}
	w, ok := processor.ParseWindowStateKey(log[4].Key)
	if n, _ := processor.Int64.Decode(log[4].Value); !ok || span(t0, w) != "[2m0s,3m0s)" || n != 1 || log[4].Group != "counter" {
		t.Errorf("last state changelog record: window %v (%v), count %d, group %q", w, ok, n, log[4].Group)
	}
	if got := d.StreamTime("counter"); !got.Equal(t0.Add(150 * time.Second)) {
		t.Errorf("stream time %v, want the latest event time", got)
	}
}

func TestTumblingWindowsBeforeEpoch(t *testing.T) {
	g, win, topo := windowCounter(processor.Tumbling(time.Minute), processor.EmitUpdates)
	d := topotest.New(t, topo)
	epoch := time.Unix(0, 0).UTC()
	for _, ts := range []time.Duration{-90 * time.Second, -time.Minute, -time.Nanosecond, 0} {
		feed(t, d, clicks, "alice", Click{}, topotest.At(epoch.Add(ts)))
	}
	// Windows align to the epoch on both sides of it: a negative time is
	// not rounded towards zero.
	checkStrings(t, "windows", windowsOf(d, g, win, "alice", epoch), []string{"[-2m0s,-1m0s)=1", "[-1m0s,0s)=2", "[0s,1m0s)=1"})

	// A three-hour window of 1900 starts at midnight, as three hours
	// divide the days since then.
	g2, win2, topo2 := windowCounter(processor.Tumbling(3*time.Hour), processor.EmitUpdates)
	d2 := topotest.New(t, topo2)
	day := time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC)
	feed(t, d2, clicks, "bob", Click{}, topotest.At(day.Add(4*time.Hour+time.Second)))
	checkStrings(t, "1900 windows", windowsOf(d2, g2, win2, "bob", day), []string{"[3h0m0s,6h0m0s)=1"})
}

func TestHoppingWindows(t *testing.T) {
	for _, tc := range []struct {
		size, advance time.Duration
		at            []time.Duration
		want          []string
	}{
		{
			// size/advance = 2: each record is in two windows.
			size: 10 * time.Minute, advance: 5 * time.Minute,
			at:   []time.Duration{7 * time.Minute, 12 * time.Minute},
			want: []string{"[0s,10m0s)=1", "[5m0s,15m0s)=2", "[10m0s,20m0s)=1"},
		},
		{
			// size/advance = 10/3: a record is in three or four windows;
			// one at the end of [-3m,7m) is not in it.
			size: 10 * time.Minute, advance: 3 * time.Minute,
			at:   []time.Duration{7 * time.Minute, 12 * time.Minute},
			want: []string{"[0s,10m0s)=1", "[3m0s,13m0s)=2", "[6m0s,16m0s)=2", "[9m0s,19m0s)=1", "[12m0s,22m0s)=1"},
		},
		{
			// An advance equal to the size makes tumbling windows.
			size: 10 * time.Minute, advance: 10 * time.Minute,
			at:   []time.Duration{10 * time.Minute, 19 * time.Minute},
			want: []string{"[10m0s,20m0s)=2"},
		},
	} {
		t.Run(fmt.Sprintf("%v/%v", tc.size, tc.advance), func(t *testing.T) {
			g, win, topo := windowCounter(processor.Hopping(tc.size, tc.advance), processor.EmitUpdates)
			d := topotest.New(t, topo)
			for _, at := range tc.at {
				feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(at)))
			}
			checkStrings(t, "windows", windowsOf(d, g, win, "alice", t0), tc.want)
		})
	}
}

func TestSessionWindowsMerge(t *testing.T) {
	// The grace period keeps both sessions open until the bridge comes.
	g, win, topo := windowCounter(processor.Sessions(10*time.Minute).WithGrace(30*time.Minute), processor.EmitFinal)
	d := topotest.New(t, topo)
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0))
	feed(t, d, clicks, "bob", Click{}, topotest.At(t0.Add(5*time.Minute)))
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(18*time.Minute)))
	checkStrings(t, "two sessions", windowsOf(d, g, win, "alice", t0), []string{"[0s,10m0s)=1", "[18m0s,28m0s)=1"})
	// Expiry timers are per key and bucket of window ends (an hour here):
	// both of alice's sessions share one.
	checkStrings(t, "timers of two sessions", timers(d, "counter"), []string{
		"window-close/clicks alice @40m0s",
		"window-close/clicks bob @45m0s",
		"window-close/clicks alice @58m0s",
		"window-expire/clicks alice @25h0m0s",
		"window-expire/clicks bob @25h0m0s",
	})

	// 9m is within the gap of both sessions' records (0m and 18m): it
	// bridges them into one, whose count is merged (1+1) and then updated.
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(9*time.Minute)))
	checkStrings(t, "merged session", windowsOf(d, g, win, "alice", t0), []string{"[0s,28m0s)=3"})
	checkStrings(t, "bob's session", windowsOf(d, g, win, "bob", t0), []string{"[5m0s,15m0s)=1"})
	// The merged sessions' close timers are gone; the merged session's is
	// the later one's.
	checkStrings(t, "timers after the merge", timers(d, "counter"), []string{
		"window-close/clicks bob @45m0s",
		"window-close/clicks alice @58m0s",
		"window-expire/clicks alice @25h0m0s",
		"window-expire/clicks bob @25h0m0s",
	})
	var tombstones []string
	for _, r := range d.Records(topology.StateTopic("counter")) {
		if r.Value == nil {
			w, _ := processor.ParseWindowStateKey(r.Key)
			tombstones = append(tombstones, span(t0, w))
		}
	}
	checkStrings(t, "deleted sessions", tombstones, []string{"[0s,10m0s)", "[18m0s,28m0s)"})

	// A record extending the session moves its end, and so its timers.
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(25*time.Minute)))
	checkStrings(t, "extended session", windowsOf(d, g, win, "alice", t0), []string{"[0s,35m0s)=4"})
	// One inside it changes neither.
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(1*time.Minute)))
	checkStrings(t, "updated session", windowsOf(d, g, win, "alice", t0), []string{"[0s,35m0s)=5"})
	checkStrings(t, "timers after the extension", timers(d, "counter"), []string{
		"window-close/clicks bob @45m0s",
		"window-close/clicks alice @1h5m0s",
		"window-expire/clicks alice @25h0m0s",
		"window-expire/clicks bob @25h0m0s",
	})

	// The final results: each session once, the merged one whole.
	if err := d.AdvanceStreamTime("counter", t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	checkStrings(t, "results", results(d), []string{
		"bob [5m0s,15m0s)=1 @45m0s",
		"alice [0s,35m0s)=5 @1h5m0s",
	})
	// Past their retention, sessions are deleted, and no timer is left.
	if err := d.AdvanceStreamTime("counter", t0.Add(25*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if a, b := windowsOf(d, g, win, "alice", t0), windowsOf(d, g, win, "bob", t0); len(a)+len(b) != 0 {
		t.Errorf("sessions left after their retention: %q %q", a, b)
	}
	checkStrings(t, "timers at the end", timers(d, "counter"), nil)
}

func TestSessionWindowsSeparate(t *testing.T) {
	// A record less than the gap after a session's last one extends it; one
	// exactly the gap after starts a new session, whatever the grace.
	for _, grace := range []time.Duration{0, time.Hour} {
		t.Run(fmt.Sprintf("grace %v", grace), func(t *testing.T) {
			g, win, topo := windowCounter(processor.Sessions(10*time.Minute).WithGrace(grace), processor.EmitUpdates)
			d := topotest.New(t, topo)
			for _, at := range []time.Duration{0, 5 * time.Minute, 15 * time.Minute} {
				feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(at)))
			}
			checkStrings(t, "sessions", windowsOf(d, g, win, "alice", t0), []string{"[0s,15m0s)=2", "[15m0s,25m0s)=1"})
			checkStrings(t, "results", results(d), []string{
				"alice [0s,10m0s)=1 @0s",
				"alice [0s,15m0s)=2 @5m0s",
				"alice [15m0s,25m0s)=1 @15m0s",
			})
		})
	}

	g, win, topo := windowCounter(processor.Sessions(10*time.Minute), processor.EmitUpdates)
	d := topotest.New(t, topo)
	for _, at := range []time.Duration{0, 5 * time.Minute, 15 * time.Minute} {
		feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(at)))
	}
	// With no grace, [0,15m) closed when stream time reached 15m. A record
	// at 14m would bridge it with [15m,25m), but a closed session is final:
	// the record joins only the open one.
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(14*time.Minute)))
	checkStrings(t, "after a record bridging a closed session", windowsOf(d, g, win, "alice", t0), []string{"[0s,15m0s)=2", "[14m0s,25m0s)=2"})
	// A record whose own session would end by stream time is late.
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(4*time.Minute)))
	if n := d.Late("counter"); n != 1 {
		t.Errorf("%d late records, want 1", n)
	}
	checkStrings(t, "after a late record", windowsOf(d, g, win, "alice", t0), []string{"[0s,15m0s)=2", "[14m0s,25m0s)=2"})
}

func TestLateRecords(t *testing.T) {
	g, win, topo := windowCounter(processor.Tumbling(time.Minute).WithGrace(30*time.Second), processor.EmitUpdates)
	d := topotest.New(t, topo)
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(10*time.Second)))
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(80*time.Second)))
	// Within grace: [0,1m) closes at 1m30s, stream time is 1m20s.
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(50*time.Second)))
	if n := d.Late("counter"); n != 0 {
		t.Errorf("%d late records within the grace period", n)
	}
	checkStrings(t, "windows", windowsOf(d, g, win, "alice", t0), []string{"[0s,1m0s)=2", "[1m0s,2m0s)=1"})

	feed(t, d, clicks, "bob", Click{}, topotest.At(t0.Add(90*time.Second)))
	// Now [0,1m) is closed: records for it are dropped, not failed.
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(59*time.Second)))
	feed(t, d, clicks, "carol", Click{}, topotest.At(t0))
	if n := d.Late("counter"); n != 2 {
		t.Errorf("%d late records, want 2", n)
	}
	if n := d.Skipped("counter"); n != 0 {
		t.Errorf("%d skipped records: late ones are not failures", n)
	}
	checkStrings(t, "windows after late records", windowsOf(d, g, win, "alice", t0), []string{"[0s,1m0s)=2", "[1m0s,2m0s)=1"})
	if w := topotest.Window(d, g, win, "carol"); len(w) != 0 {
		t.Errorf("carol's late record made windows %v", w)
	}
	if got := len(results(d)); got != 4 {
		t.Errorf("%d results, want 4: late records have none", got)
	}
}

func TestWindowRetention(t *testing.T) {
	g, win, topo := windowCounter(processor.Tumbling(time.Minute).WithRetention(5*time.Minute), processor.EmitUpdates)
	d := topotest.New(t, topo)
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(10*time.Second)))
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(70*time.Second)))
	// [0,1m) is kept until stream time reaches 6m, its end plus retention.
	if err := d.AdvanceStreamTime("counter", t0.Add(6*time.Minute-time.Nanosecond)); err != nil {
		t.Fatal(err)
	}
	checkStrings(t, "windows before expiry", windowsOf(d, g, win, "alice", t0), []string{"[0s,1m0s)=1", "[1m0s,2m0s)=1"})
	if err := d.AdvanceStreamTime("counter", t0.Add(6*time.Minute)); err != nil {
		t.Fatal(err)
	}
	checkStrings(t, "windows after the first expiry", windowsOf(d, g, win, "alice", t0), []string{"[1m0s,2m0s)=1"})
	checkStrings(t, "timers", timers(d, "counter"), []string{"window-expire/clicks alice @7m0s"})
	// Stream time does not go back.
	if err := d.AdvanceStreamTime("counter", t0); err != nil {
		t.Fatal(err)
	}
	if got := d.StreamTime("counter"); !got.Equal(t0.Add(6 * time.Minute)) {
		t.Errorf("stream time went back to %v", got)
	}
	if err := d.AdvanceStreamTime("counter", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if w := topotest.Window(d, g, win, "alice"); len(w) != 0 || len(d.Timers("counter")) != 0 {
		t.Errorf("windows %v and timers %v left after their retention", w, d.Timers("counter"))
	}
	log := d.Records(topology.StateTopic("counter"))
	if n := len(log); n != 4 || log[2].Value != nil || log[3].Value != nil {
		t.Errorf("state changelog %+v, want two writes then two tombstones", log)
	}
	// Windows expire in batches: with a retention of 48h, windows ending
	// in one 2h bucket (a 24th of the retention) go together once stream
	// time reaches the bucket's end plus the retention.
	g, win, topo = windowCounter(processor.Tumbling(time.Minute).WithRetention(48*time.Hour), processor.EmitUpdates)
	d = topotest.New(t, topo)
	for _, at := range []time.Duration{0, time.Minute, 2*time.Hour + time.Second} {
		feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(at)))
	}
	want := []string{"[0s,1m0s)=1", "[1m0s,2m0s)=1", "[2h0m0s,2h1m0s)=1"}
	for _, step := range []struct {
		to   time.Duration
		want []string
	}{
		{50*time.Hour - time.Nanosecond, want},
		{50 * time.Hour, want[2:]},
		{52*time.Hour - time.Nanosecond, want[2:]},
		{52 * time.Hour, nil},
	} {
		if err := d.AdvanceStreamTime("counter", t0.Add(step.to)); err != nil {
			t.Fatal(err)
		}
		checkStrings(t, fmt.Sprintf("windows at %v", step.to), windowsOf(d, g, win, "alice", t0), step.want)
	}

	if err := d.AdvanceStreamTime("nobody", t0); err == nil || err.Error() != `topotest: advance stream time: no group "nobody"` {
		t.Errorf("advance of an unknown group: %v", err)
	}
}

func TestEmitModes(t *testing.T) {
	// The same records in both modes: [0,1m) gets four, one within grace
	// after [1m,2m) opened; a late one comes after [0,1m) closed.
	run := func(t *testing.T, mode processor.EmitMode) *topotest.Driver {
		_, _, topo := windowCounter(processor.Tumbling(time.Minute).WithGrace(30*time.Second), mode)
		d := topotest.New(t, topo)
		for _, at := range []time.Duration{10 * time.Second, 20 * time.Second, 50 * time.Second, 70 * time.Second, 40 * time.Second} {
			feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(at)))
		}
		if got := results(d); mode == processor.EmitFinal && len(got) != 0 {
			t.Errorf("final results %q before any window closed", got)
		}
		for _, to := range []time.Duration{90 * time.Second, 150 * time.Second, 10 * time.Minute} {
			if err := d.AdvanceStreamTime("counter", t0.Add(to)); err != nil {
				t.Fatal(err)
			}
		}
		feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(5*time.Second)))
		if d.Late("counter") != 1 {
			t.Errorf("%d late records, want 1", d.Late("counter"))
		}
		return d
	}
	t.Run("final", func(t *testing.T) {
		d := run(t, processor.EmitFinal)
		// Each window once, with its final count, when stream time reaches
		// its end plus grace: the result's time.
		checkStrings(t, "results", results(d), []string{
			"alice [0s,1m0s)=4 @1m30s",
			"alice [1m0s,2m0s)=1 @2m30s",
		})
	})
	t.Run("updates", func(t *testing.T) {
		d := run(t, processor.EmitUpdates)
		checkStrings(t, "results", results(d), []string{
			"alice [0s,1m0s)=1 @10s",
			"alice [0s,1m0s)=2 @20s",
			"alice [0s,1m0s)=3 @50s",
			"alice [1m0s,2m0s)=1 @1m10s",
			"alice [0s,1m0s)=4 @40s",
		})
	})
}

// timers returns the pending timers of group as "name key @at", relative
// to t0.
func timers(d *topotest.Driver, group string) []string {
	var out []string
	for _, tm := range d.Timers(group) {
		out = append(out, fmt.Sprintf("%s %s @%v", tm.Name, tm.Key, tm.At.Sub(t0)))
	}
	return out
}

func TestTimestampExtractor(t *testing.T) {
	type Reading struct {
		At    time.Time
		Value int64
	}
	readings := topology.NewTopic("readings", processor.String, processor.JSON[Reading]()).
		WithTimestamps(func(_ string, r Reading, _ time.Time) time.Time { return r.At })
	sums := topology.NewTopic("sums", processor.String, processor.Int64)

	g := topology.NewStatelessGroup("sensors", processor.String)
	out := topology.Output(g, sums)
	win := topology.Windowed(g, "sum", topology.WindowConfig[string, processor.NoTable, int64]{
		Windows: processor.Tumbling(time.Minute),
		Values:  processor.Int64,
		OnResult: func(ctx processor.Context[string, processor.NoTable], key string, _ processor.Window, sum int64) error {
			return out.Emit(ctx, key, sum)
		},
	})
	var seen []string
	topology.Input(g, readings, func(ctx processor.Context[string, processor.NoTable], key string, r Reading) error {
		seen = append(seen, fmt.Sprintf("ts %v stream %v", ctx.Timestamp().Sub(t0), ctx.StreamTime().Sub(t0)))
		_, err := win.Add(ctx, func(_ processor.Window, sum int64, _ bool) int64 { return sum + r.Value })
		return err
	})
	d := topotest.New(t, must(topology.New(g)))
	// The records' own timestamps (DefaultTime, in 2000) are ignored.
	for _, r := range []Reading{{t0.Add(10 * time.Second), 1}, {t0.Add(70 * time.Second), 2}, {t0.Add(20 * time.Second), 4}, {t0.Add(130 * time.Second), 8}} {
		feed(t, d, readings, "s1", r)
	}
	var got []string
	for _, w := range topotest.Window(d, g, win, "s1") {
		got = append(got, fmt.Sprintf("%s=%d", span(t0, w.Window), w.Value))
	}
	// The reading at 20s came after stream time reached 1m10s: [0,1m) had
	// closed (no grace), so it is late.
	checkStrings(t, "windows", got, []string{"[0s,1m0s)=1", "[1m0s,2m0s)=2", "[2m0s,3m0s)=8"})
	checkStrings(t, "handler saw", seen, []string{"ts 10s stream 10s", "ts 1m10s stream 1m10s", "ts 20s stream 1m10s", "ts 2m10s stream 2m10s"})
	if d.Late("sensors") != 1 {
		t.Errorf("%d late records, want 1", d.Late("sensors"))
	}
	if st := d.StreamTime("sensors"); !st.Equal(t0.Add(130 * time.Second)) {
		t.Errorf("stream time %v, want the latest extracted time", st)
	}
	var stamps []string
	for _, m := range topotest.Emitted(d, sums) {
		stamps = append(stamps, fmt.Sprintf("%d@%v", m.Value, m.Timestamp.Sub(t0)))
	}
	checkStrings(t, "emitted", stamps, []string{"1@10s", "2@1m10s", "8@2m10s"})
}

func TestWindowValidation(t *testing.T) {
	g := topology.NewStatelessGroup("g", processor.String)
	topology.Input(g, clicks, func(processor.Context[string, processor.NoTable], string, Click) error { return nil })
	cfg := func(w processor.Windows) topology.WindowConfig[string, processor.NoTable, int64] {
		return topology.WindowConfig[string, processor.NoTable, int64]{Windows: w, Values: processor.Int64}
	}
	topology.Windowed(g, "sessions", cfg(processor.Sessions(time.Minute)))
	final := cfg(processor.Tumbling(time.Minute))
	final.Emit = processor.EmitFinal
	topology.Windowed(g, "final", final)
	topology.Windowed(g, "empty", cfg(processor.Tumbling(0)))
	topology.Windowed(g, "hops", cfg(processor.Hopping(time.Minute, 2*time.Minute)))
	topology.Windowed(g, "kept", cfg(processor.Tumbling(time.Minute).WithGrace(time.Hour).WithRetention(time.Minute)))
	noop := func(processor.Context[string, processor.NoTable], string, time.Time) error { return nil }
	topology.Timer(g, "remind", noop)
	topology.Timer(g, "remind", noop)
	topology.Punctuate(g, 0, func(processor.Context[string, processor.NoTable], time.Time) error { return nil })

	_, err := topology.New(g)
	if err == nil {
		t.Fatal("no error")
	}
	checkStrings(t, "errors", strings.Split(err.Error(), "\n"), []string{
		`topology: group "g": windowed table "sessions": session windows need a Merge function for the sessions a record bridges`,
		`topology: group "g": windowed table "final": final results are emitted to OnResult, which is nil`,
		`topology: group "g": windowed table "empty": tumbling windows of size 0s: the size must be positive`,
		`topology: group "g": windowed table "hops": hopping windows of size 1m0s advancing by 2m0s: both must be positive, the advance at most the size`,
		`topology: group "g": windowed table "kept": windows with grace 1h0m0s and retention 1m0s: a window must be kept at least until it closes`,
		`topology: group "g": timer "remind" declared twice`,
		`topology: group "g": punctuation every 0s: needs a callback and a positive period`,
	})
}

func TestWindowsAreUTC(t *testing.T) {
	// The same window must look the same whether it comes from the record
	// that made it or from the state: in UTC, without a monotonic reading.
	zone := time.FixedZone("UTC+2", 2*60*60)
	for _, w := range []processor.Windows{processor.Tumbling(time.Minute), processor.Sessions(time.Minute)} {
		t.Run(w.String(), func(t *testing.T) {
			var got []processor.Window
			g := topology.NewStatelessGroup("g", processor.String)
			win := topology.Windowed(g, "w", topology.WindowConfig[string, processor.NoTable, int64]{
				Windows: w,
				Values:  processor.Int64,
				Merge:   func(a, b int64) int64 { return a + b },
				OnResult: func(_ processor.Context[string, processor.NoTable], _ string, w processor.Window, _ int64) error {
					got = append(got, w)
					return nil
				},
			})
			topology.Input(g, clicks, func(ctx processor.Context[string, processor.NoTable], user string, c Click) error {
				_, err := win.Add(ctx, func(_ processor.Window, n int64, _ bool) int64 { return n + 1 })
				return err
			})
			d := topotest.New(t, must(topology.New(g)))
			feed(t, d, clicks, "alice", Click{}, topotest.At(t0.In(zone)))
			stored := topotest.Window(d, g, win, "alice")
			if len(got) != 1 || len(stored) != 1 || got[0] != stored[0].Window || got[0].Start.Location() != time.UTC {
				t.Errorf("result window %v (%v), stored %v", got, got[0].Start.Location(), stored)
			}
		})
	}
}

func TestWindowCloseBeforeExpiry(t *testing.T) {
	// With retention equal to grace, a window's close and expire timers
	// fall at one time: the close timer must fire first, while the window
	// is still there.
	_, _, topo := windowCounter(processor.Tumbling(time.Minute).WithGrace(time.Minute).WithRetention(time.Minute), processor.EmitFinal)
	d := topotest.New(t, topo)
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0))
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0.Add(time.Second)))
	if err := d.AdvanceStreamTime("counter", t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	checkStrings(t, "results", results(d), []string{"alice [0s,1m0s)=2 @2m0s"})
	if n := len(d.Timers("counter")); n != 0 {
		t.Errorf("%d timers left", n)
	}
}
