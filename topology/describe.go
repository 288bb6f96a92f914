package topology

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/runnel-io/runnel/processor"
)

// Describe renders t as text, one block per group in the order given to New:
// its inputs and loop, its table and changelog, the tables it joins and
// looks up, its outputs and its error policy, each with its codecs.
func (t *Topology) Describe() string {
	var b strings.Builder
	for i, d := range t.decls {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "group %s\n", d.name)
		w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, in := range d.inputs {
			role := "input"
			if in.loop {
				role = "loop"
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\n", role, in.topic.name, codecs(in.topic.keys, in.topic.values))
		}
		if d.hasTable {
			fmt.Fprintf(w, "  table\t%s\t%s, compacted\n", TableTopic(d.name), codecs(d.keys, d.table))
		}
		for _, j := range d.joins {
			fmt.Fprintf(w, "  join\t%s\t%s, changelog %s\n", j.name, codecs(j.keys, j.table), TableTopic(j.name))
		}
		for _, l := range d.lookups {
			fmt.Fprintf(w, "  lookup\t%s\t%s, changelog %s\n", l.name, codecs(l.keys, l.table), TableTopic(l.name))
		}
		for _, o := range d.outputs {
			fmt.Fprintf(w, "  output\t%s\t%s\n", o.name, codecs(o.keys, o.values))
		}
		for _, win := range d.windows {
			fmt.Fprintf(w, "  windowed\t%s\t%s, value %s, emit %s\n", win.name, win.windows, processor.CodecName(win.values), win.mode)
		}
		var timers []string
		for name := range d.timers {
			if !strings.HasPrefix(name, processor.CloseTimer("")) && !strings.HasPrefix(name, processor.ExpireTimer("")) {
				timers = append(timers, name)
			}
		}
		slices.Sort(timers)
		for _, name := range timers {
			fmt.Fprintf(w, "  timer\t%s\n", name)
		}
		for _, p := range d.punctuations {
			fmt.Fprintf(w, "  punctuation\tevery %v\n", p.Every)
		}
		if len(d.timers) > 0 {
			fmt.Fprintf(w, "  state\t%s\tcompacted\n", StateTopic(d.name))
		}
		fmt.Fprintf(w, "  on error\t%s\n", d.policy)
		w.Flush()
	}
	return b.String()
}

func codecs(keys, values any) string {
	return "key " + processor.CodecName(keys) + ", value " + processor.CodecName(values)
}

// DOT renders t as a Graphviz digraph: groups are ellipses, topics boxes,
// changelogs cylinders. Solid edges carry records (inputs, outputs, loops,
// table writes), dashed ones table reads (joins, lookups), a red dotted one
// dead letters. Render it with `dot -Tsvg`.
func (t *Topology) DOT() string {
	var nodes, edges strings.Builder
	seen := make(map[string]bool)
	node := func(id, attrs string) string {
		if !seen[id] {
			seen[id] = true
			fmt.Fprintf(&nodes, "\t%s [%s];\n", quote(id), attrs)
		}
		return quote(id)
	}
	topic := func(name string) string { return node("topic:"+name, "label="+quote(name)) }
	table := func(group string) string {
		return node("topic:"+TableTopic(group), "label="+quote(TableTopic(group))+", shape=cylinder")
	}
	edge := func(from, to, attrs string) {
		fmt.Fprintf(&edges, "\t%s -> %s", from, to)
		if attrs != "" {
			fmt.Fprintf(&edges, " [%s]", attrs)
		}
		edges.WriteString(";\n")
	}
	for _, d := range t.decls {
		g := node("group:"+d.name, "label="+quote(d.name)+", shape=ellipse")
		for _, in := range d.inputs {
			if in.loop {
				loop := topic(in.topic.name)
				edge(g, loop, `label="loop"`)
				edge(loop, g, "")
				continue
			}
			edge(topic(in.topic.name), g, "")
		}
		if d.hasTable {
			edge(g, table(d.name), `label="table"`)
		}
		if len(d.timers) > 0 {
			st := node("topic:"+StateTopic(d.name), "label="+quote(StateTopic(d.name))+", shape=cylinder")
			edge(g, st, `label="windows, timers"`)
		}
		for _, j := range d.joins {
			edge(table(j.name), g, `label="join", style=dashed`)
		}
		for _, l := range d.lookups {
			edge(table(l.name), g, `label="lookup", style=dashed`)
		}
		for _, o := range d.outputs {
			edge(g, topic(o.name), "")
		}
		if d.policy.Kind() == processor.PolicyDeadLetter {
			edge(g, topic(d.policy.Topic()), `label="dead letter", style=dotted, color=red`)
		}
	}
	return "digraph topology {\n\trankdir=LR;\n\tnode [shape=box];\n" + nodes.String() + edges.String() + "}\n"
}

// quote returns s as a DOT quoted string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
