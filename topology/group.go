package topology

import (
	"errors"
	"fmt"

	"github.com/runnel-io/runnel/processor"
)

// Group is a declared group: a name, which is also the consumer group's and
// the prefix of its internal topics, a key type K shared by its inputs, and
// the value type V of its table ([processor.NoTable] if it has none). Its
// edges are declared with the functions [Input], [Loop], [Output], [Join]
// and [Lookup]; problems found while declaring are kept and reported by
// [New], so that all of them are reported at once.
//
// A Group is not safe for concurrent use. [New] takes a snapshot: edges
// declared afterwards do not change a Topology already made.
type Group[K, V any] struct {
	name     string
	keys     processor.Codec[K]
	values   processor.Codec[V]
	hasTable bool
	inputs   []inputEdge[V] // the loop is not here, but in loop
	loop     *inputEdge[V]
	outputs  []topicDecl
	joins    []AnyGroup
	lookups  []AnyGroup
	policy   processor.Policy
	errs     []error

	timers       []timerDecl[V] // the windowed tables' included
	punctuations []punctuationDecl[V]
	windows      []windowDecl
}

// inputEdge is a declared input: the handler is bound to the group's scope
// when the declaration is complete, by New.
type inputEdge[V any] struct {
	topic      topicDecl
	nilHandler bool
	bind       func(processor.Scope[V]) processor.RawHandler // nil if a codec or the handler is nil
}

// AnyGroup is a Group of any key and table type, as [New] takes them. Only
// Group implements it.
type AnyGroup interface {
	info() *groupInfo
	decl() *groupDecl
}

// NewGroup returns a group with a table: keys is the codec of the keys of
// its inputs and its table, values that of its table's values. The table's
// changelog is [TableTopic](name).
func NewGroup[K, V any](name string, keys processor.Codec[K], values processor.Codec[V]) *Group[K, V] {
	return &Group[K, V]{name: name, keys: keys, values: values, hasTable: true}
}

// NewStatelessGroup returns a group without a table, whose inputs' keys use
// the codec keys.
func NewStatelessGroup[K any](name string, keys processor.Codec[K]) *Group[K, processor.NoTable] {
	return &Group[K, processor.NoTable]{name: name, keys: keys}
}

// Name returns the group's name.
func (g *Group[K, V]) Name() string { return g.name }

// Keys returns the codec of the group's keys.
func (g *Group[K, V]) Keys() processor.Codec[K] { return g.keys }

// Values returns the codec of the group table's values, nil if the group
// has no table.
func (g *Group[K, V]) Values() processor.Codec[V] {
	if !g.hasTable {
		return nil
	}
	return g.values
}

// OnError sets what happens to records that fail in the group's handlers.
// The default is [processor.Stop].
func (g *Group[K, V]) OnError(p processor.Policy) {
	g.must("OnError")
	g.policy = p
}

// Input declares topic t as an input of g, whose records h processes. The
// topic's keys must encode like the group's: its table rows and partitions
// are found by the key's bytes.
func Input[K, V, T any](g *Group[K, V], t Topic[K, T], h processor.Handler[K, V, T]) {
	g.must("Input")
	g.inputs = append(g.inputs, newInputEdge(g, t, h))
}

// Loop declares g's loop: records a handler emits through the returned handle
// go to [LoopTopic](g's name), keyed with the group's key codec and valued
// with values, and come back to h on the instance that owns the new key's
// partition. It is the way to re-key within a group.
//
// A looped record keeps the event time of what sent it, its Timestamp in h,
// but does not advance the stream time of the partition that receives it:
// it comes from another partition, whose stream time may be far ahead, and
// must not make the receiving partition's own records late nor fire its
// stream-time timers early. A windowed update it makes is judged late or
// not against the receiving partition's stream time, like any record's.
func Loop[K, V, T any](g *Group[K, V], values processor.Codec[T], h processor.Handler[K, V, T]) processor.Loop[K, T] {
	g.must("Loop")
	t := NewTopic(LoopTopic(g.name), g.keys, values)
	if g.loop != nil {
		g.errs = append(g.errs, errors.New("loop declared twice"))
	} else {
		e := newInputEdge(g, t, h)
		g.loop = &e
	}
	return processor.NewLoop(t.name, g.keys, values)
}

// Output declares topic t as an output of g and returns the handle through
// which g's handlers emit to it.
func Output[K, V, OK, OV any](g *Group[K, V], t Topic[OK, OV]) processor.Output[OK, OV] {
	g.must("Output")
	g.outputs = append(g.outputs, t.decl())
	return processor.NewOutput(t.name, t.keys, t.values)
}

// Join declares that g joins the table of group table, which must have the
// same key type and encode keys alike: the two are co-partitioned, and a
// handler of g reads the row of its record's key through the returned
// handle.
func Join[K, V, W any](g *Group[K, V], table *Group[K, W]) processor.Join[W] {
	g.must("Join")
	if table == nil {
		g.errs = append(g.errs, errors.New("join of a nil group"))
		return processor.Join[W]{}
	}
	g.joins = append(g.joins, table)
	return processor.NewJoin(table.name, table.Values())
}

