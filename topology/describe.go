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

// Graph is a topology as nodes and edges, for tools that draw it (the
// runtime's monitor page does, and DOT renders it for Graphviz). It
// marshals to JSON as it is.
type Graph struct {
	// Nodes are the groups and topics, each once, in the order the groups
	// were given to New and, within a group, the order of Describe.
	Nodes []GraphNode `json:"nodes"`
	// Edges say which way records go, in the same order.
	Edges []GraphEdge `json:"edges"`
}

// GraphNode is a group or a topic of a [Graph].
type GraphNode struct {
	// ID is "group:" or "topic:" and the name: a group and a topic may
	// share a name.
	ID string `json:"id"`
	// Kind is "group", "topic", "table" (a group table's changelog) or
	// "state" (a group's windows and timers changelog).
	Kind string `json:"kind"`
	// Name is the group's or the topic's name.
	Name string `json:"name"`
}

// GraphEdge is an edge of a [Graph], between the IDs of two nodes.
type GraphEdge struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Kind is what goes along it: "input" (a topic's records to a group,
	// the loop's included), "output", "loop" (a group to its loop topic),
	// "table" and "state" (a group's writes to its changelogs), "join" and
	// "lookup" (table reads), "dead-letter".
	Kind string `json:"kind"`
}

// Graph returns t as nodes and edges. Tables of groups that t joins or
// looks up but does not run are there, their groups are not.
func (t *Topology) Graph() Graph {
	var g Graph
	seen := make(map[string]bool)
	node := func(id, kind, name string) string {
		if !seen[id] {
			seen[id] = true
			g.Nodes = append(g.Nodes, GraphNode{ID: id, Kind: kind, Name: name})
		}
		return id
	}
	topic := func(name string) string { return node("topic:"+name, "topic", name) }
	table := func(group string) string { return node("topic:"+TableTopic(group), "table", TableTopic(group)) }
	edge := func(from, to, kind string) { g.Edges = append(g.Edges, GraphEdge{From: from, To: to, Kind: kind}) }
	for _, d := range t.decls {
		grp := node("group:"+d.name, "group", d.name)
		for _, in := range d.inputs {
			if in.loop {
				loop := topic(in.topic.name)
				edge(grp, loop, "loop")
				edge(loop, grp, "input")
				continue
			}
			edge(topic(in.topic.name), grp, "input")
		}
		if d.hasTable {
			edge(grp, table(d.name), "table")
		}
		if len(d.timers) > 0 {
			edge(grp, node("topic:"+StateTopic(d.name), "state", StateTopic(d.name)), "state")
		}
		for _, j := range d.joins {
			edge(table(j.name), grp, "join")
		}
		for _, l := range d.lookups {
			edge(table(l.name), grp, "lookup")
		}
		for _, o := range d.outputs {
			edge(grp, topic(o.name), "output")
		}
		if d.policy.Kind() == processor.PolicyDeadLetter {
			edge(grp, topic(d.policy.Topic()), "dead-letter")
		}
	}
	return g
}

// DOT renders t as a Graphviz digraph: groups are ellipses, topics boxes,
// changelogs cylinders. Solid edges carry records (inputs, outputs, loops,
// table writes), dashed ones table reads (joins, lookups), a red dotted one
// dead letters. Render it with `dot -Tsvg`.
func (t *Topology) DOT() string {
	g := t.Graph()
	var b strings.Builder
	b.WriteString("digraph topology {\n\trankdir=LR;\n\tnode [shape=box];\n")
	for _, n := range g.Nodes {
		fmt.Fprintf(&b, "\t%s [label=%s", quote(n.ID), quote(n.Name))
		switch n.Kind {
		case "group":
			b.WriteString(", shape=ellipse")
		case "table", "state":
			b.WriteString(", shape=cylinder")
		}
		b.WriteString("];\n")
	}
	attrs := map[string]string{
		"loop":        `label="loop"`,
		"table":       `label="table"`,
		"state":       `label="windows, timers"`,
		"join":        `label="join", style=dashed`,
		"lookup":      `label="lookup", style=dashed`,
		"dead-letter": `label="dead letter", style=dotted, color=red`,
	}
	for _, e := range g.Edges {
		fmt.Fprintf(&b, "\t%s -> %s", quote(e.From), quote(e.To))
		if a := attrs[e.Kind]; a != "" {
			fmt.Fprintf(&b, " [%s]", a)
		}
		b.WriteString(";\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// quote returns s as a DOT quoted string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
