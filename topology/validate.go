package topology

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/runnel-io/runnel/processor"
)

// knownGroups indexes by name the groups listed and those they join or look
// up, and reports two different groups of one name: their internal topics
// would collide.
func knownGroups(decls []*groupDecl) (map[string]*groupInfo, []error) {
	var errs []error
	known := make(map[string]*groupInfo)
	for _, d := range decls {
		if prev, ok := known[d.name]; ok {
			if prev.id == d.id {
				errs = append(errs, fmt.Errorf("topology: group %q is listed twice", d.name))
			} else {
				errs = append(errs, fmt.Errorf("topology: two groups are named %q", d.name))
			}
			continue
		}
		known[d.name] = &d.groupInfo
	}
	for _, d := range decls {
		refs := [][]*groupInfo{d.joins, d.lookups}
		for i, how := range []string{"joins", "looks up"} {
			for _, r := range refs[i] {
				if prev, ok := known[r.name]; !ok {
					known[r.name] = r
				} else if prev.id != r.id {
					errs = append(errs, fmt.Errorf("topology: group %q %s a group named %q that is not the group of that name listed or referenced elsewhere", d.name, how, r.name))
				}
			}
		}
	}
	return known, errs
}

// checkGroup checks one group's declaration on its own and against the
// groups it may collide with.
func checkGroup(d *groupDecl, known map[string]*groupInfo) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("topology: group %q: "+format, append([]any{d.name}, args...)...))
	}

	if err := checkTopicName(d.name); err != nil {
		add("invalid group name: %v", err)
	} else if err := checkTopicName(TableTopic(d.name)); err != nil {
		add("group name too long for its internal topics: %v", err)
	}
	if d.keys == nil {
		add("missing key codec")
	}
	if d.hasTable && d.table == nil {
		add("missing table codec")
	}
	for _, err := range d.errs {
		add("%v", err)
	}

	// internal names a topic if it is the changelog or loop topic of a known
	// group: writing to one would corrupt that group's state or bypass its
	// loop handler.
	internal := func(topic string) string {
		if g := loopOwner(topic, known); g != "" {
			return fmt.Sprintf("the loop topic of group %q", g)
		}
		if g := changelogOwner(topic, known); g != "" {
			return fmt.Sprintf("the changelog of group %q", g)
		}
		if g := stateOwner(topic, known); g != "" {
			return fmt.Sprintf("the state changelog of group %q", g)
		}
		return ""
	}

	inputs := make(map[string]bool)
	n := 0
	for _, in := range d.inputs {
		t := in.topic
		what := fmt.Sprintf("input %q", t.name)
		if in.loop {
			what = fmt.Sprintf("loop %q", t.name)
		} else {
			n++
		}
		if err := checkTopicName(t.name); err != nil {
			add("%s: invalid topic name: %v", what, err)
		}
		if t.keys == nil && !in.loop { // a loop's keys are the group's, reported above
			add("%s: missing key codec", what)
		}
		if t.values == nil {
			add("%s: missing value codec", what)
		}
		if in.nilHandler {
			add("%s: nil handler", what)
		}
		if inputs[t.name] {
			add("two handlers for input %q", t.name)
		}
		inputs[t.name] = true
		if in.loop {
			continue
		}
		// Another group's changelog may be read, as the stream of its
		// table's updates; loop topics and the own changelog may not.
		switch g := loopOwner(t.name, known); {
		case t.name == LoopTopic(d.name):
			add("input %q is the group's loop topic; declare it with Loop", t.name)
		case g != "":
			add("input %q is the loop topic of group %q", t.name, g)
		case changelogOwner(t.name, known) == d.name:
			add("input %q is the group's own changelog", t.name)
		case stateOwner(t.name, known) != "":
			// Its keys and values are laid out by the runtime, not by codecs.
			add("input %q is the state changelog of group %q", t.name, stateOwner(t.name, known))
		}
		if t.keys != nil && d.keys != nil && !sameCodec(t.keys, d.keys) {
			add("input %q: key codec %s differs from the group's key codec %s; rows and partitions are found by the key's bytes, so they must encode alike",
				t.name, processor.CodecName(t.keys), processor.CodecName(d.keys))
		}
	}
	if n == 0 {
		add("no inputs")
	}

	outputs := make(map[string]bool)
	for _, o := range d.outputs {
		if err := checkTopicName(o.name); err != nil {
			add("output %q: invalid topic name: %v", o.name, err)
		}
		if o.keys == nil {
			add("output %q: missing key codec", o.name)
		}
		if o.values == nil {
			add("output %q: missing value codec", o.name)
		}
		if outputs[o.name] {
			add("output %q declared twice", o.name)
		}
		outputs[o.name] = true
		if inputs[o.name] {
			add("topic %q is both an input and an output", o.name)
		}
		if s := internal(o.name); s != "" {
			add("output %q is %s", o.name, s)
		}
	}

	joined := make(map[string]bool)
	for _, j := range d.joins {
		switch {
		case j.name == d.name:
			add("joins its own table; a handler reads its row with Context.Value")
		case !j.hasTable:
			add("join of group %q, which has no table", j.name)
		case joined[j.name]:
			add("group %q joined twice", j.name)
		case j.keys != nil && d.keys != nil && !sameCodec(j.keys, d.keys):
			add("join of group %q: its key codec %s differs from the group's key codec %s; co-partitioned rows are found by the key's bytes, so they must encode alike",
				j.name, processor.CodecName(j.keys), processor.CodecName(d.keys))
		}
		joined[j.name] = true
	}
	lookedUp := make(map[string]bool)
	for _, l := range d.lookups {
		switch {
		case l.name == d.name:
			add("looks up its own table; a handler reads its row with Context.Value")
		case !l.hasTable:
			add("lookup of group %q, which has no table", l.name)
		case lookedUp[l.name]:
			add("group %q looked up twice", l.name)
		case joined[l.name]:
			add("group %q is both joined and looked up", l.name)
		}
		lookedUp[l.name] = true
	}

	switch d.policy.Kind() {
	case processor.PolicyStop, processor.PolicySkip:
	case processor.PolicyDeadLetter:
		dl := d.policy.Topic()
		if err := checkTopicName(dl); err != nil {
			add("dead-letter topic: invalid topic name: %v", err)
		}
		if inputs[dl] {
			add("dead-letter topic %q is an input of the group: failed records would fail again, forever", dl)
		}
		if s := internal(dl); s != "" {
			add("dead-letter topic %q is %s", dl, s)
		}
	default:
		add("unknown error policy %v", d.policy)
	}
	return errs
}