// Lookup declares that g looks up the table of group table, of any key type,
// and returns the handle through which g's handlers read any of its rows.
func Lookup[K, V, K2, W any](g *Group[K, V], table *Group[K2, W]) processor.Lookup[K2, W] {
	g.must("Lookup")
	if table == nil {
		g.errs = append(g.errs, errors.New("lookup of a nil group"))
		return processor.Lookup[K2, W]{}
	}
	g.lookups = append(g.lookups, table)
	return processor.NewLookup(table.name, table.keys, table.Values())
}

// must panics if g is nil: there is no group to keep the problem for, and a
// nil group is a bug in the program, found on its first run.
func (g *Group[K, V]) must(op string) {
	if g == nil {
		panic(fmt.Sprintf("topology: %s of a nil group", op))
	}
}

func newInputEdge[K, V, T any](g *Group[K, V], t Topic[K, T], h processor.Handler[K, V, T]) inputEdge[V] {
	e := inputEdge[V]{topic: t.decl(), nilHandler: h == nil}
	if h != nil && t.keys != nil && t.values != nil {
		keys, values, extract := t.keys, t.values, t.extract
		e.bind = func(s processor.Scope[V]) processor.RawHandler {
			return processor.AdaptTimed(s, keys, values, extract, h)
		}
	}
	return e
}

// groupInfo is what other groups need to know of a group: its identity, name
// and codecs.
type groupInfo struct {
	id       any // the *Group, which tells apart two groups of one name
	name     string
	keys     any // nil if missing
	table    any // nil if missing or if the group has no table
	hasTable bool
	hasState bool // windowed tables or timers: a StateTopic
}

// groupDecl is a group's declaration without its types, its handlers bound.
type groupDecl struct {
	groupInfo
	inputs         []inputDecl // declaration order, the loop last
	outputs        []topicDecl
	joins, lookups []*groupInfo
	loop           string // the loop topic, "" if none
	policy         processor.Policy
	errs           []error
	timers         map[string]processor.RawTimerHandler
	punctuations   []PunctuationSpec
	windows        []windowDecl
}

// inputDecl is an input without its types.
type inputDecl struct {
	topic      topicDecl
	handler    processor.RawHandler // nil if a codec or the handler is nil
	nilHandler bool
	loop       bool
}

func (g *Group[K, V]) info() *groupInfo {
	if g == nil {
		return nil
	}
	in := &groupInfo{id: g, name: g.name, hasTable: g.hasTable, hasState: len(g.timers) > 0}
	if g.keys != nil {
		in.keys = g.keys
	}
	if g.hasTable && g.values != nil {
		in.table = g.values
	}
	return in
}

func (g *Group[K, V]) decl() *groupDecl {
	if g == nil {
		return nil
	}
	d := &groupDecl{groupInfo: *g.info(), policy: g.policy}
	d.errs = append(d.errs, g.errs...)
	d.outputs = append(d.outputs, g.outputs...)
	for _, j := range g.joins {
		d.joins = append(d.joins, j.info())
	}
	for _, l := range g.lookups {
		d.lookups = append(d.lookups, l.info())
	}
	if g.loop != nil {
		d.loop = g.loop.topic.name
	}

	s := processor.Scope[V]{Group: g.name, Loop: d.loop}
	if g.hasTable {
		s.Table = g.values
	}
	for _, o := range d.outputs {
		s.Outputs = append(s.Outputs, o.name)
	}
	for _, j := range d.joins {
		s.Joins = append(s.Joins, j.name)
	}
	for _, l := range d.lookups {
		s.Lookups = append(s.Lookups, l.name)
	}
	for _, t := range g.timers {
		s.Timers = append(s.Timers, t.name)
	}
	for _, w := range g.windows {
		s.Windows = append(s.Windows, w.name)
	}
	d.windows = append(d.windows, g.windows...)
	if len(g.timers) > 0 {
		d.timers = make(map[string]processor.RawTimerHandler, len(g.timers))
		for _, t := range g.timers {
			var h processor.RawTimerHandler
			if t.bind != nil {
				h = t.bind(s)
			}
			d.timers[t.name] = h
		}
	}
	for _, p := range g.punctuations {
		d.punctuations = append(d.punctuations, PunctuationSpec{Every: p.every, Handler: p.bind(s)})
	}
	bind := func(e inputEdge[V], loop bool) inputDecl {
		in := inputDecl{topic: e.topic, nilHandler: e.nilHandler, loop: loop}
		if e.bind != nil {
			in.handler = e.bind(s)
		}
		return in
	}
	for _, e := range g.inputs {
		d.inputs = append(d.inputs, bind(e, false))
	}
	if g.loop != nil {
		d.inputs = append(d.inputs, bind(*g.loop, true))
	}
	return d
}
