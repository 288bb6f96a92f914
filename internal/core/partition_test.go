package core_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/runnel-io/runnel/internal/core"
	"github.com/runnel-io/runnel/processor"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// host records what callbacks ran and what became of them.
type host struct {
	log []string
}

type callback struct {
	processor.RawContext // nil: the tests' callbacks use only what is below
	h                    *host
	pt                   **core.Partition
	t                    processor.RawTimer
}

func (c *callback) StreamTime() time.Time { return (*c.pt).StreamTime() }
func (c *callback) RemoveTimer(t processor.RawTimer) error {
	c.h.log = append(c.h.log, "remove "+t.Name)
	return nil
}
func (c *callback) Done(v core.Verdict) { c.h.log = append(c.h.log, fmt.Sprintf("done %d", v)) }

type hostOf struct {
	h  *host
	pt *core.Partition
}

func (h *hostOf) Callback(t processor.RawTimer) (core.Callback, error) {
	return &callback{h: h.h, pt: &h.pt, t: t}, nil
}

func newPartition(g *core.Group, c *clock, timers ...processor.RawTimer) (*core.Partition, *host) {
	h := &host{}
	ho := &hostOf{h: h}
	ho.pt = core.NewPartition(g, 0, ho, c, time.Time{}, timers)
	return ho.pt, h
}

// A punctuation the driver fell behind on runs once, for the latest
// boundary passed, and next at the following boundary of its grid.
func TestPunctuationFallenBehindRunsOnce(t *testing.T) {
	var runs []time.Duration
	g := &core.Group{Name: "g", Punctuations: []core.Punctuation{{Every: time.Minute, Handler: func(_ processor.RawContext, tm processor.RawTimer) error {
		runs = append(runs, tm.At.Sub(t0))
		return nil
	}}}}
	c := &clock{now: t0}
	pt, _ := newPartition(g, c)
	step := func() {
		for {
			ran, err := pt.WallClockStep()
			if err != nil {
				t.Fatal(err)
			}
			if !ran {
				return
			}
		}
	}
	c.now = t0.Add(59 * time.Second)
	step()
	c.now = t0.Add(4*time.Minute + 30*time.Second) // four boundaries passed
	step()
	if next, _ := pt.NextWallClock(); !next.Equal(t0.Add(5 * time.Minute)) {
		t.Errorf("next boundary %v, want 5m on the grid", next.Sub(t0))
	}
	c.now = t0.Add(5 * time.Minute)
	step()
	if want := []time.Duration{4 * time.Minute, 5 * time.Minute}; !slices.Equal(runs, want) {
		t.Errorf("runs at %v, want %v", runs, want)
	}
}

