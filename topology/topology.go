package topology

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/runnel-io/runnel/processor"
)

// Topology is a validated declaration of groups, ready to run. It is
// immutable and safe for concurrent use.
type Topology struct {
	decls  []*groupDecl
	groups []GroupSpec
	known  map[string]*groupInfo // every group listed or referenced, by name
}

// GroupSpec is a group as a runtime runs it: topics and handlers on bytes.
// Tables are named by the group that owns them.
type GroupSpec struct {
	// Name is the group's name, also its consumer group id.
	Name string
	// Inputs are the topics the group consumes, in declaration order, the
	// loop topic last. All are co-partitioned: partition p of each goes to
	// the same instance, with partition p of the table and of the joined
	// tables.
	Inputs []InputSpec
	// Table is the changelog topic of the group's table, "" if it has none.
	// The runtime creates it if missing: compacted, with the inputs'
	// partition count.
	Table string
	// Loop is the group's loop topic, "" if it has none. The runtime creates
	// it if missing, with the inputs' partition count; Loopback produces to
	// it.
	Loop string
	// Joins are the co-partitioned tables the group reads (RawContext.JoinRow).
	Joins []TableRef
	// Lookups are the tables the group reads through a view
	// (RawContext.LookupRow).
	Lookups []TableRef
	// Outputs are the topics the group may emit to.
	Outputs []string
	// Policy says what to do with records whose handler fails.
	Policy processor.Policy
	// State is the changelog of the group's internal state (windowed tables
	// and timers), "" if it has none. The runtime creates it if missing:
	// compacted, with the inputs' partition count.
	State string
	// Timers are the group's timer callbacks by name, the windowed tables'
	// included.
	Timers map[string]processor.RawTimerHandler
	// Punctuations are the group's periodic wall-clock callbacks, run for
	// each partition.
	Punctuations []PunctuationSpec
}

// PunctuationSpec is a periodic callback of a group.
type PunctuationSpec struct {
	Every   time.Duration
	Handler processor.RawTimerHandler
}

// InputSpec is an input topic and the handler of its records.
type InputSpec struct {
	Topic   string
	Handler processor.RawHandler
	// Loop is true for the group's loop topic.
	Loop bool
}

// TableRef names another group's table.
type TableRef struct {
	// Group owns the table and names it in RawContext.JoinRow and LookupRow.
	Group string
	// Topic is its changelog, TableTopic(Group).
	Topic string
}

// New validates the declarations of groups and returns them as a Topology.
// The error, if any, lists every problem found, each naming its group and
// edge. Groups that are joined or looked up need not be listed: they may run
// in another program, in which case their changelog must exist when the
// topology runs (see [Topology.Validate]).
func New(groups ...AnyGroup) (*Topology, error) {
	var errs []error
	decls := make([]*groupDecl, 0, len(groups))
	for i, g := range groups {
		var d *groupDecl
		if g != nil {
			d = g.decl()
		}
		if d == nil {
			errs = append(errs, fmt.Errorf("topology: group #%d is nil", i+1))
			continue
		}
		decls = append(decls, d)
	}
	known, kerrs := knownGroups(decls)
	errs = append(errs, kerrs...)
	for _, d := range decls {
		errs = append(errs, checkGroup(d, known)...)
	}
	errs = append(errs, checkTopicCodecs(decls, known)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	t := &Topology{decls: decls, known: known}
	for _, d := range decls {
		t.groups = append(t.groups, spec(d))
	}
	return t, nil
}

func spec(d *groupDecl) GroupSpec {
	s := GroupSpec{Name: d.name, Loop: d.loop, Policy: d.policy, Timers: maps.Clone(d.timers), Punctuations: slices.Clone(d.punctuations)}
	if len(d.timers) > 0 {
		s.State = StateTopic(d.name)
	}
	if d.hasTable {
		s.Table = TableTopic(d.name)
	}
	for _, in := range d.inputs {
		s.Inputs = append(s.Inputs, InputSpec{Topic: in.topic.name, Handler: in.handler, Loop: in.loop})
	}
	for _, j := range d.joins {
		s.Joins = append(s.Joins, TableRef{Group: j.name, Topic: TableTopic(j.name)})
	}
	for _, l := range d.lookups {
		s.Lookups = append(s.Lookups, TableRef{Group: l.name, Topic: TableTopic(l.name)})
	}
	for _, o := range d.outputs {
		s.Outputs = append(s.Outputs, o.name)
	}
	return s
}

// Groups returns the groups to run, in the order given to New. The slices
// are copies: changing them changes nothing in t.
func (t *Topology) Groups() []GroupSpec {
	out := make([]GroupSpec, len(t.groups))
	for i, g := range t.groups {
		out[i] = g.clone()
	}
	return out
}

// Group returns the group named name, if it is one of t's groups.
func (t *Topology) Group(name string) (GroupSpec, bool) {
	for _, g := range t.groups {
		if g.Name == name {
			return g.clone(), true
		}
	}
	return GroupSpec{}, false
}

func (g GroupSpec) clone() GroupSpec {
	g.Inputs = slices.Clone(g.Inputs)
	g.Joins = slices.Clone(g.Joins)
	g.Lookups = slices.Clone(g.Lookups)
	g.Outputs = slices.Clone(g.Outputs)
	g.Timers = maps.Clone(g.Timers)
	g.Punctuations = slices.Clone(g.Punctuations)
	return g
}

// TableCodecs returns the codecs of group's table, the keys' and the
// values' (a processor.Codec[K] and a processor.Codec[V], typed as any), for
// tools that show a table's rows by name only, as the runtime's monitor
// does. ok is false if group has no table, or is neither one of t's groups
// nor one they join or look up.
func (t *Topology) TableCodecs(group string) (keys, values any, ok bool) {
	in, found := t.known[group]
	if !found || !in.hasTable {
		return nil, nil, false
	}
	return in.keys, in.table, true
}
