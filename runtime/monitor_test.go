package runtime_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
	"github.com/runnel-io/runnel/topology"
)

// eventually polls cond until it holds, failing the test with cond's last
// description after testTimeout. What it waits for (counters, a state
// shown by the monitor) has no event to wait on.
func eventually(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, what := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting: %s", what)
		case <-tick.C:
		}
	}
}

// get fetches url and decodes its JSON answer into v, failing the test if
// the status is not status.
func get(t *testing.T, url string, status int, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %s, want %d: %s", url, resp.Status, status, body)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v in %s", url, err, body)
		}
	}
}

// The shapes of the monitor's answers, as far as the tests read them.
type (
	apiStatus struct {
		Instance struct {
			Owner      string `json:"owner"`
			InstanceID string `json:"instance_id"`
			Host       string `json:"host"`
			PID        int    `json:"pid"`
		} `json:"instance"`
		Groups []apiGroup `json:"groups"`
	}
	apiGroup struct {
		Name       string         `json:"name"`
		Table      string         `json:"table"`
		Partitions int32          `json:"partitions"`
		State      string         `json:"state"`
		Error      string         `json:"error"`
		Generation int32          `json:"generation"`
		Owned      []apiPartition `json:"owned"`
	}
	apiPartition struct {
		Partition int32  `json:"partition"`
		Owner     string `json:"owner"`
		State     string `json:"state"`
		Error     string `json:"error"`
		Processed int64  `json:"processed"`
		Failed    int64  `json:"failed"`
		Inputs    []struct {
			Topic         string `json:"topic"`
			Offset        int64  `json:"offset"`
			HighWatermark int64  `json:"high_watermark"`
			Lag           int64  `json:"lag"`
		} `json:"inputs"`
		Restores []struct {
			Topic     string `json:"topic"`
			Restored  int64  `json:"restored"`
			Remaining int64  `json:"remaining"`
		} `json:"restores"`
	}
	apiRow struct {
		Group       string `json:"group"`
		Key         string `json:"key"`
		Partition   int32  `json:"partition"`
		Source      string `json:"source"`
		Found       bool   `json:"found"`
		Value       string `json:"value"`
		Raw         string `json:"raw"`
		RawEncoding string `json:"raw_encoding"`
	}
)

// groupStatus returns the monitor's status of one group.
func groupStatus(t *testing.T, base, name string) (apiStatus, apiGroup) {
	t.Helper()
	var st apiStatus
	get(t, base+"/api/groups", http.StatusOK, &st)
	for _, g := range st.Groups {
		if g.Name == name {
			return st, g
		}
	}
	t.Fatalf("/api/groups has no group %s: %+v", name, st)
	return st, apiGroup{}
}

// caughtUp reports whether the monitor shows every partition of g owned
// here and running, with nothing left to process, n records processed in
// all, and what it shows otherwise.
func caughtUp(g apiGroup, owner string, n int64) (bool, string) {
	if g.State != "running" || int32(len(g.Owned)) != g.Partitions {
		return false, fmt.Sprintf("group %s %s, owning %d of %d partitions", g.Name, g.State, len(g.Owned), g.Partitions)
	}
	var processed, offsets int64
	for _, p := range g.Owned {
		if p.Owner != owner || p.State != "running" || len(p.Inputs) != 1 || p.Inputs[0].Lag != 0 {
			return false, fmt.Sprintf("partition %+v", p)
		}
		processed += p.Processed
		offsets += p.Inputs[0].Offset
	}
	return processed == n && offsets == n, fmt.Sprintf("%d processed, next offsets adding up to %d, want %d", processed, offsets, n)
}

