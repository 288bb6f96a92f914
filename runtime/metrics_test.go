package runtime_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
)

// scrape gathers g and returns the sum of the values of the series of the
// metric name whose labels include match (name, value, name, value...),
// and how many series it added. A histogram's value is its sample count.
func scrape(t *testing.T, g prometheus.Gatherer, name string, match ...string) (sum float64, series int) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(match); i += 2 {
				if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
					return l.GetName() == match[i] && l.GetValue() == match[i+1]
				}) {
					continue metrics
				}
			}
			series++
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum, series
}

// metricIs returns a condition for eventually: the metric's sum over the
// matching series is want, over series series (any number if series < 0).
func metricIs(t *testing.T, g prometheus.Gatherer, want float64, series int, name string, match ...string) func() (bool, string) {
	return func() (bool, string) {
		sum, n := scrape(t, g, name, match...)
		return sum == want && (series < 0 || n == series), fmt.Sprintf("%s%v = %v over %d series, want %v over %d", name, match, sum, n, want, series)
	}
}

// Known traffic, some of which fails under the skip policy, shows in the
// metrics per group and partition; lag drains to 0; a second instance
// restoring the table from scratch counts what it restored.
func TestMetricsCountRecordsLagRestoresAndCommits(t *testing.T) {
	addr := startLog(t)
	g, topo := countTopology(t, processor.Skip(), func(v string) bool { return v == "bad" })
	const n, keys, parts = 1000, 50, 4
	reg := prometheus.NewRegistry()
	opts := options(t, []string{addr}, t.TempDir(), parts)
	opts.Metrics = reg
	a := startInstance(t, topo, opts)

	// Every 100th record fails: 10 in all, all of key-49.
	want := map[string]int64{}
	kvs := make([]kv, n)
	for i := range n {
		k := fmt.Sprintf("key-%d", i%keys)
		if i%100 == 99 {
			kvs[i] = kv{k, "bad"}
			continue
		}
		kvs[i] = kv{k, "x"}
		want[k]++
	}
	emitKVs(t, a.rt, events, kvs...)
	awaitCounts(t, a.rt, g, want)

	group := []string{"group", "counter"}
	eventually(t, metricIs(t, reg, n-10, parts, "runnel_records_processed_total", group...))
	eventually(t, metricIs(t, reg, 10, parts, "runnel_records_failed_total", group...))
	eventually(t, metricIs(t, reg, 10, parts, "runnel_records_skipped_total", group...))
	eventually(t, metricIs(t, reg, 0, parts, "runnel_records_dead_lettered_total", group...))
	// Every record is processed: each partition's next offset is its high
	// watermark, and together they are the records sent.
	eventually(t, metricIs(t, reg, 0, parts, "runnel_input_lag_records", "group", "counter", "topic", "events"))
	eventually(t, metricIs(t, reg, n, parts, "runnel_input_next_offset", "group", "counter", "topic", "events"))
	eventually(t, metricIs(t, reg, parts, 1, "runnel_group_partitions", group...))
	eventually(t, func() (bool, string) {
		sum, _ := scrape(t, reg, "runnel_commit_duration_seconds", group...)
		return sum > 0, fmt.Sprintf("%v commits timed", sum)
	})
	if sum, _ := scrape(t, reg, "runnel_group_generations_total", group...); sum < 1 {
		t.Errorf("runnel_group_generations_total = %v, want at least 1", sum)
	}
	// The first record of each partition, and one in 16 after it.
	if sum, _ := scrape(t, reg, "runnel_handler_duration_seconds", group...); sum < parts || sum > n {
		t.Errorf("handler timed %v times, want between %d and %d", sum, parts, n)
	}
	a.stop(t)

	// A new instance, with stores of its own, restores the whole table.
	reg2 := prometheus.NewRegistry()
	opts = options(t, []string{addr}, t.TempDir(), parts)
	opts.Metrics, opts.HTTPAddr = reg2, "127.0.0.1:0"
	b := startInstance(t, topo, opts)
	awaitPartitions(t, b, "counter", parts)
	table := []string{"group", "counter", "topic", "counter-table"}
	restored := b.rt.Stats("counter").Restored.Load()
	if restored < keys {
		t.Fatalf("restored %d changelog records, want at least one per key (%d)", restored, keys)
	}
	eventually(t, metricIs(t, reg2, float64(restored), parts, "runnel_restore_records_total", table...))
	eventually(t, metricIs(t, reg2, 0, parts, "runnel_restore_remaining_records", table...))

	// /metrics serves Options.Metrics, which is a registry.
	resp, err := http.Get("http://" + b.rt.MonitorAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}
	if !strings.Contains(string(body), `runnel_restore_records_total{group="counter",partition="0",topic="counter-table"}`) {
		t.Errorf("/metrics has no restore counter of partition 0:\n%s", body)
	}

	// A registry takes one runtime's metrics at a time.
	rt, err := runtime.New(t.Context(), topo, runtime.Options{Brokers: []string{addr}, Dir: t.TempDir(), Metrics: reg2})
	if err == nil {
		rt.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Errorf("New with a registry already holding a runtime's metrics: %v, want an error", err)
	}
}

// With the embedded log, Options.Metrics gets the log's metrics too; Close
// takes all of them back, so that a runtime started again may register in
// the same registry.
func TestMetricsOfTheEmbeddedLog(t *testing.T) {
	_, topo := countTopology(t, processor.Stop(), nil)
	reg := prometheus.NewRegistry()
	for range 2 {
		rt, err := runtime.New(t.Context(), topo, runtime.Options{Dir: t.TempDir(), Metrics: reg, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		_, logSeries := scrape(t, reg, "runnel_broker_topic_partitions")
		_, groupSeries := scrape(t, reg, "runnel_group_generations_total", "group", "counter")
		if err := rt.Close(); err != nil {
			t.Fatal(err)
		}
		if logSeries == 0 || groupSeries != 1 {
			t.Fatalf("registry holds %d series of the log's topics and %d of the group, want some and 1", logSeries, groupSeries)
		}
	}
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		t.Errorf("after Close the registry still holds %d metrics (%v)", len(mfs), err)
	}
}
