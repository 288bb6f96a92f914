package processor

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Header is a record header. Kafka allows several headers with one key; their
// order is kept.
type Header struct {
	Key   string
	Value []byte
}

// RawContext is the byte-level view of one record being processed: the part
// of a [Context] that a runtime implements. The runtime creates one per
// record and passes it to the group's [RawHandler] for the record's topic;
// everything typed is built on top of it by [Adapt].
//
// Reads (Row, JoinRow, LookupRow) happen while the handler runs. Writes
// (SetRow, DeleteRow, Emit, Loopback) happen only after the handler has
// succeeded, in this order: at most one table write (the row's final state),
// then emits and loopbacks in the order the handler made them. A record
// whose handler fails therefore makes no write at all, so the runtime can
// apply the group's [Policy] without undoing anything. If a write fails, the
// writes before it have been made: that record cannot be skipped safely.
//
// Errors a RawContext method returns reach the RawHandler's result wrapped
// (errors.Is and errors.As see them), even when the handler ignored them.
// The runtime should recognise its own errors there (a closed store, a
// failed produce, a cancelled context) and stop rather than apply the
// group's policy, which is meant for bad records and handler bugs.
//
// Slices passed in (row values, keys, values, headers) belong to the
// RawContext after the call; slices it returns are not retained by the
// adapter beyond the handler call. A RawContext serves one record at a time;
// it need not be safe for concurrent use.
type RawContext interface {
	// Context returns the context of the processing instance, cancelled
	// when the instance stops or loses the record's partition.
	Context() context.Context
	// Topic, Partition, Offset, Timestamp and Headers describe the record.
	// Headers must not be modified by the caller.
	Topic() string
	Partition() int32
	Offset() int64
	Timestamp() time.Time
	Headers() []Header

	// Row returns the group-table row of the record's key (the key's bytes
	// as read from the input). ok is false if the row is missing.
	Row() (value []byte, ok bool, err error)
	// SetRow sets the group-table row of the record's key: in the local
	// store and, as a record keyed by the record's key, in the changelog.
	// value is never nil, so a set is never mistaken for a tombstone.
	SetRow(value []byte) error
	// DeleteRow deletes the group-table row of the record's key, writing a
	// tombstone to the changelog.
	DeleteRow() error
	// JoinRow returns the row of the record's key in the table of group, a
	// table the handler's group joins (co-partitioned: the row is local).
	JoinRow(group string) (value []byte, ok bool, err error)
	// LookupRow returns the row of key in the table of group, a table the
	// handler's group looks up (read through a view of all partitions).
	LookupRow(group string, key []byte) (value []byte, ok bool, err error)
	// Emit produces a record to topic, one of the group's outputs (the
	// adapter has checked), partitioned by key.
	Emit(topic string, key, value []byte, headers []Header) error
	// Loopback produces a record to the group's loop topic, partitioned by
	// key; the group's loop handler processes it later.
	Loopback(key, value []byte) error

	// SetTimestamp replaces the record's timestamp with the one the input's
	// timestamp extractor chose, before the handler runs: Timestamp, the
	// partition's stream time and the timestamps of the record's writes
	// use it from then on.
	SetTimestamp(ts time.Time)
	// StreamTime returns the partition's stream time: the largest event
	// time among the records the partition has processed, this one
	// included unless it came through the group's loop (loop records do
	// not advance stream time; see the package doc). It never goes back. In
	// a timer or punctuation it is the stream time when the callback fires.
	StreamTime() time.Time
	// WallClock returns the current wall-clock time of the runtime (the
	// test driver's clock in tests).
	WallClock() time.Time
	// Rows calls fn for every row of the partition's group table, in key
	// order, including the writes of the records processed before this
	// one. It stops at fn's first error and returns it.
	Rows(fn func(key, value []byte) error) error

	// StateGet, StateScan, StateSet and StateDelete read and write the
	// partition's internal state: a second keyed store of the group, where
	// windowed tables live, changelogged to the group's state topic and
	// restored like the table. Keys are laid out by this package. StateScan
	// visits the keys beginning with prefix in order. Like SetRow, the
	// writes are made only after the handler succeeded.
	StateGet(key []byte) (value []byte, ok bool, err error)
	StateScan(prefix []byte, fn func(key, value []byte) error) error
	StateSet(key, value []byte) error
	StateDelete(key []byte) error

	// SetTimer and DeleteTimer add and remove a timer of the partition. A
	// timer is identified by all of its fields: setting one that exists
	// changes nothing. Timers are persisted with the partition's state and
	// fire in order of their time, calling the group's RawTimerHandler of
	// their name with a RawContext for their key.
	SetTimer(t RawTimer) error
	DeleteTimer(t RawTimer) error

	// Late counts a record that a windowed table dropped because it came
	// after the grace period of its window.
	Late()
}