func TestMonitorAPI(t *testing.T) {
	addr := startLog(t)
	g, topo := countTopology(t, processor.Stop(), nil)
	opts := options(t, []string{addr}, t.TempDir(), 4)
	opts.HTTPAddr, opts.InstanceID = "127.0.0.1:0", "monitor-a"
	a := startInstance(t, topo, opts)
	base := "http://" + a.rt.MonitorAddr()
	const n, keys = 400, 20
	want := emit(t, a.rt, n, keys, func(int) string { return "x" })
	awaitCounts(t, a.rt, g, want)

	var graph topology.Graph
	get(t, base+"/api/topology", http.StatusOK, &graph)
	kinds := map[string]string{}
	for _, node := range graph.Nodes {
		kinds[node.ID] = node.Kind
	}
	if kinds["group:counter"] != "group" || kinds["topic:events"] != "topic" || kinds["topic:counter-table"] != "table" {
		t.Errorf("/api/topology nodes: %v", kinds)
	}
	if len(graph.Edges) != 2 {
		t.Errorf("/api/topology edges: %+v, want events -> counter -> counter-table", graph.Edges)
	}

	eventually(t, func() (bool, string) {
		st, grp := groupStatus(t, base, "counter")
		if st.Instance.Owner != "monitor-a" || st.Instance.InstanceID != "monitor-a" || st.Instance.PID == 0 {
			return false, fmt.Sprintf("instance %+v", st.Instance)
		}
		if grp.Table != "counter-table" || grp.Generation < 1 {
			return false, fmt.Sprintf("group %+v", grp)
		}
		return caughtUp(grp, "monitor-a", n)
	})

	// Rows, from this instance's stores: every partition is here.
	var row apiRow
	get(t, base+"/api/tables/counter?key=key-3", http.StatusOK, &row)
	if !row.Found || row.Source != "local" || row.Value != strconv.FormatInt(want["key-3"], 10) ||
		row.RawEncoding != "hex" || row.Raw != fmt.Sprintf("%016x", want["key-3"]) || row.Key != "key-3" {
		t.Errorf("row of key-3: %+v, want %d read locally", row, want["key-3"])
	}
	row = apiRow{}
	get(t, base+"/api/tables/counter?key=nobody", http.StatusOK, &row)
	if row.Found || row.Value != "" {
		t.Errorf("row of a key never counted: %+v", row)
	}
	row = apiRow{}
	get(t, base+"/api/tables/counter?key_hex="+fmt.Sprintf("%x", "key-4"), http.StatusOK, &row)
	if !row.Found || row.Value != strconv.FormatInt(want["key-4"], 10) {
		t.Errorf("row of key-4 by key_hex: %+v", row)
	}
	get(t, base+"/api/tables/nothing?key=a", http.StatusNotFound, nil)
	get(t, base+"/api/tables/counter", http.StatusBadRequest, nil)
	get(t, base+"/api/tables/counter?key_hex=zz", http.StatusBadRequest, nil)

	for _, path := range []string{"/", "/assets/monitor.js", "/assets/monitor.css"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s", path, resp.Status)
		}
	}
	// Without Options.Metrics, /metrics serves a registry of the runtime's
	// own, with the Go runtime's metrics beside.
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`runnel_records_processed_total{group="counter",partition="3"}`, "go_goroutines"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics has no %s", m)
		}
	}

	// A second instance takes half the partitions: the rows of its keys
	// are read through a view of the table.
	b := startInstance(t, topo, options(t, []string{addr}, t.TempDir(), 4))
	awaitPartitions(t, b, "counter", 2)
	awaitPartitions(t, a, "counter", 2)
	sources := map[string]int{}
	for k, count := range want {
		var row apiRow
		get(t, base+"/api/tables/counter?key="+url.QueryEscape(k), http.StatusOK, &row)
		if !row.Found || row.Value != strconv.FormatInt(count, 10) {
			t.Errorf("row of %s: %+v, want %d", k, row, count)
		}
		sources[row.Source]++
	}
	if sources["local"] == 0 || sources["view"] == 0 {
		t.Errorf("rows read from %v, want some here and some through the view", sources)
	}
}

// A record that fails under the stop policy stops the instance; the
// monitor, still serving, shows the partition failed, and why.
func TestMonitorShowsAFailedPartition(t *testing.T) {
	addr := startLog(t)
	_, topo := countTopology(t, processor.Stop(), func(v string) bool { return v == "bad" })
	opts := options(t, []string{addr}, t.TempDir(), 4)
	opts.HTTPAddr = "127.0.0.1:0"
	rt, err := runtime.New(t.Context(), topo, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	done := make(chan error, 1)
	go func() { done <- rt.Run(t.Context()) }()
	emitKVs(t, rt, events, kv{"k1", "x"}, kv{"k2", "bad"})
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "cannot count") {
			t.Fatalf("Run: %v, want the handler's error", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("the instance did not stop on a failed record")
	}

	_, grp := groupStatus(t, "http://"+rt.MonitorAddr(), "counter")
	if grp.State != "failed" || !strings.Contains(grp.Error, "cannot count") {
		t.Errorf("group %s: %s (%s), want failed", grp.Name, grp.State, grp.Error)
	}
	states := map[string]int{}
	for _, p := range grp.Owned {
		states[p.State]++
		if p.State == "failed" && (p.Failed != 1 || !strings.Contains(p.Error, `cannot count "bad"`)) {
			t.Errorf("failed partition %+v, want one failed record and its error", p)
		}
	}
	if states["failed"] != 1 || states["stopped"] != 3 {
		t.Errorf("partition states %v, want 1 failed, 3 stopped", states)
	}
}
