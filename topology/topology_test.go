package topology_test

import (
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/topology"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

type Click struct{ User, URL string }
type User struct{ Name, Region string }
type Alert struct {
	User  string
	Count int64
}

var (
	clicks  = topology.NewTopic("clicks", processor.String, processor.JSON[Click]())
	updates = topology.NewTopic("user-updates", processor.String, processor.JSON[User]())
	alerts  = topology.NewTopic("alerts", processor.String, processor.JSON[Alert]())
)

// Handlers that do nothing, for declarations whose behaviour is not tested.
func countClick(processor.Context[string, int64], string, Click) error         { return nil }
func storeUser(processor.Context[string, User], string, User) error            { return nil }
func retry(processor.Context[string, int64], string, int64) error              { return nil }
func filter(processor.Context[string, processor.NoTable], string, Click) error { return nil }

// example declares the topology of the golden files: a counter of clicks
// that joins users, looks up regions, loops and alerts; the users group it
// joins; and a stateless filter. regions runs elsewhere.
func example() []topology.AnyGroup {
	users := topology.NewGroup("users", processor.String, processor.JSON[User]())
	topology.Input(users, updates, storeUser)

	regions := topology.NewGroup("regions", processor.String, processor.String)

	counter := topology.NewGroup("click-counter", processor.String, processor.Int64)
	topology.Input(counter, clicks, countClick)
	topology.Loop(counter, processor.Int64, retry)
	topology.Join(counter, users)
	topology.Lookup(counter, regions)
	topology.Output(counter, alerts)
	counter.OnError(processor.DeadLetter("clicks-dlq"))
	topology.Windowed(counter, "per-minute", topology.WindowConfig[string, int64, int64]{
		Windows: processor.Tumbling(time.Minute).WithGrace(10 * time.Second), Values: processor.Int64,
	})
	topology.Timer(counter, "idle", func(processor.Context[string, int64], string, time.Time) error { return nil })
	topology.Punctuate(counter, time.Hour, func(processor.Context[string, int64], time.Time) error { return nil })

	bots := topology.NewTopic("bot-clicks", processor.String, processor.JSON[Click]())
	f := topology.NewStatelessGroup("bot-filter", processor.String)
	topology.Input(f, clicks, filter)
	topology.Output(f, bots)
	f.OnError(processor.Skip())
	return []topology.AnyGroup{users, counter, f}
}

func mustNew(t *testing.T, groups ...topology.AnyGroup) *topology.Topology {
	t.Helper()
	topo, err := topology.New(groups...)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestGroups(t *testing.T) {
	topo := mustNew(t, example()...)
	gs := topo.Groups()
	if len(gs) != 3 || gs[0].Name != "users" || gs[1].Name != "click-counter" || gs[2].Name != "bot-filter" {
		t.Fatalf("groups %v", gs)
	}
	c := gs[1]
	var inputs []string
	for _, in := range c.Inputs {
		if in.Handler == nil {
			t.Errorf("input %s has no handler", in.Topic)
		}
		inputs = append(inputs, in.Topic)
		if in.Loop != (in.Topic == "click-counter-loop") {
			t.Errorf("input %s: Loop %v", in.Topic, in.Loop)
		}
	}
	if !slices.Equal(inputs, []string{"clicks", "click-counter-loop"}) {
		t.Errorf("inputs %q", inputs)
	}
	if c.Table != "click-counter-table" || c.Loop != "click-counter-loop" {
		t.Errorf("table %q, loop %q", c.Table, c.Loop)
	}
	if !slices.Equal(c.Joins, []topology.TableRef{{Group: "users", Topic: "users-table"}}) ||
		!slices.Equal(c.Lookups, []topology.TableRef{{Group: "regions", Topic: "regions-table"}}) {
		t.Errorf("joins %v, lookups %v", c.Joins, c.Lookups)
	}
	if !slices.Equal(c.Outputs, []string{"alerts"}) || c.Policy != processor.DeadLetter("clicks-dlq") {
		t.Errorf("outputs %v, policy %v", c.Outputs, c.Policy)
	}
	if c.State != "click-counter-state" || len(c.Punctuations) != 1 || c.Punctuations[0].Every != time.Hour {
		t.Errorf("state %q, punctuations %v", c.State, c.Punctuations)
	}
	if _, ok := c.Timers["idle"]; !ok || c.Timers[processor.ExpireTimer("per-minute")] == nil || len(c.Timers) != 2 {
		t.Errorf("timers %v: want idle and the windowed table's expiry", slices.Collect(maps.Keys(c.Timers)))
	}
	if f := gs[2]; f.Table != "" || f.Loop != "" || f.Policy != processor.Skip() || f.State != "" {
		t.Errorf("filter: table %q, loop %q, policy %v", f.Table, f.Loop, f.Policy)
	}
	if gs[0].Policy != processor.Stop() {
		t.Errorf("default policy %v", gs[0].Policy)
	}

	// The specs are copies, and New took a snapshot.
	gs[1].Outputs[0] = "changed"
	if g, _ := topo.Group("click-counter"); g.Outputs[0] != "alerts" {
		t.Error("changing a GroupSpec changed the topology")
	}
	if _, ok := topo.Group("regions"); ok {
		t.Error("a referenced group that is not listed is one of the topology's groups")
	}
}

func TestNewTakesASnapshot(t *testing.T) {
	g := topology.NewGroup("g", processor.String, processor.Int64)
	topology.Input(g, clicks, countClick)
	topo := mustNew(t, g)
	topology.Output(g, alerts)
	if spec, _ := topo.Group("g"); len(spec.Outputs) != 0 {
		t.Errorf("an edge declared after New changed the topology: %v", spec.Outputs)
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (go test -update rewrites it)\n got:\n%s\nwant:\n%s", name, path, got, want)
	}
}

func TestDescribe(t *testing.T) {
	golden(t, "describe.golden", mustNew(t, example()...).Describe())
}

func TestDOT(t *testing.T) {
	golden(t, "topology.dot", mustNew(t, example()...).DOT())
}

func TestDescribeIsStable(t *testing.T) {
	topo := mustNew(t, example()...)
	a, b := topo.Describe()+topo.DOT(), mustNew(t, example()...).Describe()+topo.DOT()
	if a != b {
		t.Error("two descriptions of one topology differ")
	}
	if strings.Contains(topo.Describe(), " \n") {
		t.Error("Describe leaves trailing spaces")
	}
}

func TestGraph(t *testing.T) {
	g := mustNew(t, example()...).Graph()
	kinds := map[string]string{}
	for _, n := range g.Nodes {
		if _, dup := kinds[n.ID]; dup {
			t.Errorf("node %s listed twice", n.ID)
		}
		kinds[n.ID] = n.Kind
	}
	for id, kind := range map[string]string{
		"group:click-counter":       "group",
		"topic:clicks":              "topic",
		"topic:click-counter-table": "table",
		"topic:regions-table":       "table",
		"topic:clicks-dlq":          "topic",
	} {
		if kinds[id] != kind {
			t.Errorf("node %s is of kind %q, want %q", id, kinds[id], kind)
		}
	}
	if _, ok := kinds["group:regions"]; ok {
		t.Error("regions runs elsewhere but has a group node")
	}
	var edges []string
	for _, e := range g.Edges {
		if kinds[e.From] == "" || kinds[e.To] == "" {
			t.Errorf("edge %+v has an end that is no node", e)
		}
		edges = append(edges, e.From+" "+e.Kind+" "+e.To)
	}
	for _, want := range []string{
		"topic:clicks input group:click-counter",
		"group:click-counter loop topic:click-counter-loop",
		"topic:click-counter-loop input group:click-counter",
		"topic:users-table join group:click-counter",
		"topic:regions-table lookup group:click-counter",
		"group:click-counter dead-letter topic:clicks-dlq",
		"group:bot-filter output topic:bot-clicks",
	} {
		if !slices.Contains(edges, want) {
			t.Errorf("no edge %q in %q", want, edges)
		}
	}
}

func TestTableCodecs(t *testing.T) {
	topo := mustNew(t, example()...)
	keys, values, ok := topo.TableCodecs("click-counter")
	if !ok || processor.CodecName(keys) != "string" || processor.CodecName(values) != "int64" {
		t.Errorf("TableCodecs(click-counter) = %v, %v, %v", keys, values, ok)
	}
	if _, values, ok := topo.TableCodecs("regions"); !ok || processor.CodecName(values) != "string" {
		t.Errorf("TableCodecs(regions), looked up only = %v, %v", values, ok)
	}
	for _, name := range []string{"bot-filter", "nobody"} {
		if _, _, ok := topo.TableCodecs(name); ok {
			t.Errorf("TableCodecs(%s) is ok", name)
		}
	}
}