// loopOwner returns the known group whose loop topic is topic, or "".
func loopOwner(topic string, known map[string]*groupInfo) string {
	if g, ok := strings.CutSuffix(topic, "-loop"); ok && known[g] != nil {
		return g
	}
	return ""
}

// changelogOwner returns the known group whose changelog is topic, or "".
func changelogOwner(topic string, known map[string]*groupInfo) string {
	if g, ok := strings.CutSuffix(topic, "-table"); ok && known[g] != nil && known[g].hasTable {
		return g
	}
	return ""
}

// stateOwner returns the known group whose state changelog is topic, or
// "".
func stateOwner(topic string, known map[string]*groupInfo) string {
	if g, ok := strings.CutSuffix(topic, "-state"); ok && known[g] != nil && known[g].hasState {
		return g
	}
	return ""
}

// checkTopicCodecs reports topics used with different codecs in different
// places: a record written with one would be read with the other.
func checkTopicCodecs(decls []*groupDecl, known map[string]*groupInfo) []error {
	type use struct {
		topicDecl
		where string
	}
	var errs []error
	first := make(map[string]use)
	note := func(t topicDecl, where string) {
		u, ok := first[t.name]
		if !ok {
			first[t.name] = use{t, where}
			return
		}
		for _, c := range []struct {
			what string
			a, b any
		}{{"key", u.keys, t.keys}, {"value", u.values, t.values}} {
			if c.a != nil && c.b != nil && !sameCodec(c.a, c.b) {
				errs = append(errs, fmt.Errorf("topology: topic %q has %s codec %s as %s but %s as %s",
					t.name, c.what, processor.CodecName(c.a), u.where, processor.CodecName(c.b), where))
			}
		}
	}
	// Changelogs first, so that a group reading another's changelog is
	// compared with the table's own codecs.
	for _, d := range decls {
		if d.hasTable {
			note(topicDecl{name: TableTopic(d.name), keys: d.keys, values: d.table}, fmt.Sprintf("changelog of group %q", d.name))
		}
	}
	for _, g := range known {
		if g.hasTable {
			if _, ok := first[TableTopic(g.name)]; !ok {
				note(topicDecl{name: TableTopic(g.name), keys: g.keys, values: g.table}, fmt.Sprintf("changelog of group %q", g.name))
			}
		}
	}
	for _, d := range decls {
		for _, in := range d.inputs {
			what := "input"
			if in.loop {
				what = "loop"
			}
			note(in.topic, fmt.Sprintf("%s of group %q", what, d.name))
		}
		for _, o := range d.outputs {
			note(o, fmt.Sprintf("output of group %q", d.name))
		}
	}
	return errs
}

