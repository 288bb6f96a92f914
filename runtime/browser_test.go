package runtime_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/runnel-io/runnel/processor"
)

// chromium returns the path of a Chromium (or Chrome) to drive, skipping
// the test if there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skip("no Chromium to drive the monitor page with: install Debian's chromium package (apt-get install chromium), as .ci/run does")
	return ""
}

// The monitor page, in a real (headless) browser: it draws the topology,
// lists the partitions with their owner and state, and answers a table
// query typed into its form.
func TestMonitorPageInABrowser(t *testing.T) {
	exe := chromium(t)
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
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	// The first actions start the browser, which lives as long as their
	// context: this one, not the shorter ones of the steps below.
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	// On failure, the page as it was, for whoever reads the log (a PNG:
	// quality 100 asks for one).
	defer func() {
		if !t.Failed() {
			return
		}
		shotCtx, cancel := context.WithTimeout(browser, 10*time.Second)
		defer cancel()
		png, err := chromedp.Run(shotCtx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("no screenshot: %v", err)
			return
		}
		path := filepath.Join(t.ArtifactDir(), "monitor.png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Logf("no screenshot: %v", err)
			return
		}
		t.Logf("screenshot of the page: %s", path)
	}()

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
