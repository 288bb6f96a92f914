// Command clickcount is runnel's first demo: on a log embedded in the
// process, it emits a fixed set of clicks for several users, counts them
// per user in a group table, reads the counts back through a view, prints
// them as a table and exits 0 when they match what was emitted (1 if not).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
	"github.com/runnel-io/runnel/topology"
)

// Click is one page view by a user.
type Click struct {
	Page string `json:"page"`
}

var clicks = topology.NewTopic("clicks", processor.String, processor.JSON[Click]())

// counter is the group that counts clicks per user in its table.
func counter() *topology.Group[string, int64] {
	g := topology.NewGroup("click-counter", processor.String, processor.Int64)
	topology.Input(g, clicks, func(ctx processor.Context[string, int64], user string, _ Click) error {
		n, _ := ctx.Value()
		return ctx.SetValue(n + 1)
	})
	return g
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "clickcount:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	g := counter()
	topo, err := topology.New(g)
	if err != nil {
		return err
	}
	rt, err := runtime.New(ctx, topo, runtime.Options{})
	if err != nil {
		return err
	}
	defer rt.Close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- rt.Run(runCtx) }()

	// A fixed set of clicks: user i clicks i*3+1 times.
	users := []string{"ada", "grace", "linus", "margaret", "ken", "barbara"}
	want := map[string]int64{}
	em, err := runtime.NewEmitter(ctx, rt, clicks)
	if err != nil {
		return err
	}
	for i, u := range users {
		for j := range i*3 + 1 {
			em.EmitAsync(u, Click{Page: fmt.Sprintf("/page/%d", j)}, nil)
			want[u]++
		}
	}
	if err := em.Flush(ctx); err != nil {
		return err
	}

	view, err := runtime.NewView(runCtx, rt, g)
	if err != nil {
		return err
	}
	// The counts arrive as the group processes the clicks; wait until the
	// view shows them all, or give up after a while.
	deadline, cancelWait := context.WithTimeout(ctx, 60*time.Second)
	defer cancelWait()
	var got map[string]int64
	for {
		changed := view.Changed()
		got = map[string]int64{}
		if err := view.Iterate(func(u string, n int64) bool { got[u] = n; return true }); err != nil {
			return err
		}
		if maps.Equal(got, want) {
			break
		}
		select {
		case <-changed:
		case <-deadline.Done():
			return fmt.Errorf("counts never matched: got %v, want %v", got, want)
		}
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "user\tclicks\t")
	for _, u := range slices.Sorted(maps.Keys(got)) {
		fmt.Fprintf(tw, "%s\t%d\t\n", u, got[u])
	}
	tw.Flush()
	fmt.Fprintf(out, "counted %d clicks of %d users: all match\n", sum(got), len(got))
	return nil
}

func sum(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}
