package topotest_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/topology"
	"github.com/runnel-io/runnel/topology/topotest"
)

// reminders counts clicks per user and, a minute of stream time after each
// click, alerts with the count. A click on "/cancel" cancels the timer set
// by carol's first click; one on "/follow" sets a follow-up timer instead,
// which sets the count to 100. The remind callback of alice sets a
// follow-up timer for its own time.
func reminders(seen *[]string) (*topology.Group[string, int64], *topology.Topology) {
	g := topology.NewGroup("reminders", processor.String, processor.Int64)
	out := topology.Output(g, alerts)
	var follow processor.Timer[string, int64]
	remind := topology.Timer(g, "remind", func(ctx processor.Context[string, int64], user string, at time.Time) error {
		n, _ := ctx.Value()
		*seen = append(*seen, fmt.Sprintf("remind %s at %v: row %d, stream %v, ts %v, topic %q, offset %d",
			user, at.Sub(t0), n, ctx.StreamTime().Sub(t0), ctx.Timestamp().Sub(t0), ctx.Topic(), ctx.Offset()))
		if user == "alice" {
			if err := follow.At(ctx, at); err != nil {
				return err
			}
		}
		return out.Emit(ctx, user, Alert{User: user, Clicks: n})
	})
	follow = topology.Timer(g, "follow", func(ctx processor.Context[string, int64], user string, at time.Time) error {
		*seen = append(*seen, fmt.Sprintf("follow %s at %v", user, at.Sub(t0)))
		return ctx.SetValue(100)
	})
	topology.Input(g, clicks, func(ctx processor.Context[string, int64], user string, c Click) error {
		n, _ := ctx.Value()
		if err := ctx.SetValue(n + 1); err != nil {
			return err
		}
		switch c.URL {
		case "/cancel":
			return remind.Cancel(ctx, processor.StreamTime, t0.Add(90*time.Second))
		case "/follow":
			return follow.At(ctx, ctx.Timestamp().Add(time.Minute))
		}
		return remind.At(ctx, ctx.Timestamp().Add(time.Minute))
	})
	return g, must(topology.New(g))
}

func TestStreamTimeTimers(t *testing.T) {
	var seen []string
	g, topo := reminders(&seen)
	d := topotest.New(t, topo)
	feed(t, d, clicks, "bob", Click{}, topotest.At(t0))
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0))
	// The same timer again: it exists, so nothing changes.
	feed(t, d, clicks, "alice", Click{}, topotest.At(t0))
	feed(t, d, clicks, "carol", Click{}, topotest.At(t0.Add(30*time.Second)))
	feed(t, d, clicks, "zoe", Click{URL: "/follow"}, topotest.At(t0))
	checkStrings(t, "timers", timers(d, "reminders"), []string{"follow zoe @1m0s", "remind alice @1m0s", "remind bob @1m0s", "remind carol @1m30s"})
	feed(t, d, clicks, "carol", Click{URL: "/cancel"}, topotest.At(t0.Add(40*time.Second)))
	checkStrings(t, "timers after the cancel", timers(d, "reminders"), []string{"follow zoe @1m0s", "remind alice @1m0s", "remind bob @1m0s"})
	if len(seen) != 0 {
		t.Fatalf("timers fired before their time: %q", seen)
	}

	// dave's click moves stream time to 1m: the timers due fire after
	// dave's record, in order of name, then key; alice's follow-up, due at
	// once, fires in the same pass, before bob's remind (by name).
	feed(t, d, clicks, "dave", Click{}, topotest.At(t0.Add(time.Minute)))
	checkStrings(t, "callbacks", seen, []string{
		`follow zoe at 1m0s`,
		`remind alice at 1m0s: row 2, stream 1m0s, ts 1m0s, topic "", offset -1`,
		`follow alice at 1m0s`,
		`remind bob at 1m0s: row 1, stream 1m0s, ts 1m0s, topic "", offset -1`,
	})
	if n, _ := topotest.Get(d, g, "alice"); n != 100 {
		t.Errorf("alice's row %d, want the follow-up's 100", n)
	}
	checkStrings(t, "timers left", timers(d, "reminders"), []string{"remind dave @2m0s"})

	seen = nil
	if err := d.AdvanceStreamTime("reminders", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	checkStrings(t, "callbacks after advancing", seen, []string{`remind dave at 2m0s: row 1, stream 1h0m0s, ts 2m0s, topic "", offset -1`})
	var got []string
	for _, m := range topotest.Emitted(d, alerts) {
		got = append(got, fmt.Sprintf("%s %d @%v", m.Key, m.Value.Clicks, m.Timestamp.Sub(t0)))
	}
	// The callbacks' emits carry the timers' times.
	checkStrings(t, "alerts", got, []string{"alice 2 @1m0s", "bob 1 @1m0s", "dave 1 @2m0s"})
	if len(d.Timers("reminders")) != 0 {
		t.Errorf("timers left: %v", timers(d, "reminders"))
	}
	// A timer for a time already passed fires right after its record.
	seen = nil
	feed(t, d, clicks, "erin", Click{}, topotest.At(t0))
	checkStrings(t, "callbacks of a past timer", seen, []string{`remind erin at 1m0s: row 1, stream 1h0m0s, ts 1m0s, topic "", offset -1`})
}

