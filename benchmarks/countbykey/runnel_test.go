package countbykey

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
	"github.com/runnel-io/runnel/topology"
)

// countRunnel is the handler: one more for the record's key.
func countRunnel(ctx processor.Context[string, int64], _ string, _ []byte) error {
	n, _ := ctx.Value()
	return ctx.SetValue(n + 1)
}

// runRunnel counts in with a runnel runtime of one group, on the shared
// broker, with the default goleveldb stores.
func runRunnel(ctx context.Context, e *env, in *input) (time.Duration, error) {
	name := e.newGroup("runnel")
	g := topology.NewGroup(name, processor.String, processor.Int64)
	topology.Input(g, topology.NewTopic(in.topic, processor.String, processor.Bytes), countRunnel)
	topo, err := topology.New(g)
	if err != nil {
		return 0, err
	}
	table := topology.TableTopic(name)
	return timeRunnel(ctx, e, in, name, topo, table, e.changelogHolds(table, int64(in.n)), func(rt *runtime.Runtime) error {
		return verifyRunnel(ctx, rt, g, in)
	})
}

// timeRunnel runs topo, whose one group name writes its results to
// changelog, until it has processed every record of in and done reports
// their effects acknowledged, verifies the result and returns the time the
// processing took.
func timeRunnel(ctx context.Context, e *env, in *input, name string, topo *topology.Topology, changelog string, done func(context.Context) (bool, error), verify func(*runtime.Runtime) error) (time.Duration, error) {
	// The changelog is created ahead, as for goka: inside the timer both
	// only check their topics.
	if err := e.createTopic(ctx, changelog, map[string]*string{"cleanup.policy": new("compact")}); err != nil {
		return 0, err
	}
	dir, err := e.runDir(name)
	if err != nil {
		return 0, err
	}

	stopProfile, err := profile(name)
	if err != nil {
		return 0, err
	}
	// The clock starts before New, which connects and checks the topics, as
	// NewProcessor does for goka.
	start := time.Now()
	rt, err := runtime.New(ctx, topo, runtime.Options{Brokers: []string{e.addr()}, Dir: dir})
	if err != nil {
		return 0, errors.Join(err, stopProfile())
	}
	defer rt.Close()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var runErr error
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		runErr = rt.Run(runCtx)
	}()
	stop := func() error {
		cancel()
		<-stopped
		if errors.Is(runErr, context.Canceled) {
			return nil
		}
		return runErr
	}

	stats := rt.Stats(name)
	err = e.await(ctx, int64(in.n), stats.Processed.Load, done, stopped, func() error { return runErr })
	elapsed := time.Since(start)
	err = errors.Join(err, stopProfile())
	if err != nil {
		stop()
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	// Verified before the stop, which flushes and commits whatever is left:
	// every count must be in the log the moment done says so.
	verifyErr := verify(rt)
	if err := stop(); err != nil {
		return 0, fmt.Errorf("%s: run: %w", name, err)
	}
	if verifyErr != nil {
		return 0, fmt.Errorf("%s: %w", name, verifyErr)
	}
	return elapsed, nil
}

// verifyRunnel reads the group's table back through a view, which rebuilds
// it from the changelog, and checks every count.
func verifyRunnel(ctx context.Context, rt *runtime.Runtime, g *topology.Group[string, int64], in *input) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	v, err := runtime.NewView(ctx, rt, g)
	if err != nil {
		return err
	}
	if err := v.WaitCaughtUp(ctx); err != nil {
		return err
	}
	got := make(map[string]int64, len(in.want))
	if err := v.Iterate(func(k string, n int64) bool { got[k] = n; return true }); err != nil {
		return err
	}
	return checkCounts(got, in.want)
}
