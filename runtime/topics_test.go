package runtime_test

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
	"github.com/runnel-io/runnel/topology"
)

// The tests here cover what runtime.New makes of the topics it finds.

// An existing table topic whose partition count or cleanup policy is not
// the table's makes New fail with an error naming the topic.
func TestNewRejectsAMismatchedTableTopic(t *testing.T) {
	for _, c := range []struct {
		name       string
		partitions int32
		configs    map[string]*string
		setting    string
	}{
		{"partitions", 3, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, "partitions"},
		{"cleanup policy", 4, map[string]*string{"cleanup.policy": kadm.StringPtr("delete")}, "cleanup.policy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			forEachLog(t, func(t *testing.T, addrs []string) {
				_, topo := countTopology(t, processor.Stop(), nil)
				createTopic(t, addrs, events.Name(), 4, nil)
				createTopic(t, addrs, "counter-table", c.partitions, c.configs)
				rt, err := runtime.New(t.Context(), topo, options(t, addrs, t.TempDir(), 4))
				if err == nil {
					rt.Close()
					t.Fatalf("New with counter-table of %d partitions and %s: no error", c.partitions, *c.configs["cleanup.policy"])
				}
				if msg := err.Error(); !strings.Contains(msg, `"counter-table"`) || !strings.Contains(msg, c.setting) {
					t.Fatalf("New: %v; want an error naming topic \"counter-table\" and %s", err, c.setting)
				}
			})
		})
	}
}

// A group's table is created compacted, with the group's input partition
// count, even when a group joining or looking it up comes first in the
// topology.
func TestNewCreatesJoinedTablesAsTables(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		profiles := profilesGroup()
		rates := ratesGroup()
		topo := newTopology(t, enricherGroup(profiles), pricerGroup(rates), profiles, rates)
		rt, err := runtime.New(t.Context(), topo, options(t, addrs, t.TempDir(), 4))
		if err != nil {
			t.Fatal(err)
		}
		rt.Close()
		adm := newKadm(t, addrs)
		offs, err := adm.ListEndOffsets(t.Context(), "profiles-table", "rates-table")
		if err != nil {
			t.Fatal(err)
		}
		cfgs, err := adm.DescribeTopicConfigs(t.Context(), "profiles-table", "rates-table")
		if err != nil {
			t.Fatal(err)
		}
		for _, topic := range []string{"profiles-table", "rates-table"} {
			if n := len(offs[topic]); n != 4 {
				t.Errorf("topic %s: %d partitions, want 4", topic, n)
			}
			cfg, err := cfgs.On(topic, nil)
			if err != nil {
				t.Fatal(err)
			}
			policy := "delete" // Kafka's default, for a broker that leaves defaults out
			for _, c := range cfg.Configs {
				if c.Key == "cleanup.policy" && c.Value != nil {
					policy = *c.Value
				}
			}
			if policy != "compact" {
				t.Errorf("topic %s: cleanup.policy %q, want \"compact\"", topic, policy)
			}
		}
	})
}

// A joined table that does not exist, of a group the topology does not
// list, makes New fail naming it; New does not create it as a stream.
func TestNewRejectsAMissingJoinedTable(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		topo := newTopology(t, enricherGroup(profilesGroup()))
		rt, err := runtime.New(t.Context(), topo, options(t, addrs, t.TempDir(), 4))
		if err == nil {
			rt.Close()
			t.Fatal("New joining a missing table of a group not in the topology: no error")
		}
		if !strings.Contains(err.Error(), `"profiles-table"`) {
			t.Fatalf("New: %v; want an error naming topic \"profiles-table\"", err)
		}
		topics, err := newKadm(t, addrs).ListTopics(t.Context(), "profiles-table")
		if err != nil {
			t.Fatal(err)
		}
		if topics.Has("profiles-table") {
			t.Fatal("New created the missing joined table profiles-table")
		}
	})
}

// A group that reads another group's changelog as its input, listed
// first, does not get that changelog created as a plain input: it is made
// a table, compacted, with its own group's input partition count.
func TestNewCreatesAChangelogReadAsAnInputAsATable(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		counter, _ := countTopology(t, processor.Stop(), nil)
		audit := topology.NewStatelessGroup("audit", processor.String)
		topology.Input(audit, topology.NewTopic(topology.TableTopic("counter"), processor.String, processor.Int64),
			func(processor.Context[string, processor.NoTable], string, int64) error { return nil })
		topo := newTopology(t, audit, counter)
		createTopic(t, addrs, events.Name(), 3, nil)
		rt, err := runtime.New(t.Context(), topo, options(t, addrs, t.TempDir(), 5))
		if err != nil {
			t.Fatal(err)
		}
		rt.Close()
		adm := newKadm(t, addrs)
		offs, err := adm.ListEndOffsets(t.Context(), "counter-table")
		if err != nil {
			t.Fatal(err)
		}
		if n := len(offs["counter-table"]); n != 3 {
			t.Errorf("counter-table: %d partitions, want the 3 of its group's input", n)
		}
		cfgs, err := adm.DescribeTopicConfigs(t.Context(), "counter-table")
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := cfgs.On("counter-table", nil)
		if err != nil {
			t.Fatal(err)
		}
		policy := "delete" // Kafka's default, for a broker that leaves defaults out
		for _, c := range cfg.Configs {
			if c.Key == "cleanup.policy" && c.Value != nil {
				policy = *c.Value
			}
		}
		if policy != "compact" {
			t.Errorf("counter-table: cleanup.policy %s, want compact", policy)
		}
	})
}
