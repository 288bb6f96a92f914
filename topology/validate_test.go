package topology_test

import (
	"strings"
	"testing"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/topology"
)

// counter returns a group counting clicks, for cases to add a mistake to.
func counter() *topology.Group[string, int64] {
	g := topology.NewGroup("counter", processor.String, processor.Int64)
	topology.Input(g, clicks, countClick)
	return g
}

func usersGroup() *topology.Group[string, User] {
	g := topology.NewGroup("users", processor.String, processor.JSON[User]())
	topology.Input(g, updates, storeUser)
	return g
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		groups func() []topology.AnyGroup
		want   string
	}{{
		"two handlers for one input",
		func() []topology.AnyGroup {
			g := counter()
			topology.Input(g, clicks, countClick)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": two handlers for input "clicks"`,
	}, {
		"missing key codec of a topic",
		func() []topology.AnyGroup {
			g := topology.NewGroup("counter", processor.String, processor.Int64)
			topology.Input(g, topology.NewTopic[string]("clicks", nil, processor.JSON[Click]()), countClick)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": input "clicks": missing key codec`,
	}, {
		"missing value codec of a topic",
		func() []topology.AnyGroup {
			g := topology.NewGroup("counter", processor.String, processor.Int64)
			topology.Input(g, topology.NewTopic[string, Click]("clicks", processor.String, nil), countClick)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": input "clicks": missing value codec`,
	}, {
		"missing codec of an output",
		func() []topology.AnyGroup {
			g := counter()
			topology.Output(g, topology.NewTopic[string, Alert]("alerts", processor.String, nil))
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": output "alerts": missing value codec`,
	}, {
		"missing table codec",
		func() []topology.AnyGroup {
			g := topology.NewGroup[string, int64]("counter", processor.String, nil)
			topology.Input(g, clicks, countClick)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": missing table codec`,
	}, {
		"missing key codec of a group",
		func() []topology.AnyGroup {
			g := topology.NewGroup[string]("counter", nil, processor.Int64)
			topology.Input(g, clicks, countClick)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": missing key codec`,
	}, {
		"missing codec of a loop",
		func() []topology.AnyGroup {
			g := counter()
			topology.Loop[string, int64, int64](g, nil, retry)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": loop "counter-loop": missing value codec`,
	}, {
		"nil handler",
		func() []topology.AnyGroup {
			g := counter()
			topology.Input[string, int64, User](g, topology.NewTopic("views", processor.String, processor.JSON[User]()), nil)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": input "views": nil handler`,
	}, {
		"output declared twice",
		func() []topology.AnyGroup {
			g := counter()
			topology.Output(g, alerts)
			topology.Output(g, alerts)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": output "alerts" declared twice`,
	}, {
		"topic both input and output",
		func() []topology.AnyGroup {
			g := counter()
			topology.Output(g, clicks)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": topic "clicks" is both an input and an output`,
	}, {
		"join of a group without a table",
		func() []topology.AnyGroup {
			f := topology.NewStatelessGroup("filter", processor.String)
			topology.Input(f, clicks, filter)
			g := counter()
			topology.Join(g, f)
			return []topology.AnyGroup{g, f}
		},
		`topology: group "counter": join of group "filter", which has no table`,
	}, {
		"join of its own table",
		func() []topology.AnyGroup {
			g := counter()
			topology.Join(g, g)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": joins its own table; a handler reads its row with Context.Value`,
	}, {
		"join of a nil group",
		func() []topology.AnyGroup {
			g := counter()
			topology.Join[string, int64, User](g, nil)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": join of a nil group`,
	}, {
		"join whose keys encode differently",
		func() []topology.AnyGroup {
			u := topology.NewGroup("users", processor.JSON[string](), processor.JSON[User]())
			g := counter()
			topology.Join(g, u)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": join of group "users": its key codec json(string) differs from the group's key codec string; co-partitioned rows are found by the key's bytes, so they must encode alike`,
	}, {
		"joined twice",
		func() []topology.AnyGroup {
			u, g := usersGroup(), counter()
			topology.Join(g, u)
			topology.Join(g, u)
			return []topology.AnyGroup{g, u}
		},
		`topology: group "counter": group "users" joined twice`,
	}, {
		"lookup of a group without a table",
		func() []topology.AnyGroup {
			f := topology.NewStatelessGroup("filter", processor.String)
			g := counter()
			topology.Lookup(g, f)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": lookup of group "filter", which has no table`,
	}, {
		"joined and looked up",
		func() []topology.AnyGroup {
			u, g := usersGroup(), counter()
			topology.Join(g, u)
			topology.Lookup(g, u)
			return []topology.AnyGroup{g, u}
		},
		`topology: group "counter": group "users" is both joined and looked up`,
	}, {
		"input keys encode differently from the group's",
		func() []topology.AnyGroup {
			g := topology.NewGroup("counter", processor.String, processor.Int64)
			topology.Input(g, topology.NewTopic("clicks", processor.JSON[string](), processor.JSON[Click]()), countClick)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": input "clicks": key codec json(string) differs from the group's key codec string`,
	}, {
		"group name invalid as a topic name",
		func() []topology.AnyGroup {
			g := topology.NewGroup("click counter", processor.String, processor.Int64)
			topology.Input(g, clicks, countClick)
			return []topology.AnyGroup{g}
		},
		`topology: group "click counter": invalid group name: name "click counter" has ' '; only ASCII letters, digits, '.', '_' and '-' are allowed`,
	}, {
		"group name too long for its changelog",
		func() []topology.AnyGroup {
			g := topology.NewGroup(strings.Repeat("g", 245), processor.String, processor.Int64)
			topology.Input(g, clicks, countClick)
			return []topology.AnyGroup{g}
		},
		`group name too long for its internal topics: name "` + strings.Repeat("g", 245) + `-table" is longer than 249 characters`,
	}, {
		"invalid topic name",
		func() []topology.AnyGroup {
			g := counter()
			topology.Output(g, topology.NewTopic("..", processor.String, processor.String))
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": output "..": invalid topic name: name ".." is reserved`,
	}, {
		"no inputs",
		func() []topology.AnyGroup {
			g := topology.NewGroup("counter", processor.String, processor.Int64)
			topology.Loop(g, processor.Int64, retry)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": no inputs`,
	}, {
		"loop declared twice",
		func() []topology.AnyGroup {
			g := counter()
			topology.Loop(g, processor.Int64, retry)
			topology.Loop(g, processor.Int64, retry)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": loop declared twice`,
	}, {
		"own loop topic as an input",
		func() []topology.AnyGroup {
			g := counter()
			topology.Input(g, topology.NewTopic("counter-loop", processor.String, processor.Int64), retry)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": input "counter-loop" is the group's loop topic; declare it with Loop`,
	}, {
		"another group's loop topic as an input",
		func() []topology.AnyGroup {
			u := usersGroup()
			g := counter()
			topology.Input(g, topology.NewTopic("users-loop", processor.String, processor.Int64), retry)
			return []topology.AnyGroup{g, u}
		},
		`topology: group "counter": input "users-loop" is the loop topic of group "users"`,
	}, {
		"own changelog as an input",
		func() []topology.AnyGroup {
			g := counter()
			topology.Input(g, topology.NewTopic("counter-table", processor.String, processor.Int64), retry)
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": input "counter-table" is the group's own changelog`,
	}, {
		"another group's state changelog as an input",
		func() []topology.AnyGroup {
			u := usersGroup()
			topology.Timer(u, "expire", func(processor.Context[string, User], string, time.Time) error { return nil })
			g := counter()
			topology.Input(g, topology.NewTopic("users-state", processor.String, processor.Int64), retry)
			return []topology.AnyGroup{g, u}
		},
		`topology: group "counter": input "users-state" is the state changelog of group "users"`,
	}, {
		"output to another group's state changelog",
		func() []topology.AnyGroup {
			u := usersGroup()
			topology.Timer(u, "expire", func(processor.Context[string, User], string, time.Time) error { return nil })
			g := counter()
			topology.Output(g, topology.NewTopic("users-state", processor.String, processor.Int64))
			return []topology.AnyGroup{g, u}
		},
		`topology: group "counter": output "users-state" is the state changelog of group "users"`,
	}, {
		"output to another group's changelog",
		func() []topology.AnyGroup {
			u, g := usersGroup(), counter()
			topology.Output(g, topology.NewTopic("users-table", processor.String, processor.JSON[User]()))
			return []topology.AnyGroup{g, u}
		},
		`topology: group "counter": output "users-table" is the changelog of group "users"`,
	}, {
		"dead-letter topic that is an input",
		func() []topology.AnyGroup {
			g := counter()
			g.OnError(processor.DeadLetter("clicks"))
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": dead-letter topic "clicks" is an input of the group: failed records would fail again, forever`,
	}, {
		"dead-letter topic without a name",
		func() []topology.AnyGroup {
			g := counter()
			g.OnError(processor.DeadLetter(""))
			return []topology.AnyGroup{g}
		},
		`topology: group "counter": dead-letter topic: invalid topic name: empty name`,
	}, {
		"one topic, two codecs",
		func() []topology.AnyGroup {
			g := counter()
			topology.Output(g, alerts)
			f := topology.NewStatelessGroup("pager", processor.String)
			topology.Input(f, topology.NewTopic("alerts", processor.String, processor.String),
				func(processor.Context[string, processor.NoTable], string, string) error { return nil })
			return []topology.AnyGroup{g, f}
		},
		`topology: topic "alerts" has value codec json(topology_test.Alert) as output of group "counter" but string as input of group "pager"`,
	}, {
		"a changelog read with the wrong codec",
		func() []topology.AnyGroup {
			g := counter()
			f := topology.NewStatelessGroup("audit", processor.String)
			topology.Input(f, topology.NewTopic("counter-table", processor.String, processor.String),
				func(processor.Context[string, processor.NoTable], string, string) error { return nil })
			return []topology.AnyGroup{g, f}
		},
		`topology: topic "counter-table" has value codec int64 as changelog of group "counter" but string as input of group "audit"`,
	}, {
		"two groups of one name",
		func() []topology.AnyGroup { return []topology.AnyGroup{counter(), counter()} },
		`topology: two groups are named "counter"`,
	}, {
		"a group listed twice",
		func() []topology.AnyGroup {
			g := counter()
			return []topology.AnyGroup{g, g}
		},
		`topology: group "counter" is listed twice`,
	}, {
		"a joined group that is not the listed one",
		func() []topology.AnyGroup {
			g := counter()
			topology.Join(g, usersGroup())
			return []topology.AnyGroup{g, usersGroup()}
		},
		`topology: group "counter" joins a group named "users" that is not the group of that name listed or referenced elsewhere`,
	}, {
		"a nil group",
		func() []topology.AnyGroup {
			var g *topology.Group[string, int64]
			return []topology.AnyGroup{counter(), g, nil}
		},
		"topology: group #2 is nil\ntopology: group #3 is nil",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			topo, err := topology.New(tc.groups()...)
			if err == nil {
				t.Fatalf("New succeeded: %s", topo.Describe())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n%v\ndoes not contain\n%s", err, tc.want)
			}
		})
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	g := topology.NewGroup("counter", processor.String, processor.Int64)
	topology.Output(g, alerts)
	topology.Output(g, alerts)
	g.OnError(processor.DeadLetter("bad name"))
	_, err := topology.New(g)
	want := `topology: group "counter": no inputs
topology: group "counter": output "alerts" declared twice
topology: group "counter": dead-letter topic: invalid topic name: name "bad name" has ' '; only ASCII letters, digits, '.', '_' and '-' are allowed`
	if err == nil || err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
}

func TestEdgesOfANilGroupPanic(t *testing.T) {
	defer func() {
		if r := recover(); r != "topology: Input of a nil group" {
			t.Errorf("recovered %v", r)
		}
	}()
	var g *topology.Group[string, int64]
	topology.Input(g, clicks, countClick)
}

// validated returns the error of Validate for the example topology with the
// given partition counts.
func validated(t *testing.T, partitions map[string]int32) error {
	t.Helper()
	return mustNew(t, example()...).Validate(partitions)
}

// exampleCounts are partition counts under which the example is valid.
func exampleCounts() map[string]int32 {
	return map[string]int32{
		"clicks": 4, "user-updates": 4, "alerts": 1, "bot-clicks": 2, "clicks-dlq": 1, "regions-table": 16,
	}
}

func TestValidate(t *testing.T) {
	if err := validated(t, exampleCounts()); err != nil {
		t.Fatalf("valid counts: %v", err)
	}
	// Internal topics that exist with the right count are fine too.
	counts := exampleCounts()
	counts["click-counter-table"], counts["click-counter-loop"], counts["users-table"] = 4, 4, 4
	if err := validated(t, counts); err != nil {
		t.Fatalf("valid counts with internal topics: %v", err)
	}

	for _, tc := range []struct {
		name   string
		change func(map[string]int32)
		want   string
	}{{
		"joined table's changelog has another count",
		func(c map[string]int32) { c["users-table"] = 8 },
		`topology: group "click-counter": join of group "users": table "users-table" has 8 partitions, the group's inputs ("clicks") have 4; joined tables must be co-partitioned`,
	}, {
		"joined group's inputs have another count",
		func(c map[string]int32) { c["user-updates"] = 8 },
		`topology: group "click-counter": join of group "users": group "users"'s inputs has 8 partitions, the group's inputs ("clicks") have 4; joined tables must be co-partitioned`,
	}, {
		"own changelog has another count",
		func(c map[string]int32) { c["click-counter-table"] = 3 },
		`topology: group "click-counter": topic "click-counter-table" has 3 partitions, the group's inputs ("clicks") have 4`,
	}, {
		"loop topic has another count",
		func(c map[string]int32) { c["click-counter-loop"] = 5 },
		`topology: group "click-counter": topic "click-counter-loop" has 5 partitions, the group's inputs ("clicks") have 4`,
	}, {
		"missing input",
		func(c map[string]int32) { delete(c, "clicks") },
		`topology: group "click-counter": input topic "clicks" does not exist`,
	}, {
		"missing output",
		func(c map[string]int32) { delete(c, "alerts") },
		`topology: group "click-counter": output topic "alerts" does not exist`,
	}, {
		"missing dead-letter topic",
		func(c map[string]int32) { delete(c, "clicks-dlq") },
		`topology: group "click-counter": dead-letter topic "clicks-dlq" does not exist`,
	}, {
		"missing looked-up table of a group run elsewhere",
		func(c map[string]int32) { delete(c, "regions-table") },
		`topology: group "click-counter": looked-up table "regions-table" does not exist, and group "regions" is not in the topology to create it`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			counts := exampleCounts()
			tc.change(counts)
			err := validated(t, counts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n%v\ndoes not contain\n%s", err, tc.want)
			}
		})
	}
}

func TestValidateCoPartitionedInputs(t *testing.T) {
	g := counter()
	topology.Input(g, topology.NewTopic("views", processor.String, processor.JSON[Click]()), countClick)
	err := mustNew(t, g).Validate(map[string]int32{"clicks": 4, "views": 6})
	want := `topology: group "counter": inputs are not co-partitioned: "clicks" has 4 partitions, "views" has 6`
	if err == nil || err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
}

func TestValidateJoinOfAGroupRunElsewhere(t *testing.T) {
	g := counter()
	topology.Join(g, usersGroup())
	topo := mustNew(t, g)
	err := topo.Validate(map[string]int32{"clicks": 4})
	want := `topology: group "counter": joined table "users-table" does not exist, and group "users" is not in the topology to create it`
	if err == nil || err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
	if err := topo.Validate(map[string]int32{"clicks": 4, "users-table": 4}); err != nil {
		t.Error(err)
	}
}
