package processor

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Context is what a handler gets with each record: the record's metadata, the
// group-table row of its key, and the Go context of the instance. K is the
// group's key type and V its table's value type.
//
// Methods that can fail return their error and also record it: a record
// whose handler met an error fails even if the handler returns nil, so a
// forgotten check cannot commit half a record. Reads that fail (Value, and
// the Get of joins and lookups) return a zero value and record the error,
// which keeps the common case short; [Context.Err] reports it to handlers
// that want to stop early.
//
// Writes (SetValue, Delete, emits, loopbacks) are buffered and made only
// when the handler returns successfully; reads see the handler's own writes
// to its row. A Context is valid only during its handler's call and is not
// safe for concurrent use. It is a single pointer, cheap to pass by value;
// the zero Context is not usable.
type Context[K, V any] struct {
	c *call[K, V]
}

// AnyContext is a Context of any key and table type: handles that work in
// every group ([Output], [Loop], [Join], [Lookup]) take one. Only Context
// implements it.
type AnyContext interface {
	handlerCore() *core
}

// NoTable is the table type of a group without a table. In such a group
// Value, SetValue and Delete fail.
type NoTable struct{}

// rowWrite is the pending write to the record's row.
type rowWrite uint8

const (
	rowUnchanged rowWrite = iota
	rowSet
	rowDeleted
)

// call is the state of one handler call.
type call[K, V any] struct {
	core
	key   K
	keys  Codec[K]
	table Codec[V]

	// The row of key, once read or written: found and value are what the
	// handler sees; write and bytes what flush will write.
	rowKnown bool
	found    bool
	value    V
	write    rowWrite
	bytes    []byte
}

var (
	errNoTable = errors.New("the group has no table")
	errKeyless = errors.New("a punctuation has no key, so no row")
)

func (c Context[K, V]) handlerCore() *core { return &c.c.core }

// Key returns the record's key.
func (c Context[K, V]) Key() K { return c.c.key }

// Topic returns the topic the record was read from.
func (c Context[K, V]) Topic() string { return c.c.rc.Topic() }

// Partition returns the partition the record was read from.
func (c Context[K, V]) Partition() int32 { return c.c.rc.Partition() }

// Offset returns the record's offset in its partition.
func (c Context[K, V]) Offset() int64 { return c.c.rc.Offset() }

// Timestamp returns the record's event time: its timestamp, or what the
// input's timestamp extractor made of it. In a timer callback it is the
// timer's time.
func (c Context[K, V]) Timestamp() time.Time { return c.c.rc.Timestamp() }

// StreamTime returns the partition's stream time: the largest event time it
// has processed, this record's included, except that records of the
// group's loop do not advance it (see the package doc).
func (c Context[K, V]) StreamTime() time.Time { return c.c.rc.StreamTime() }

// WallClock returns the runtime's current time; in tests, the test
// driver's clock. Use it rather than time.Now to set wall-clock timers, so
// that tests can control them.
func (c Context[K, V]) WallClock() time.Time { return c.c.rc.WallClock() }

// Rows calls fn for every row of the group table in the record's partition,
// in the order of the keys' bytes: the end-of-day visit of every position
// or account. It sees the writes of earlier records, not the pending
// write of this one. It stops at fn's first error and returns it; a row
// that cannot be decoded fails the record.
func (c Context[K, V]) Rows(fn func(key K, value V) error) error {
	x := c.c
	if err := x.check(); err != nil {
		return err
	}
	if x.table == nil {
		return x.fail(errNoTable)
	}
	var stop error
	err := x.rc.Rows(func(kb, vb []byte) error {
		k, err := x.keys.Decode(kb)
		if err != nil {
			return x.fail(fmt.Errorf("%w table key %q: %w", ErrDecode, kb, err))
		}
		v, err := x.table.Decode(vb)
		if err != nil {
			return x.fail(fmt.Errorf("%w table row %q: %w", ErrDecode, kb, err))
		}
		if err := fn(k, v); err != nil {
			stop = err
			return err
		}
		return nil
	})
	if err != nil && err != stop {
		return x.fail(fmt.Errorf("read table rows: %w", err))
	}
	return err
}

// Headers returns the record's headers. They must not be modified.
func (c Context[K, V]) Headers() []Header { return c.c.rc.Headers() }

// Context returns the Go context of the processing instance. It is
// cancelled when the instance stops or loses the record's partition; pass it
// to calls that should give up then.
func (c Context[K, V]) Context() context.Context { return c.c.rc.Context() }

// Err returns the first error the handler's calls met, or nil. The record
// fails if Err is not nil when the handler returns.
func (c Context[K, V]) Err() error { return c.c.err }

// Value returns the group-table row of the record's key; ok is false if the
// row is missing. If the row cannot be read or decoded, Value returns the
// zero value and false and records the error (see [Context.Err]).
func (c Context[K, V]) Value() (value V, ok bool) {
	x := c.c
	if err := x.check(); err != nil {
		return value, false
	}
	if x.table == nil {
		x.fail(errNoTable)
		return value, false
	}
	if x.keyless {
		x.fail(errKeyless)
		return value, false
	}
	if !x.rowKnown {
		b, found, err := x.rc.Row()
		if err != nil {
			x.fail(fmt.Errorf("read table row: %w", err))
			return value, false
		}
		if found {
			v, err := x.table.Decode(b)
			if err != nil {
				x.fail(fmt.Errorf("%w table row: %w", ErrDecode, err))
				return value, false
			}
			x.value = v
		}
		x.rowKnown, x.found = true, found
	}
	return x.value, x.found
}

// SetValue sets the group-table row of the record's key to value. The write
// is made when the handler succeeds; Value sees it at once.
func (c Context[K, V]) SetValue(value V) error {
	x := c.c
	if err := x.check(); err != nil {
		return err
	}
	if x.table == nil {
		return x.fail(errNoTable)
	}
	if x.keyless {
		return x.fail(errKeyless)
	}
	b, err := x.table.Encode(value)
	if err != nil {
		return x.fail(fmt.Errorf("set table row: %w", err))
	}
	if b == nil {
		b = []byte{} // nil would read as a tombstone in the changelog
	}
	x.rowKnown, x.found, x.value = true, true, value
	x.write, x.bytes = rowSet, b
	return nil
}

// Delete deletes the group-table row of the record's key. The delete is made
// when the handler succeeds; Value sees it at once.
func (c Context[K, V]) Delete() error {
	x := c.c
	if err := x.check(); err != nil {
		return err
	}
	if x.table == nil {
		return x.fail(errNoTable)
	}
	if x.keyless {
		return x.fail(errKeyless)
	}
	var zero V
	x.rowKnown, x.found, x.value = true, false, zero
	x.write, x.bytes = rowDeleted, nil
	return nil
}

// flush makes the handler's writes: the row's final state, then the emits
// and loopbacks.
func (x *call[K, V]) flush() error {
	switch x.write {
	case rowSet:
		if err := x.rc.SetRow(x.bytes); err != nil {
			return fmt.Errorf("write table row: %w", err)
		}
	case rowDeleted:
		if err := x.rc.DeleteRow(); err != nil {
			return fmt.Errorf("delete table row: %w", err)
		}
	}
	return x.flushEffects()
}
