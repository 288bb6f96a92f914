package runtime_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/runnel-io/runnel/internal/browsertest"
	"github.com/runnel-io/runnel/processor"
)

// The monitor page, in a real (headless) browser: it draws the topology,
// lists the partitions with their owner and state, and answers a table
// query typed into its form.
func TestMonitorPageInABrowser(t *testing.T) {
	addr := startLog(t)
	g, topo := countTopology(t, processor.Stop(), nil)
	opts := options(t, []string{addr}, t.TempDir(), 4)
	opts.HTTPAddr, opts.InstanceID = "127.0.0.1:0", "browser-test"
	in := startInstance(t, topo, opts)
	const n, keys = 300, 12
	want := emit(t, in.rt, n, keys, func(int) string { return "x" })
	awaitCounts(t, in.rt, g, want)

	// The browser's waits each end after testTimeout/2 (see do), so that
	// a failed one leaves time for the screenshot.
	ctx, cancel := context.WithTimeout(t.Context(), 2*testTimeout)
	defer cancel()
	browser, finish := browsertest.Start(ctx, t)
	defer finish()

	// do runs actions, giving up after testTimeout/2.
	do := func(actions ...chromedp.Action[chromedp.Void]) error {
		ctx, cancel := context.WithTimeout(browser, testTimeout/2)
		defer cancel()
		return chromedp.Do(ctx, actions...)
	}
	page := "http://" + in.rt.MonitorAddr() + "/"
	if err := do(chromedp.Navigate(page)); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}

	// The graph: the group, its input and its table as SVG nodes, joined
	// by edges.
	for _, id := range []string{"group:counter", "topic:events", "topic:counter-table"} {
		sel := chromedp.CSS(fmt.Sprintf(`#graph g.node[data-id=%q]`, id))
		if err := do(chromedp.WaitVisible(sel)); err != nil {
			t.Fatalf("graph node %s: %v", id, err)
		}
	}
	edges, err := chromedp.Run(browser, chromedp.Evaluate[int](`document.querySelectorAll("#graph path.edge").length`))
	if err != nil || edges != 2 {
		t.Errorf("graph has %d edges (%v), want 2", edges, err)
	}

	// The partitions: all four here, owned by this instance, running,
	// with nothing left to process.
	const partitions = `[...document.querySelectorAll('#groups .group[data-group="counter"] tbody tr[data-partition]')]`
	rows, err := chromedp.Run(browser, chromedp.Poll[[]map[string]string](
		`(() => {
			const rows = `+partitions+`.map((tr) => ({
				partition: tr.dataset.partition,
				owner: tr.querySelector(".owner").textContent,
				state: tr.querySelector(".partition-state").textContent,
				lag: tr.querySelector(".lag").textContent,
			}));
			return rows.length === 4 && rows.every((r) => r.state === "running" && r.lag === "0") && rows;
		})()`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(testTimeout/2)))
	if err != nil {
		t.Fatalf("partitions never showed running and caught up: %v", err)
	}
	for _, r := range rows {
		if r["owner"] != "browser-test" {
			t.Errorf("partition %s is owned by %q, want this instance, browser-test", r["partition"], r["owner"])
		}
	}

	// The query box: pick the group, type a key, submit, see its count.
	if err := do(
		chromedp.WaitReady(chromedp.CSS(`#query-group option[value="counter"]`)),
		chromedp.SetValue(chromedp.CSS("#query-group"), "counter"),
		chromedp.SendKeys(chromedp.CSS("#query-key"), "key-5"),
		chromedp.Click(chromedp.CSS("#query-submit")),
		chromedp.WaitVisible(chromedp.CSS("#query-value")),
	); err != nil {
		t.Fatalf("query: %v", err)
	}
	got, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS("#query-value")))
	if err != nil {
		t.Fatal(err)
	}
	if w := strconv.FormatInt(want["key-5"], 10); got != w {
		t.Errorf("query of key-5 shows %q, want %s", got, w)
	}
}
