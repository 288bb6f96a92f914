package processor

import (
	"fmt"
	"slices"
)

// Output is a typed handle on a topic a group emits to. Get one from
// topology.Output, which declares the topic as an output of the group; the
// handle is then usable in that group's handlers only.
type Output[K, V any] struct {
	topic  string
	keys   Codec[K]
	values Codec[V]
}

// NewOutput returns a handle emitting to topic with the given codecs. It is
// meant for package topology: a handle made here declares nothing, and its
// emits fail unless the handler's group declared topic as an output.
func NewOutput[K, V any](topic string, keys Codec[K], values Codec[V]) Output[K, V] {
	return Output[K, V]{topic: topic, keys: keys, values: values}
}

// Topic returns the topic the handle emits to.
func (o Output[K, V]) Topic() string { return o.topic }

// Emit emits a record with key, value and headers to the output topic. The
// record is produced when the handler succeeds, partitioned by its key's
// bytes. An error (an undeclared output, a value that cannot be encoded) is
// returned and fails the record.
func (o Output[K, V]) Emit(ctx AnyContext, key K, value V, headers ...Header) error {
	c := ctx.handlerCore()
	if err := c.check(); err != nil {
		return err
	}
	if !slices.Contains(c.scope.outputs, o.topic) {
		return c.fail(fmt.Errorf("emit to %q: not an output of group %q", o.topic, c.scope.group))
	}
	kb, vb, err := encode(o.keys, o.values, key, value)
	if err != nil {
		return c.fail(fmt.Errorf("emit to %q: %w", o.topic, err))
	}
	c.emit(effect{kind: effectEmit, topic: o.topic, key: kb, value: vb, headers: slices.Clone(headers)})
	return nil
}

// Loop is a typed handle on a group's loop topic: records emitted to it come
// back to the same group's loop handler, partitioned by their new key. Get
// one from topology.Loop.
type Loop[K, V any] struct {
	topic  string
	keys   Codec[K]
	values Codec[V]
}

// NewLoop returns a handle on the loop topic with the given codecs. It is
// meant for package topology; its emits fail unless topic is the loop topic
// of the handler's group.
func NewLoop[K, V any](topic string, keys Codec[K], values Codec[V]) Loop[K, V] {
	return Loop[K, V]{topic: topic, keys: keys, values: values}
}

// Topic returns the loop topic.
func (l Loop[K, V]) Topic() string { return l.topic }

// Emit sends a record with key and value through the loop. It is produced
// when the handler succeeds; the loop handler runs for it on the instance
// that owns key's partition.
func (l Loop[K, V]) Emit(ctx AnyContext, key K, value V) error {
	c := ctx.handlerCore()
	if err := c.check(); err != nil {
		return err
	}
	if l.topic == "" || c.scope.loop != l.topic {
		return c.fail(fmt.Errorf("loopback to %q: not the loop of group %q", l.topic, c.scope.group))
	}
	kb, vb, err := encode(l.keys, l.values, key, value)
	if err != nil {
		return c.fail(fmt.Errorf("loopback to %q: %w", l.topic, err))
	}
	c.emit(effect{kind: effectLoop, topic: l.topic, key: kb, value: vb})
	return nil
}

// Join is a typed handle on the table of another group, joined by the
// handler's group: the two are co-partitioned, so the row of the record's
// key is local and read without a network hop. Only that row can be read.
// Get one from topology.Join.
type Join[V any] struct {
	group  string
	values Codec[V]
}

// NewJoin returns a handle on the table of group. It is meant for package
// topology; its reads fail unless the handler's group joins group.
func NewJoin[V any](group string, values Codec[V]) Join[V] {
	return Join[V]{group: group, values: values}
}

// Group returns the name of the group whose table is joined.
func (j Join[V]) Group() string { return j.group }

// Get returns the joined table's row of the record's key (its bytes as read
// from the input); ok is false if the row is missing. If the row cannot be
// read or decoded, Get returns the zero value and false and records the
// error, failing the record (see [Context.Err]).
func (j Join[V]) Get(ctx AnyContext) (value V, ok bool) {
	c := ctx.handlerCore()
	if c.check() != nil {
		return value, false
	}
	if !slices.Contains(c.scope.joins, j.group) {
		c.fail(fmt.Errorf("join of %q: not joined by group %q", j.group, c.scope.group))
		return value, false
	}
	b, found, err := c.rc.JoinRow(j.group)
	return decodeRow(c, "joined", j.group, j.values, b, found, err)
}

// Lookup is a typed handle on the table of any group, looked up by the
// handler's group through a view: any key can be read, at the cost of the
// view's lag behind the table. Get one from topology.Lookup.
type Lookup[K, V any] struct {
	group  string
	keys   Codec[K]
	values Codec[V]
}

// NewLookup returns a handle on the table of group. It is meant for package
// topology; its reads fail unless the handler's group looks up group.
func NewLookup[K, V any](group string, keys Codec[K], values Codec[V]) Lookup[K, V] {
	return Lookup[K, V]{group: group, keys: keys, values: values}
}

// Group returns the name of the group whose table is looked up.
func (l Lookup[K, V]) Group() string { return l.group }

// Get returns the looked-up table's row of key; ok is false if the row is
// missing. Failures are recorded as with [Join.Get].
func (l Lookup[K, V]) Get(ctx AnyContext, key K) (value V, ok bool) {
	c := ctx.handlerCore()
	if c.check() != nil {
		return value, false
	}
	if !slices.Contains(c.scope.lookups, l.group) {
		c.fail(fmt.Errorf("lookup of %q: not looked up by group %q", l.group, c.scope.group))
		return value, false
	}
	kb, err := l.keys.Encode(key)
	if err != nil {
		c.fail(fmt.Errorf("lookup of %q: key: %w", l.group, err))
		return value, false
	}
	b, found, err := c.rc.LookupRow(l.group, kb)
	return decodeRow(c, "looked-up", l.group, l.values, b, found, err)
}

// decodeRow finishes a read of another group's table row.
func decodeRow[V any](c *core, how, group string, values Codec[V], b []byte, found bool, err error) (value V, ok bool) {
	if err != nil {
		c.fail(fmt.Errorf("read %s table %q: %w", how, group, err))
		return value, false
	}
	if !found {
		return value, false
	}
	v, err := values.Decode(b)
	if err != nil {
		c.fail(fmt.Errorf("%w row of %s table %q: %w", ErrDecode, how, group, err))
		return value, false
	}
	return v, true
}

// encode encodes a key and a value for an emit.
func encode[K, V any](keys Codec[K], values Codec[V], key K, value V) (kb, vb []byte, err error) {
	if kb, err = keys.Encode(key); err != nil {
		return nil, nil, fmt.Errorf("key: %w", err)
	}
	if vb, err = values.Encode(value); err != nil {
		return nil, nil, fmt.Errorf("value: %w", err)
	}
	return kb, vb, nil
}
