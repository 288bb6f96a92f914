package main

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
	"github.com/runnel-io/runnel/topology"
)

// TestTablesOfTopology runs a runnel topology that counts clicks per user,
// feeds it with `runnel produce`, and reads its table with `runnel tables`.
func TestTablesOfTopology(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr

	clicks := topology.NewTopic("clicks", processor.String, processor.String)
	g := topology.NewGroup("click-counter", processor.String, processor.Int64)
	topology.Input(g, clicks, func(ctx processor.Context[string, int64], _ string, _ string) error {
		n, _ := ctx.Value()
		return ctx.SetValue(n + 1)
	})
	topo, err := topology.New(g)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := runtime.New(t.Context(), topo, runtime.Options{Brokers: []string{addr}, Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- rt.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-ran; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("runtime: %v", err)
		}
		rt.Close()
	})

	input := "ada:/a\ngrace:/a\nada:/b\nlinus:/a\nada:/c\ngrace:/b\n"
	if out := mustRun(t, "produce", "clicks", "--key-sep", ":", "--file", writeFile(t, input), b); out != "produced 6 records to clicks\n" {
		t.Fatalf("produce: %q", out)
	}
	awaitCounts(t, rt, g, map[string]int64{"ada": 3, "grace": 2, "linus": 1})

	r := runCLI(t, "tables", "scan", "click-counter", "--value-format", "int64", "--progress", b)
	if r.code != 0 {
		t.Fatalf("scan: exit status %d: %s", r.code, r.stderr)
	}
	checkGolden(t, "tables_scan", r.stdout)
	if want := "read the table of group click-counter: 3 rows\n"; !strings.HasSuffix(r.stderr, want) {
		t.Errorf("progress on stderr does not end with %q:\n%s", want, r.stderr)
	}

	if out := mustRun(t, "tables", "get", "click-counter", "ada", "--value-format=int64", b); out != "3\n" {
		t.Errorf("get ada: %q, want 3", out)
	}
	var row tableRow
	decodeJSON(t, mustRun(t, "tables", "get", "click-counter", "grace", "--value-format=hex", "--output=json", b), &row)
	if row != (tableRow{Key: "grace", Value: "0000000000000002"}) {
		t.Errorf("get grace as JSON: %+v", row)
	}
	var rows []tableRow
	decodeJSON(t, mustRun(t, "tables", "scan", "click-counter", "--prefix", "l", "--value-format=int64", "--output=json", b), &rows)
	if len(rows) != 1 || rows[0] != (tableRow{Key: "linus", Value: "1"}) {
		t.Errorf("scan --prefix l as JSON: %+v", rows)
	}
	// The values as strings are 8 raw bytes: quoted, so the columns hold.
	if out := mustRun(t, "tables", "scan", "click-counter", "--prefix", "ada", b); out != "KEY  VALUE\nada  \"\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x03\"\n" {
		t.Errorf("scan with string values: %q", out)
	}

	// The running group is a consumer group like any other to the groups
	// commands, with runnel's own assignment protocol.
	var descs []groupDescription
	decodeJSON(t, mustRun(t, "groups", "describe", "click-counter", "--output", "json", b), &descs)
	if d := descs[0]; d.State != "Stable" || d.Protocol != "runnel-copartition" || len(d.Members) != 1 ||
		!slices.ContainsFunc(d.Members[0].Assignments, func(a topicPartitions) bool {
			return a.Topic == "clicks" && slices.Equal(a.Partitions, []int32{0, 1, 2})
		}) {
		t.Errorf("describe of the running group: %+v", d)
	}
	wantFailure(t, 1, `group "click-counter" is not empty (state Stable, 1 member)`,
		"groups", "reset-offsets", "click-counter", "--topic", "clicks", "--to", "earliest", b)

	t.Run("errors", func(t *testing.T) {
		wantFailure(t, 1, "runnel tables get: table of group \"click-counter\" has no row for key \"zed\"\n", "tables", "get", "click-counter", "zed", b)
		wantFailure(t, 1, "runnel tables scan: group \"nosuch\" has no table: topic \"nosuch-table\" does not exist\n", "tables", "scan", "nosuch", b)
		wantFailure(t, 2, `invalid value "int32" for flag -value-format`, "tables", "scan", "click-counter", "--value-format", "int32", b)
		wantFailure(t, 2, "want a group and a key, got 1 arguments", "tables", "get", "click-counter", b)
		wantFailure(t, 2, "runnel tables: missing command", "tables")
	})
}

// TestTablesOfChangelog reads a table written straight to its changelog,
// with updates, a deleted row, and keys and values a table cell cannot show
// as they are.
func TestTablesOfChangelog(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr
	createTopic(t, addr, "direct-table", 2, map[string]*string{"cleanup.policy": ptr("compact")})
	rec := func(p int32, k, v string, tombstone bool) *kgo.Record {
		r := &kgo.Record{Topic: "direct-table", Partition: p, Key: []byte(k), Value: []byte(v)}
		if tombstone {
			r.Value = nil
		}
		return r
	}
	produceTo(t, addr,
		rec(0, "alpha", "1", false),
		rec(1, "beta", "old", false),
		rec(0, "gone", "soon", false),
		rec(1, "beta", "new", false),
		rec(0, "gone", "", true),
		rec(1, "tab\tkey", "line\nbreak", false),
		rec(0, "empty", "", false),
	)
	checkGolden(t, "tables_scan_changelog", mustRun(t, "tables", "scan", "direct", b))
	var rows []tableRow
	decodeJSON(t, mustRun(t, "tables", "scan", "direct", "--output", "json", b), &rows)
	got := map[string]string{}
	for _, r := range rows {
		got[r.Key] = r.Value
	}
	if want := map[string]string{"alpha": "1", "beta": "new", "empty": "", "tab\tkey": "line\nbreak"}; !maps.Equal(got, want) {
		t.Errorf("scan JSON: %q, want %q", got, want)
	}
	wantFailure(t, 1, `has no row for key "gone"`, "tables", "get", "direct", "gone", b)
	wantFailure(t, 1, `key "alpha": value of 1 bytes is not an int64`, "tables", "scan", "direct", "--value-format", "int64", b)
	if out := mustRun(t, "tables", "get", "direct", "beta", "--value-format", "base64", b); out != "bmV3\n" {
		t.Errorf("get beta as base64: %q", out)
	}
}

func ptr[T any](v T) *T { return &v }

// awaitCounts waits until a view of g's table equals want.
func awaitCounts(t *testing.T, rt *runtime.Runtime, g *topology.Group[string, int64], want map[string]int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	v, err := runtime.NewView(ctx, rt, g)
	if err != nil {
		t.Fatal(err)
	}
	for {
		changed := v.Changed()
		got := map[string]int64{}
		if err := v.Iterate(func(k string, n int64) bool { got[k] = n; return true }); err != nil {
			t.Fatal(err)
		}
		if maps.Equal(got, want) {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("table of %s is %v, want %v", g.Name(), got, want)
		}
	}
}
