// Package browsertest drives the monitor pages in a real, headless
// Chromium for tests: it finds the browser (skipping the test when there is
// none, as on a machine without Debian's chromium package), starts it, and
// when the test has failed keeps a screenshot of the page for whoever reads
// the log.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Start starts a headless Chromium that lives as long as ctx and returns a
// context to drive it with, and finish, which the test defers: if the test
// failed, it saves a screenshot of the page to the test's artifact
// directory, then stops the browser.
func Start(ctx context.Context, t *testing.T) (browser context.Context, finish func()) {
	t.Helper()
	exe := chromium(t)
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
	browser, cancelBrowser := chromedp.NewContext(alloc)
	stop := func() {
		cancelBrowser()
		cancelAlloc()
	}
	// The first actions start the browser, which lives as long as their
	// context: this one, not the shorter ones of a test's steps.
	if err := chromedp.Do(browser); err != nil {
		stop()
		t.Fatalf("start %s: %v", exe, err)
	}
	return browser, func() {
		if t.Failed() {
			screenshot(t, browser)
		}
		stop()
	}
}

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

// screenshot saves the page as it is (a PNG: quality 100 asks for one).
func screenshot(t *testing.T, browser context.Context) {
	ctx, cancel := context.WithTimeout(browser, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
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
}