// Inside a wall-clock timer's callback, stream time is the records', not
// the timer's time; and the callback does not move it.
func TestWallClockCallbackSeesStreamTime(t *testing.T) {
	var seen time.Time
	g := &core.Group{Name: "g", Timers: map[string]processor.RawTimerHandler{
		"w": func(rc processor.RawContext, _ processor.RawTimer) error { seen = rc.StreamTime(); return nil },
	}}
	c := &clock{now: t0.Add(time.Hour)}
	pt, _ := newPartition(g, c)
	pt.Observe(t0, false)
	pt.Observe(t0.Add(time.Hour), true) // a loop record: no move
	if got := pt.StreamTimeOf(t0.Add(time.Second), false); !got.Equal(t0.Add(time.Second)) {
		t.Errorf("a record sees %v", got)
	}
	if _, err := pt.SetTimer(processor.RawTimer{Name: "w", Kind: processor.WallClock, At: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if ran, err := pt.WallClockStep(); !ran || err != nil {
		t.Fatalf("step: %v, %v", ran, err)
	}
	if !seen.Equal(t0) || !pt.StreamTime().Equal(t0) {
		t.Errorf("callback saw stream time %v, after it %v; want %v", seen, pt.StreamTime(), t0)
	}
}

// A timer must name a declared callback; one read back from the store whose
// callback is gone is dropped when due, its removal written.
func TestTimerWithNoCallback(t *testing.T) {
	g := &core.Group{Name: "g", Timers: map[string]processor.RawTimerHandler{}}
	gone := processor.RawTimer{Name: "gone", Kind: processor.StreamTime, At: t0}
	pt, h := newPartition(g, &clock{now: t0}, gone)
	if _, err := pt.SetTimer(processor.RawTimer{Name: "nope", At: t0}); err == nil {
		t.Error("a timer of no callback was set")
	}
	if err := pt.AdvanceStreamTime(t0); err != nil {
		t.Fatal(err)
	}
	if want := []string{"remove gone", fmt.Sprintf("done %d", core.Drop)}; !slices.Equal(h.log, want) {
		t.Errorf("log %q, want %q", h.log, want)
	}
	if len(pt.Timers()) != 0 {
		t.Errorf("timers left: %v", pt.Timers())
	}
}

// Timers fire in order of time, name, key; a callback may set its timer
// again; a failed one is skipped by a skip policy, its removal kept.
func TestStreamTimersOrderAndPolicy(t *testing.T) {
	var fired []string
	boom := errors.New("boom")
	var pt *core.Partition
	g := &core.Group{Name: "g", Policy: processor.Skip(), Timers: map[string]processor.RawTimerHandler{}}
	for _, name := range []string{"a", "b"} {
		g.Timers[name] = func(_ processor.RawContext, tm processor.RawTimer) error {
			fired = append(fired, fmt.Sprintf("%s/%s@%v", tm.Name, tm.Key, tm.At.Sub(t0)))
			if tm.Name == "b" && string(tm.Key) == "x" && tm.At.Equal(t0) {
				pt.SetTimer(processor.RawTimer{Name: "b", At: t0.Add(time.Second), Key: []byte("x")})
				return boom
			}
			return nil
		}
	}
	pt, h := newPartition(g, &clock{now: t0})
	for _, tm := range []processor.RawTimer{
		{Name: "b", At: t0, Key: []byte("y")}, {Name: "b", At: t0, Key: []byte("x")},
		{Name: "a", At: t0.Add(time.Second), Key: []byte("x")}, {Name: "a", At: t0, Key: []byte("z")},
	} {
		if _, err := pt.SetTimer(tm); err != nil {
			t.Fatal(err)
		}
	}
	if err := pt.AdvanceStreamTime(t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	want := []string{"a/z@0s", "b/x@0s", "b/y@0s", "a/x@1s", "b/x@1s"}
	if !slices.Equal(fired, want) {
		t.Errorf("fired %q, want %q", fired, want)
	}
	if h.log[3] != fmt.Sprintf("done %d", core.Skip) {
		t.Errorf("the failed timer: %q", h.log[2:4])
	}
}

func TestDecide(t *testing.T) {
	fatal := errors.New("store down")
	bad := errors.New("bad record")
	rec := core.Source{Topic: "in", Partition: 2, Offset: 7}
	cb := core.Source{Partition: 2, Offset: -1}
	for _, tc := range []struct {
		policy processor.Policy
		err    error
		src    core.Source
		want   core.Verdict
		stop   bool
	}{
		{processor.Stop(), nil, rec, core.Keep, false},
		{processor.Stop(), bad, rec, core.Skip, true},
		{processor.Skip(), bad, rec, core.Skip, false},
		{processor.Skip(), fatal, rec, core.Skip, true},
		{processor.DeadLetter("dlq"), bad, rec, core.DeadLetter, false},
		{processor.DeadLetter("dlq"), bad, cb, core.Skip, false},
	} {
		g := &core.Group{Name: "g", Policy: tc.policy, Fatal: func(err error) bool { return errors.Is(err, fatal) }}
		v, re, err := g.Decide(tc.err, tc.src)
		if v != tc.want || (err != nil) != tc.stop {
			t.Errorf("%v, %v: verdict %d, stop %v; want %d, %v", tc.policy, tc.err, v, err, tc.want, tc.stop)
		}
		if tc.err == bad && (re == nil || re.Offset != tc.src.Offset || re.Topic != tc.src.Topic || !errors.Is(re, bad)) {
			t.Errorf("%v: record error %#v", tc.policy, re)
		}
	}
}
