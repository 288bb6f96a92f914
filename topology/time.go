package topology

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/runnel-io/runnel/processor"
)

// StateTopic returns the changelog of group's internal state, where its
// windowed tables and timers live: "<group>-state". It is compacted and has
// as many partitions as the group's inputs. It exists only for groups that
// declare windowed tables or timers.
func StateTopic(group string) string { return group + "-state" }

// timerDecl is a declared timer callback, bound to the group's scope by New.
type timerDecl[V any] struct {
	name string
	bind func(processor.Scope[V]) processor.RawTimerHandler
}

// punctuationDecl is a declared periodic callback.
type punctuationDecl[V any] struct {
	every time.Duration
	bind  func(processor.Scope[V]) processor.RawTimerHandler
}

// windowDecl is what Describe shows of a windowed table.
type windowDecl struct {
	name    string
	windows processor.Windows
	mode    processor.EmitMode
	values  any
}

// Timer declares a timer callback of g called name and returns the handle
// with which g's handlers set timers for their record's key. Timers are
// kept in the group's state ([StateTopic]): they survive restarts and move
// with their partition.
func Timer[K, V any](g *Group[K, V], name string, h processor.TimerHandler[K, V]) processor.Timer[K, V] {
	g.must("Timer")
	switch {
	case h == nil:
		g.errs = append(g.errs, fmt.Errorf("timer %q: nil callback", name))
	case name == "" || strings.Contains(name, "/"):
		g.errs = append(g.errs, fmt.Errorf("timer %q: a timer's name must be non-empty and have no '/'", name))
	}
	g.addTimer(name, h)
	return processor.NewTimer[K, V](name)
}

func (g *Group[K, V]) addTimer(name string, h processor.TimerHandler[K, V]) {
	for _, t := range g.timers {
		if t.name == name {
			g.errs = append(g.errs, fmt.Errorf("timer %q declared twice", name))
			return
		}
	}
	keys := g.keys
	d := timerDecl[V]{name: name}
	if h != nil && keys != nil {
		d.bind = func(s processor.Scope[V]) processor.RawTimerHandler {
			return processor.AdaptTimer(s, keys, h)
		}
	}
	g.timers = append(g.timers, d)
}

// Punctuate declares a wall-clock callback that runs every period for each
// partition g owns, with a keyless Context: use it for periodic work over
// the partition's table ([processor.Context.Rows]). Punctuations are not
// persisted: after a restart the first one comes a period after the
// partition is assigned.
func Punctuate[K, V any](g *Group[K, V], every time.Duration, h processor.PunctuationHandler[K, V]) {
	g.must("Punctuate")
	if h == nil || every <= 0 {
		g.errs = append(g.errs, fmt.Errorf("punctuation every %v: needs a callback and a positive period", every))
		return
	}
	keys := g.keys
	g.punctuations = append(g.punctuations, punctuationDecl[V]{every: every, bind: func(s processor.Scope[V]) processor.RawTimerHandler {
		return processor.AdaptPunctuation(s, keys, h)
	}})
}

// WindowConfig describes a windowed table of aggregates of type A.
type WindowConfig[K, V, A any] struct {
	// Windows are the table's windows, grace period and retention.
	Windows processor.Windows
	// Values is the codec of the aggregates.
	Values processor.Codec[A]
	// Merge combines the aggregates of two sessions that a record bridges.
	// Session windows need it; other windows ignore it.
	Merge func(a, b A) A
	// Emit says when OnResult gets results: every update (the default) or
	// each window's final result when it closes.
	Emit processor.EmitMode
	// OnResult receives the results, optional. It can emit them, alert on
	// them or write them to the group table.
	OnResult processor.WindowHandler[K, V, A]
}

// Windowed declares a windowed table of g called name: aggregates per key
// and window, kept in the group's state ([StateTopic]), changelogged and
// restored with it. Handlers update it through the returned handle.
func Windowed[K, V, A any](g *Group[K, V], name string, cfg WindowConfig[K, V, A]) processor.Windowed[K, V, A] {
	g.must("Windowed")
	var errs []error
	if name == "" || strings.Contains(name, "/") {
		errs = append(errs, errors.New("a windowed table's name must be non-empty and have no '/'"))
	}
	if err := cfg.Windows.Check(); err != nil {
		errs = append(errs, err)
	}
	if cfg.Values == nil {
		errs = append(errs, errors.New("missing aggregate codec"))
	}
	if cfg.Windows.Kind == processor.SessionWindows && cfg.Merge == nil {
		errs = append(errs, errors.New("session windows need a Merge function for the sessions a record bridges"))
	}
	if cfg.Emit == processor.EmitFinal && cfg.OnResult == nil {
		errs = append(errs, errors.New("final results are emitted to OnResult, which is nil"))
	}
	for _, err := range errs {
		g.errs = append(g.errs, fmt.Errorf("windowed table %q: %w", name, err))
	}
	for _, w := range g.windows {
		if w.name == name {
			g.errs = append(g.errs, fmt.Errorf("windowed table %q declared twice", name))
		}
	}
	d := windowDecl{name: name, windows: cfg.Windows, mode: cfg.Emit}
	if cfg.Values != nil {
		d.values = cfg.Values
	}
	g.windows = append(g.windows, d)
	w := processor.NewWindowed(name, cfg.Windows, cfg.Values, cfg.Merge, cfg.Emit, cfg.OnResult)
	if cfg.Emit == processor.EmitFinal && cfg.OnResult != nil {
		g.addTimer(processor.CloseTimer(name), w.CloseHandler())
	}
	g.addTimer(processor.ExpireTimer(name), w.ExpireHandler())
	return w
}

// WithTimestamps returns t whose records' event time is what extract
// returns, instead of the records' timestamps, when t is an input. Stream
// time, windows and the timestamps of what handlers write follow it.
func (t Topic[K, V]) WithTimestamps(extract processor.TimestampExtractor[K, V]) Topic[K, V] {
	t.extract = extract
	return t
}