func TestStreamTimeIsPerGroupAndMonotonic(t *testing.T) {
	var seen []string
	g := topology.NewStatelessGroup("watcher", processor.String)
	topology.Input(g, clicks, func(ctx processor.Context[string, processor.NoTable], user string, c Click) error {
		seen = append(seen, fmt.Sprintf("%s ts %v stream %v", user, ctx.Timestamp().Sub(t0), ctx.StreamTime().Sub(t0)))
		if c.URL == "/bad" {
			return errors.New("bad click")
		}
		return nil
	})
	g.OnError(processor.Skip())
	other := topology.NewStatelessGroup("other", processor.String)
	topology.Input(other, orders, func(processor.Context[string, processor.NoTable], string, Order) error { return nil })
	d := topotest.New(t, must(topology.New(g, other)))
	if !d.StreamTime("watcher").IsZero() {
		t.Errorf("stream time %v before any record", d.StreamTime("watcher"))
	}
	feed(t, d, clicks, "a", Click{}, topotest.At(t0.Add(5*time.Minute)))
	feed(t, d, clicks, "b", Click{}, topotest.At(t0.Add(time.Minute)))
	// A failed record counts too: it was read.
	feed(t, d, clicks, "c", Click{URL: "/bad"}, topotest.At(t0.Add(7*time.Minute)))
	feed(t, d, clicks, "d", Click{}, topotest.At(t0.Add(6*time.Minute)))
	checkStrings(t, "handler saw", seen, []string{"a ts 5m0s stream 5m0s", "b ts 1m0s stream 5m0s", "c ts 7m0s stream 7m0s", "d ts 6m0s stream 7m0s"})
	if got := d.StreamTime("watcher"); !got.Equal(t0.Add(7 * time.Minute)) {
		t.Errorf("stream time %v", got)
	}
	if got := d.StreamTime("other"); !got.IsZero() {
		t.Errorf("the other group's stream time moved to %v", got)
	}
}