// RawHandler processes one record given as bytes. [Adapt] makes one from a
// typed handler. Every error it returns is a *[RecordError]; one wrapping
// [ErrDecode] means the record (or a row it read) could not be decoded, one
// wrapping [ErrPanic] that the handler panicked. The handler does not retain
// key and value after it returns.
type RawHandler func(rc RawContext, key, value []byte) error

// Handler is a typed handler: it processes one record of an input whose key
// decodes to K and value to T, in a group whose table holds values of type V.
// Returning an error fails the record; the group's [Policy] decides what
// happens then, and none of the record's writes are made.
type Handler[K, V, T any] func(ctx Context[K, V], key K, value T) error

// ErrPanic marks the error of a handler that panicked; the panic value and
// stack follow it in the message. A panic is treated like a returned error,
// so a poison record can go to a dead-letter topic instead of crashing every
// instance that is assigned its partition.
var ErrPanic = errors.New("handler panicked")

// RecordError is the error of a record that failed: it names the group and
// the record, and wraps the cause.
type RecordError struct {
	Group     string
	Topic     string
	Partition int32
	Offset    int64
	Err       error
}

// Error implements error.
func (e *RecordError) Error() string {
	return fmt.Sprintf("processor: group %q: topic %q partition %d offset %d: %v",
		e.Group, e.Topic, e.Partition, e.Offset, e.Err)
}

// Unwrap returns the cause.
func (e *RecordError) Unwrap() error { return e.Err }

// Scope is what a group's handlers may touch, and how its table is encoded.
// Package topology builds one per group after validating the declaration;
// the adapter checks every emit, loopback and table read against it, so a
// handle of another group fails instead of writing where it was not
// declared.
type Scope[V any] struct {
	// Group is the group's name.
	Group string
	// Table encodes the group-table rows; nil if the group has no table.
	Table Codec[V]
	// Outputs are the topics the group may emit to.
	Outputs []string
	// Joins and Lookups are the groups whose tables the group joins or
	// looks up.
	Joins, Lookups []string
	// Loop is the group's loop topic, or "" if it has none.
	Loop string
	// Timers are the names of the group's timer callbacks, windowed tables'
	// included.
	Timers []string
	// Windows are the names of the group's windowed tables.
	Windows []string
}

// scope is a Scope without its type parameter, shared by the contexts of all
// records of one input.
type scope struct {
	group                   string
	outputs, joins, lookups []string
	loop                    string
	timers, windows         []string
}

func newScope[V any](s Scope[V]) *scope {
	return &scope{
		group:   s.Group,
		outputs: slices.Clone(s.Outputs),
		joins:   slices.Clone(s.Joins),
		lookups: slices.Clone(s.Lookups),
		loop:    s.Loop,
		timers:  slices.Clone(s.Timers),
		windows: slices.Clone(s.Windows),
	}
}