// sameCodec reports whether two codecs encode alike, as far as can be told:
// they have the same type and, if comparable, are equal. Two values of a
// codec type that cannot be compared are taken to be alike.
func sameCodec(a, b any) bool {
	if reflect.TypeOf(a) != reflect.TypeOf(b) {
		return false
	}
	if reflect.ValueOf(a).Comparable() {
		return a == b
	}
	return true
}

// Validate checks t against the partition counts of the topics that exist,
// keyed by topic name. A runtime calls it after learning the counts and
// before running anything; the error lists every problem. Checked:
//
//   - every input, output and dead-letter topic exists;
//   - a group's inputs have one partition count, and so have its changelog
//     and loop topic if they exist (the runtime creates them otherwise, with
//     that count);
//   - every joined table's changelog has that count too (if it does not
//     exist, its group must be in t, whose inputs then must have it);
//   - every looked-up table's changelog exists or its group is in t.
func (t *Topology) Validate(partitions map[string]int32) error {
	var errs []error
	for _, g := range t.groups {
		add := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("topology: group %q: "+format, append([]any{g.Name}, args...)...))
		}
		first, n := t.inputPartitions(g, partitions, add)
		for _, topic := range []string{g.Table, g.Loop, g.State} {
			if c, ok := partitions[topic]; ok && topic != "" && first != "" && c != n {
				add("topic %q has %d partitions, the group's inputs (%q) have %d", topic, c, first, n)
			}
		}
		for _, j := range g.Joins {
			c, ok := partitions[j.Topic]
			source := fmt.Sprintf("table %q", j.Topic)
			if !ok {
				if other, in := t.Group(j.Group); in {
					source = fmt.Sprintf("group %q's inputs", j.Group)
					c, ok = firstInputPartitions(other, partitions)
				}
			}
			switch {
			case !ok && !t.listed(j.Group):
				add("joined table %q does not exist, and group %q is not in the topology to create it", j.Topic, j.Group)
			case ok && first != "" && c != n:
				add("join of group %q: %s has %d partitions, the group's inputs (%q) have %d; joined tables must be co-partitioned",
					j.Group, source, c, first, n)
			}
		}
		for _, l := range g.Lookups {
			if _, ok := partitions[l.Topic]; !ok && !t.listed(l.Group) {
				add("looked-up table %q does not exist, and group %q is not in the topology to create it", l.Topic, l.Group)
			}
		}
		for _, o := range g.Outputs {
			if _, ok := partitions[o]; !ok {
				add("output topic %q does not exist", o)
			}
		}
		if g.Policy.Kind() == processor.PolicyDeadLetter {
			if _, ok := partitions[g.Policy.Topic()]; !ok {
				add("dead-letter topic %q does not exist", g.Policy.Topic())
			}
		}
	}
	return errors.Join(errs...)
}

// inputPartitions checks that g's inputs exist and are co-partitioned, and
// returns the first one's name and count ("" if none exists).
func (t *Topology) inputPartitions(g GroupSpec, partitions map[string]int32, add func(string, ...any)) (first string, n int32) {
	for _, in := range g.Inputs {
		if in.Loop {
			continue
		}
		c, ok := partitions[in.Topic]
		switch {
		case !ok:
			add("input topic %q does not exist", in.Topic)
		case first == "":
			first, n = in.Topic, c
		case c != n:
			add("inputs are not co-partitioned: %q has %d partitions, %q has %d", first, n, in.Topic, c)
		}
	}
	return first, n
}

// firstInputPartitions returns the partition count of g's first existing
// input.
func firstInputPartitions(g GroupSpec, partitions map[string]int32) (int32, bool) {
	for _, in := range g.Inputs {
		if c, ok := partitions[in.Topic]; ok && !in.Loop {
			return c, true
		}
	}
	return 0, false
}

// listed reports whether group is one of t's groups.
func (t *Topology) listed(group string) bool {
	_, ok := t.Group(group)
	return ok
}