func TestWallClockTimers(t *testing.T) {
	start := topotest.DefaultTime()
	var seen []string
	calls := 0
	g := topology.NewStatelessGroup("pinger", processor.String)
	var ping processor.Timer[string, processor.NoTable]
	ping = topology.Timer(g, "ping", func(ctx processor.Context[string, processor.NoTable], user string, at time.Time) error {
		seen = append(seen, fmt.Sprintf("%s at %v clock %v stream %v", user, at.Sub(start), ctx.WallClock().Sub(start), ctx.StreamTime().Sub(start)))
		calls++
		if calls == 1 {
			// Due within the same advance: it fires in it.
			return ping.AtWallClock(ctx, ctx.WallClock().Add(10*time.Second))
		}
		return nil
	})
	topology.Input(g, clicks, func(ctx processor.Context[string, processor.NoTable], user string, c Click) error {
		return ping.AtWallClock(ctx, ctx.WallClock().Add(10*time.Second))
	})
	d := topotest.New(t, must(topology.New(g)))
	if !d.WallClock().Equal(start) {
		t.Errorf("clock starts at %v", d.WallClock())
	}
	feed(t, d, clicks, "alice", Click{}) // at DefaultTime
	if err := d.AdvanceWallClock(9 * time.Second); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 0 {
		t.Fatalf("fired early: %q", seen)
	}
	ts := d.Timers("pinger")
	if len(ts) != 1 || ts[0].Kind != processor.WallClock || !ts[0].At.Equal(start.Add(10*time.Second)) || string(ts[0].Key) != "alice" {
		t.Errorf("pending timers %+v", ts)
	}
	if err := d.AdvanceWallClock(time.Minute); err != nil {
		t.Fatal(err)
	}
	// The clock is at each timer's time while it fires; stream time is
	// the records', behind it.
	checkStrings(t, "callbacks", seen, []string{"alice at 10s clock 10s stream 0s", "alice at 20s clock 20s stream 0s"})
	if got := d.WallClock(); !got.Equal(start.Add(69 * time.Second)) {
		t.Errorf("clock %v after the advances", got)
	}

	// Stream time does not fire wall-clock timers.
	seen = nil
	feed(t, d, clicks, "bob", Click{})
	if err := d.AdvanceStreamTime("pinger", start.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 0 {
		t.Fatalf("stream time fired %q", seen)
	}
	if err := d.AdvanceWallClock(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	checkStrings(t, "callbacks", seen, []string{"bob at 1m19s clock 1m19s stream 24h0m0s"})
	if len(d.Timers("pinger")) != 0 {
		t.Errorf("timers left: %+v", d.Timers("pinger"))
	}
	if err := d.AdvanceWallClock(-time.Second); err == nil {
		t.Error("the clock went back")
	}
}

func TestPunctuation(t *testing.T) {
	summaries := topology.NewTopic("summaries", processor.String, processor.String)
	g := topology.NewGroup("users", processor.String, processor.Int64)
	out := topology.Output(g, summaries)
	topology.Input(g, clicks, func(ctx processor.Context[string, int64], user string, c Click) error {
		n, _ := ctx.Value()
		return ctx.SetValue(n + 1)
	})
	var calls []string
	topology.Punctuate(g, time.Minute, func(ctx processor.Context[string, int64], now time.Time) error {
		calls = append(calls, fmt.Sprintf("now %v ts %v clock %v", now.Sub(topotest.DefaultTime()), ctx.Timestamp().Sub(topotest.DefaultTime()), ctx.WallClock().Sub(topotest.DefaultTime())))
		var rows []string
		if err := ctx.Rows(func(user string, n int64) error {
			rows = append(rows, fmt.Sprintf("%s=%d", user, n))
			return nil
		}); err != nil {
			return err
		}
		return out.Emit(ctx, "summary", strings.Join(rows, ","))
	})
	d := topotest.New(t, must(topology.New(g)))
	for _, user := range []string{"carol", "alice", "bob", "alice"} {
		feed(t, d, clicks, user, Click{})
	}
	if err := d.AdvanceWallClock(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 0 {
		t.Fatalf("punctuation before its period: %q", calls)
	}
	// Two boundaries crossed: two runs.
	if err := d.AdvanceWallClock(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	feed(t, d, clicks, "dave", Click{})
	// A boundary reached exactly counts.
	if err := d.AdvanceWallClock(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	checkStrings(t, "calls", calls, []string{"now 1m0s ts 1m0s clock 1m0s", "now 2m0s ts 2m0s clock 2m0s", "now 3m0s ts 3m0s clock 3m0s"})
	var got []string
	for _, m := range topotest.Emitted(d, summaries) {
		got = append(got, fmt.Sprintf("%s @%v", m.Value, m.Timestamp.Sub(topotest.DefaultTime())))
	}
	// Rows visits every row, in key order.
	checkStrings(t, "summaries", got, []string{
		"alice=2,bob=1,carol=1 @1m0s",
		"alice=2,bob=1,carol=1 @2m0s",
		"alice=2,bob=1,carol=1,dave=1 @3m0s",
	})
}

func TestPunctuationHasNoKey(t *testing.T) {
	g := topology.NewGroup("users", processor.String, processor.Int64)
	topology.Input(g, clicks, func(processor.Context[string, int64], string, Click) error { return nil })
	topology.Punctuate(g, time.Minute, func(ctx processor.Context[string, int64], now time.Time) error {
		return ctx.SetValue(1)
	})
	d := topotest.New(t, must(topology.New(g)))
	err := d.AdvanceWallClock(time.Minute)
	if err == nil || !strings.Contains(err.Error(), "a punctuation has no key") {
		t.Errorf("SetValue in a punctuation: %v", err)
	}
}

// failingTimers returns a group whose handler sets a timer for its
// record's key at the record's time, whose callback writes the row, emits
// and then fails for "bad".
func failingTimers(p processor.Policy) (*topology.Group[string, int64], *topology.Topology) {
	g := topology.NewGroup("g", processor.String, processor.Int64)
	out := topology.Output(g, alerts)
	fire := topology.Timer(g, "fire", func(ctx processor.Context[string, int64], user string, at time.Time) error {
		if err := ctx.SetValue(1); err != nil {
			return err
		}
		if err := out.Emit(ctx, user, Alert{User: user}); err != nil {
			return err
		}
		if user == "bad" {
			return errors.New("boom")
		}
		return nil
	})
	topology.Input(g, clicks, func(ctx processor.Context[string, int64], user string, c Click) error {
		return fire.At(ctx, ctx.Timestamp())
	})
	g.OnError(p)
	return g, must(topology.New(g))
}

func TestTimerErrorStops(t *testing.T) {
	g, topo := failingTimers(processor.Stop())
	d := topotest.New(t, topo)
	feed(t, d, clicks, "good", Click{}, topotest.At(t0))
	err := topotest.Feed(d, clicks, "bad", Click{}, topotest.At(t0))
	want := `processor: group "g": topic "" partition 0 offset -1: boom`
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}
	var re *processor.RecordError
	if !errors.As(err, &re) || re.Offset != -1 || re.Group != "g" {
		t.Errorf("error %#v", err)
	}
	if _, ok := topotest.Get(d, g, "bad"); ok {
		t.Error("the failed callback's write was made")
	}
	if n := len(topotest.Emitted(d, alerts)); n != 1 {
		t.Errorf("%d alerts, want good's only", n)
	}
	if err := d.AdvanceStreamTime("g", t0.Add(time.Hour)); err == nil || !strings.HasPrefix(err.Error(), "topotest: driver stopped by an earlier failure: "+want) {
		t.Errorf("advance after stop: %v", err)
	}
	if err := d.AdvanceWallClock(time.Hour); err == nil {
		t.Error("the wall clock advanced after stop")
	}
}

func TestTimerErrorSkipped(t *testing.T) {
	for _, p := range []processor.Policy{processor.Skip(), processor.DeadLetter("clicks-dlq")} {
		t.Run(p.String(), func(t *testing.T) {
			g, topo := failingTimers(p)
			d := topotest.New(t, topo)
			feed(t, d, clicks, "bad", Click{}, topotest.At(t0))
			feed(t, d, clicks, "good", Click{}, topotest.At(t0))
			if n := d.Skipped("g"); n != 1 {
				t.Errorf("skipped %d, want 1", n)
			}
			if _, ok := topotest.Get(d, g, "bad"); ok {
				t.Error("the failed callback's write was made")
			}
			if n, _ := topotest.Get(d, g, "good"); n != 1 {
				t.Errorf("good's row %d: the next timer did not fire", n)
			}
			if got := topotest.Emitted(d, alerts); len(got) != 1 || got[0].Key != "good" {
				t.Errorf("alerts %+v, want good's only", got)
			}
			// There is no record to send to the dead-letter topic.
			if n := len(d.Records("clicks-dlq")); n != 0 {
				t.Errorf("%d dead letters", n)
			}
			if len(d.Timers("g")) != 0 {
				t.Errorf("a failed timer is pending again: %v", d.Timers("g"))
			}
		})
	}
}

func TestEndlessTimers(t *testing.T) {
	g := topology.NewStatelessGroup("spin", processor.String)
	var again processor.Timer[string, processor.NoTable]
	// Each callback sets a timer a nanosecond before its own: always due.
	again = topology.Timer(g, "again", func(ctx processor.Context[string, processor.NoTable], key string, at time.Time) error {
		return again.At(ctx, at.Add(-time.Nanosecond))
	})
	topology.Input(g, clicks, func(ctx processor.Context[string, processor.NoTable], key string, c Click) error {
		return again.At(ctx, ctx.Timestamp())
	})
	d := topotest.New(t, must(topology.New(g)))
	err := topotest.Feed(d, clicks, "alice", Click{})
	if err == nil || !strings.Contains(err.Error(), "does a loop never end?") {
		t.Errorf("error %v", err)
	}
}