// TimestampExtractor returns the event time of a record of an input: by
// default, the record's timestamp (the producer's, or the log's append
// time). It gets the decoded key and value and the record's timestamp.
type TimestampExtractor[K, T any] func(key K, value T, recordTime time.Time) time.Time

// Adapt returns the RawHandler that runs h for records whose key and value
// decode with keys and values, in the group described by s. s is copied.
func Adapt[K, V, T any](s Scope[V], keys Codec[K], values Codec[T], h Handler[K, V, T]) RawHandler {
	return AdaptTimed(s, keys, values, nil, h)
}

// AdaptTimed is Adapt with the event time of each record taken from
// extract, which may be nil.
func AdaptTimed[K, V, T any](s Scope[V], keys Codec[K], values Codec[T], extract TimestampExtractor[K, T], h Handler[K, V, T]) RawHandler {
	sc := newScope(s)
	table := s.Table
	return func(rc RawContext, key, value []byte) (err error) {
		fail := func(cause error) error {
			return &RecordError{Group: sc.group, Topic: rc.Topic(), Partition: rc.Partition(), Offset: rc.Offset(), Err: cause}
		}
		defer func() {
			if r := recover(); r != nil {
				err = fail(fmt.Errorf("%w: %v\n%s", ErrPanic, r, debug.Stack()))
			}
		}()
		k, err := keys.Decode(key)
		if err != nil {
			return fail(fmt.Errorf("%w key: %w", ErrDecode, err))
		}
		v, err := values.Decode(value)
		if err != nil {
			return fail(fmt.Errorf("%w value: %w", ErrDecode, err))
		}
		if extract != nil {
			rc.SetTimestamp(extract(k, v, rc.Timestamp()))
		}
		c := &call[K, V]{core: core{rc: rc, scope: sc, key: key}, key: k, keys: keys, table: table}
		herr := run(c, h, k, v)
		if err := c.result(herr); err != nil {
			return fail(err)
		}
		if err := c.flush(); err != nil {
			return fail(err)
		}
		return nil
	}
}

// run runs h, after which the context is done, even if h panics: a context
// a handler kept must not buffer writes nobody will make.
func run[K, V, T any](x *call[K, V], h Handler[K, V, T], key K, value T) error {
	defer func() { x.done = true }()
	return h(Context[K, V]{x}, key, value)
}

// core is the part of a record's context that does not depend on its types:
// what typed handles need to check and buffer their effects.
type core struct {
	rc    RawContext
	scope *scope
	// key is the record's (or timer's) key as bytes; keyless is true in a
	// punctuation, which has none.
	key     []byte
	keyless bool
	effects []effect
	// state holds the state writes made so far, the latest per key, so
	// that reads see them before they are flushed.
	state []stateWrite
	err   error // the first failure, which fails the record
	done  bool  // the handler has returned
}

// stateWrite is a buffered write of a state key; a nil value deletes it.
type stateWrite struct {
	key   string
	value []byte
}

// effectKind is what an effect does.
type effectKind uint8

const (
	effectEmit effectKind = iota
	effectLoop
	effectStateSet
	effectStateDelete
	effectTimerSet
	effectTimerDelete
)

// effect is a write waiting for the handler to succeed: an emit, a
// loopback, a state write or a timer change.
type effect struct {
	kind       effectKind
	topic      string
	key, value []byte
	headers    []Header
	timer      RawTimer
}

var errDone = errors.New("processor: Context used after its handler returned")

// check reports whether the context can still be used.
func (c *core) check() error {
	if c.done {
		return errDone
	}
	return nil
}

// fail records err as the record's failure, unless an earlier one is
// recorded, and returns it. Recording makes the record fail even if the
// handler drops the error, so that an unchecked failed write cannot commit
// half a record.
func (c *core) fail(err error) error {
	if c.err == nil {
		c.err = err
	}
	return err
}

// result combines the handler's error with the recorded failure.
func (c *core) result(herr error) error {
	switch {
	case c.err == nil || errors.Is(herr, c.err):
		return herr
	case herr == nil:
		return c.err
	default:
		return fmt.Errorf("%w (handler returned: %w)", c.err, herr)
	}
}

