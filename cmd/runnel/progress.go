package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// progressInterval is how often a long operation reports on stderr.
const progressInterval = time.Second

// progressFlag declares --progress.
func progressFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("progress", false, "report progress on stderr every second, and the outcome at the end, even when stderr is not a terminal")
}

// isTerminal reports whether w is a character device, such as a terminal,
// where progress reports help rather than clutter.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress reports a long operation on stderr, a line per interval, until
// stopped. The lines are whole lines, not rewritten in place: stdout often
// shares the terminal (consume prints records there), and a line rewritten
// with \r would be torn by the records printed between reports.
type progress struct {
	w      io.Writer
	status func() string
	cancel context.CancelFunc
	done   chan struct{}
}

// startProgress starts reporting status() if enabled (--progress) or w is
// a terminal; otherwise it returns nil, whose stop does nothing. status is
// called from another goroutine: what it reads must be safe for that.
func startProgress(ctx context.Context, w io.Writer, enabled bool, status func() string) *progress {
	if !enabled && !isTerminal(w) {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &progress{w: w, status: status, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Fprintln(p.w, p.status())
			case <-ctx.Done():
				return
			}
		}
	}()
	return p
}

// stop ends the reports and, if final is not empty, writes it: the outcome,
// so that a report always ends with it however quick the operation was.
func (p *progress) stop(final string) {
	if p == nil {
		return
	}
	p.cancel()
	<-p.done // no report may follow the final one
	if final != "" {
		fmt.Fprintln(p.w, final)
	}
}
