// Command counter is the processor the end-to-end tests run as separate
// processes: one group, "e2e-count" by default, counts the records of its
// input topic per key in its table, on the log at -brokers, with its local
// stores under -dir. With -output it also emits, for every record, the
// key's new count to that topic, as an int64, so that a test can check that
// what a group emitted agrees with its table. With -http it serves the
// runtime's monitor there, whose /api/groups tells how far each partition
// the instance owns is processed. With -work its handler takes that long
// per record, so that a burst of input leaves it a backlog to work through.
//
// It prints nothing but logs, on stderr, so that the tests can wait for
// what they need:
//
//	msg=assigned  whenever the partitions it owns change, after their tables
//	              are restored (partitions=, restored=, processed=)
//	msg=stopped   at a clean exit (restored=, processed=, skipped=, dead_lettered=)
//	msg=monitor   with -http, once the monitor listens (addr=)
//
// (see package report), besides the runtime's own logs.
//
// SIGTERM and SIGINT cancel Run's context: the runtime finishes its records,
// commits and leaves the group, and the program exits 0. Any error exits 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/runnel-io/runnel/e2e/internal/report"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
	"github.com/runnel-io/runnel/topology"
)

func main() {
	brokers := flag.String("brokers", "", "comma-separated `host:port` bootstrap addresses (required)")
	dir := flag.String("dir", "", "local state `directory` (required)")
	id := flag.String("id", "counter", "instance `name`, added to every log line")
	group := flag.String("group", "e2e-count", "group `name`; its table is <name>-table")
	input := flag.String("input", "e2e-input", "input `topic`")
	partitions := flag.Int("partitions", 12, "partition `count` of the input and output if the runtime has to create them")
	output := flag.String("output", "", "`topic` to emit every key's new count to (default: none)")
	httpAddr := flag.String("http", "", "`address` of the runtime's monitor, port 0 for a free one (default: none)")
	work := flag.Duration("work", 0, "`time` the handler spends on each record, as real work would (default: none)")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("instance", *id)
	if *brokers == "" || *dir == "" {
		logger.Error("counter: -brokers and -dir are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	opts := runtime.Options{Brokers: strings.Split(*brokers, ","), Dir: *dir, Partitions: int32(*partitions), Logger: logger, HTTPAddr: *httpAddr}
	if err := run(ctx, logger, opts, *group, *input, *output, *work); err != nil {
		logger.Error("counter failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, logger *slog.Logger, opts runtime.Options, group, input, output string, work time.Duration) error {
	g := topology.NewGroup(group, processor.String, processor.Int64)
	in := topology.NewTopic(input, processor.String, processor.Bytes)
	var emit func(processor.Context[string, int64], string, int64) error
	if output != "" {
		out := topology.Output(g, topology.NewTopic(output, processor.String, processor.Int64))
		emit = func(ctx processor.Context[string, int64], key string, n int64) error {
			return out.Emit(ctx, key, n)
		}
	}
	topology.Input(g, in, func(ctx processor.Context[string, int64], key string, _ []byte) error {
		if work > 0 {
			time.Sleep(work)
		}
		n, _ := ctx.Value()
		if err := ctx.SetValue(n + 1); err != nil {
			return err
		}
		if emit != nil {
			return emit(ctx, key, n+1)
		}
		return nil
	})
	topo, err := topology.New(g)
	if err != nil {
		return err
	}
	rt, err := runtime.New(ctx, topo, opts)
	if err != nil {
		return err
	}
	defer rt.Close()
	if addr := rt.MonitorAddr(); addr != "" {
		logger.Info("monitor", "addr", addr)
	}
	stats := rt.Stats(group)

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go report.Assignments(watchCtx, logger, stats)

	err = rt.Run(ctx)
	stopWatch()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if ctx.Err() == nil {
		return fmt.Errorf("run returned before it was stopped")
	}
	report.Stopped(logger, stats)
	return nil
}