// emit buffers an emit or loopback.
func (c *core) emit(e effect) {
	c.effects = append(c.effects, e)
}

// setState buffers a state write (nil value: a delete).
func (c *core) setState(key, value []byte) {
	if i := c.pendingState(key); i >= 0 {
		c.state[i].value = value
	} else {
		c.state = append(c.state, stateWrite{key: string(key), value: value})
	}
	if value == nil {
		c.effects = append(c.effects, effect{kind: effectStateDelete, key: key})
	} else {
		c.effects = append(c.effects, effect{kind: effectStateSet, key: key, value: value})
	}
}

// pendingState returns the index in c.state of key's buffered write, -1
// if there is none. A call writes a few keys at most, so a slice searched
// in order beats a map.
func (c *core) pendingState(key []byte) int {
	for i := range c.state {
		if c.state[i].key == string(key) {
			return i
		}
	}
	return -1
}

// getState reads a state key, seeing the buffered writes first.
func (c *core) getState(key []byte) ([]byte, bool, error) {
	if i := c.pendingState(key); i >= 0 {
		v := c.state[i].value
		return v, v != nil, nil
	}
	return c.rc.StateGet(key)
}

// scanState visits the state keys beginning with prefix in order, with the
// buffered writes applied.
func (c *core) scanState(prefix []byte, fn func(key, value []byte) error) error {
	var pending []stateWrite
	for _, w := range c.state {
		if strings.HasPrefix(w.key, string(prefix)) {
			pending = append(pending, w)
		}
	}
	slices.SortFunc(pending, func(a, b stateWrite) int { return strings.Compare(a.key, b.key) })
	// Merge the store's keys with the buffered ones, which win.
	emitPending := func(below string, all bool) error {
		for len(pending) > 0 && (all || pending[0].key < below) {
			w := pending[0]
			pending = pending[1:]
			if w.value != nil {
				if err := fn([]byte(w.key), w.value); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := c.rc.StateScan(prefix, func(key, value []byte) error {
		if err := emitPending(string(key), false); err != nil {
			return err
		}
		if c.pendingState(key) >= 0 {
			return nil // written by this call: emitPending passes it on
		}
		return fn(key, value)
	})
	if err != nil {
		return err
	}
	return emitPending("", true)
}

// timer buffers setting (add) or removing a timer.
func (c *core) timer(t RawTimer, add bool) {
	kind := effectTimerDelete
	if add {
		kind = effectTimerSet
	}
	c.effects = append(c.effects, effect{kind: kind, timer: t})
}

// flushEffects hands the buffered writes to the RawContext, in the order
// they were made.
func (c *core) flushEffects() error {
	for _, e := range c.effects {
		var err error
		switch e.kind {
		case effectLoop:
			if err = c.rc.Loopback(e.key, e.value); err != nil {
				err = fmt.Errorf("loopback to %q: %w", e.topic, err)
			}
		case effectEmit:
			if err = c.rc.Emit(e.topic, e.key, e.value, e.headers); err != nil {
				err = fmt.Errorf("emit to %q: %w", e.topic, err)
			}
		case effectStateSet:
			if err = c.rc.StateSet(e.key, e.value); err != nil {
				err = fmt.Errorf("write state: %w", err)
			}
		case effectStateDelete:
			if err = c.rc.StateDelete(e.key); err != nil {
				err = fmt.Errorf("delete state: %w", err)
			}
		case effectTimerSet:
			if err = c.rc.SetTimer(e.timer); err != nil {
				err = fmt.Errorf("set timer %q: %w", e.timer.Name, err)
			}
		case effectTimerDelete:
			if err = c.rc.DeleteTimer(e.timer); err != nil {
				err = fmt.Errorf("delete timer %q: %w", e.timer.Name, err)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}
