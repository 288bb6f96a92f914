package processor

import (
	"fmt"
	"runtime/debug"
	"slices"
	"time"
)

// TimeKind says which clock a timer follows.
type TimeKind uint8

const (
	// StreamTime timers fire when the partition's stream time (the largest
	// event time it has processed, loop records aside) reaches their time:
	// they follow the data, so replaying old records fires them as they
	// first fired.
	StreamTime TimeKind = iota
	// WallClock timers fire when the runtime's clock reaches their time,
	// whether records arrive or not.
	WallClock
)

// String returns "stream-time" or "wall-clock".
func (k TimeKind) String() string {
	if k == WallClock {
		return "wall-clock"
	}
	return "stream-time"
}

// RawTimer is a timer as a runtime keeps it: the name of the group's timer
// callback, its clock, its time and the key it fires for. All four identify
// it.
type RawTimer struct {
	Name string
	Kind TimeKind
	At   time.Time
	Key  []byte
}

// RawTimerHandler is a timer or punctuation callback on bytes. The runtime
// calls it with a RawContext whose Timestamp is the timer's time, whose
// Offset is -1 and whose Topic is "", for the timer's key (nil for a
// punctuation). Its errors are *[RecordError]s, like a RawHandler's.
type RawTimerHandler func(rc RawContext, t RawTimer) error

// TimerHandler is a typed timer callback: it runs for key at the time it
// was set for, with the same Context as a handler (the row of key, emits,
// loopbacks, joins, lookups and other timers). Its writes are made only if
// it succeeds.
type TimerHandler[K, V any] func(ctx Context[K, V], key K, at time.Time) error

// PunctuationHandler is a periodic wall-clock callback of a partition. Its
// Context has no key: Value, SetValue and Delete fail, but Rows visits the
// whole partition's table, and emits work.
type PunctuationHandler[K, V any] func(ctx Context[K, V], now time.Time) error

// Timer is a typed handle on one of a group's timer callbacks. Get one from
// topology.Timer; it sets timers only in that group's handlers and
// callbacks.
type Timer[K, V any] struct {
	name string
}

// NewTimer returns a handle on the timer callback called name. It is meant
// for package topology.
func NewTimer[K, V any](name string) Timer[K, V] { return Timer[K, V]{name: name} }

// Name returns the name of the timer callback.
func (t Timer[K, V]) Name() string { return t.name }

// At sets a stream-time timer for the key of ctx at time at: the callback
// runs once the partition's stream time reaches at. A timer at or before
// the current stream time fires right after the current record.
func (t Timer[K, V]) At(ctx Context[K, V], at time.Time) error {
	return t.set(ctx, StreamTime, at, true)
}

// AtWallClock sets a wall-clock timer for the key of ctx at time at.
func (t Timer[K, V]) AtWallClock(ctx Context[K, V], at time.Time) error {
	return t.set(ctx, WallClock, at, true)
}

// Cancel removes the timer of the key of ctx set for kind and at, if any.
func (t Timer[K, V]) Cancel(ctx Context[K, V], kind TimeKind, at time.Time) error {
	return t.set(ctx, kind, at, false)
}

func (t Timer[K, V]) set(ctx Context[K, V], kind TimeKind, at time.Time, add bool) error {
	c := &ctx.c.core
	if err := c.check(); err != nil {
		return err
	}
	if !slices.Contains(c.scope.timers, t.name) {
		return c.fail(fmt.Errorf("timer %q: not a timer of group %q", t.name, c.scope.group))
	}
	if c.keyless {
		return c.fail(fmt.Errorf("timer %q: a punctuation has no key to set a timer for", t.name))
	}
	c.timer(RawTimer{Name: t.name, Kind: kind, At: at, Key: c.key}, add)
	return nil
}

// AdaptTimer returns the RawTimerHandler that runs h for timers whose keys
// decode with keys, in the group described by s.
func AdaptTimer[K, V any](s Scope[V], keys Codec[K], h TimerHandler[K, V]) RawTimerHandler {
	sc := newScope(s)
	return func(rc RawContext, t RawTimer) (err error) {
		return runCallback(rc, sc, keys, s.Table, t.Key, false, func(x *call[K, V]) error {
			k, err := keys.Decode(t.Key)
			if err != nil {
				return fmt.Errorf("%w timer key: %w", ErrDecode, err)
			}
			x.key = k
			return h(Context[K, V]{x}, k, t.At)
		})
	}
}

// AdaptPunctuation returns the RawTimerHandler that runs h, in the group
// described by s whose keys use the codec keys.
func AdaptPunctuation[K, V any](s Scope[V], keys Codec[K], h PunctuationHandler[K, V]) RawTimerHandler {
	sc := newScope(s)
	return func(rc RawContext, t RawTimer) error {
		return runCallback(rc, sc, keys, s.Table, nil, true, func(x *call[K, V]) error {
			return h(Context[K, V]{x}, t.At)
		})
	}
}

// runCallback runs a timer or punctuation body like Adapt runs a handler:
// panics become errors, writes are made only on success, and failures are
// RecordErrors naming the group.
func runCallback[K, V any](rc RawContext, sc *scope, keys Codec[K], table Codec[V], key []byte, keyless bool, body func(x *call[K, V]) error) (err error) {
	fail := func(cause error) error {
		return &RecordError{Group: sc.group, Topic: rc.Topic(), Partition: rc.Partition(), Offset: rc.Offset(), Err: cause}
	}
	defer func() {
		if r := recover(); r != nil {
			err = fail(fmt.Errorf("%w: %v\n%s", ErrPanic, r, debug.Stack()))
		}
	}()
	x := &call[K, V]{core: core{rc: rc, scope: sc, key: key, keyless: keyless}, keys: keys, table: table}
	herr := func() error {
		defer func() { x.done = true }()
		return body(x)
	}()
	if err := x.result(herr); err != nil {
		return fail(err)
	}
	if err := x.flush(); err != nil {
		return fail(err)
	}
	return nil
}
