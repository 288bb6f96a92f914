package core

import (
	"errors"
	"log/slog"
	"time"

	"github.com/runnel-io/runnel/processor"
)

// Punctuation is a periodic wall-clock callback of a group.
type Punctuation struct {
	Every   time.Duration
	Handler processor.RawTimerHandler
}

// Group is what the core needs to know of a group: its name, policy and
// callbacks. A driver fills it from the group's topology spec.
type Group struct {
	Name         string
	Policy       processor.Policy
	Timers       map[string]processor.RawTimerHandler // by name
	Punctuations []Punctuation
	// Fatal, if not nil, tells the driver's own errors (a store or a
	// produce failing, the instance stopping) from those of bad records:
	// they stop the instance whatever the policy.
	Fatal func(error) bool
	// Logger logs skipped callbacks and dropped timers; nil discards.
	Logger *slog.Logger
}

// Verdict is what a group's policy makes of a record's or callback's result.
type Verdict uint8

const (
	// Keep: it succeeded, its writes are made.
	Keep Verdict = iota
	// Skip: it failed and is dropped, counted as skipped.
	Skip
	// DeadLetter: it failed, and its input record goes to the policy's
	// dead-letter topic.
	DeadLetter
	// Drop: a timer whose callback the group no longer has was removed;
	// nothing else is written or counted.
	Drop
)

// Source names what a result is of: a record (topic, partition, offset) or,
// with Topic "", a timer or punctuation callback of a partition.
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Decide applies the group's policy to err, the result of a record's
// handler or of a callback. It returns the verdict, the failure as a
// *processor.RecordError naming its source (nil for Keep), and a non-nil
// error only when the instance must stop: the group's policy is to stop, or
// err is the driver's own.
func (g *Group) Decide(err error, src Source) (Verdict, *processor.RecordError, error) {
	if err == nil {
		return Keep, nil, nil
	}
	if g.Fatal != nil && g.Fatal(err) {
		return Skip, nil, err
	}
	var re *processor.RecordError
	if !errors.As(err, &re) {
		re = &processor.RecordError{Group: g.Name, Topic: src.Topic, Partition: src.Partition, Offset: src.Offset, Err: err}
		err = re
	}
	switch g.Policy.Kind() {
	case processor.PolicySkip:
		g.logger().Warn("skipped a record that failed", "group", g.Name, "err", re)
		return Skip, re, nil
	case processor.PolicyDeadLetter:
		if src.Topic == "" {
			g.logger().Warn("skipped a timer that failed; it has no record for the dead-letter topic", "group", g.Name, "err", re)
			return Skip, re, nil
		}
		return DeadLetter, re, nil
	default:
		return Skip, re, err
	}
}

func (g *Group) logger() *slog.Logger {
	if g.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return g.Logger
}
