// Command counter is the processor the end-to-end tests run as separate
// processes: one group, "e2e-count" by default, counts the records of its
// input topic per key in its table, on the log at -brokers, with its local
// stores under -dir.
//
// It prints nothing but logs, on stderr, so that the tests can wait for
// what they need:
//
//	msg=assigned  whenever the partitions it owns change, after their tables
//	              are restored (partitions=, restored=, processed=)
//	msg=stopped   at a clean exit (restored=, processed=, skipped=, dead_lettered=)
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
	partitions := flag.Int("partitions", 12, "partition `count` of the input if the runtime has to create it")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("instance", *id)
	if *brokers == "" || *dir == "" {
		logger.Error("counter: -brokers and -dir are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, logger, strings.Split(*brokers, ","), *dir, *group, *input, int32(*partitions)); err != nil {
		logger.Error("counter failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, logger *slog.Logger, brokers []string, dir, group, input string, partitions int32) error {
	g := topology.NewGroup(group, processor.String, processor.Int64)
	in := topology.NewTopic(input, processor.String, processor.Bytes)
	topology.Input(g, in, func(ctx processor.Context[string, int64], _ string, _ []byte) error {
		n, _ := ctx.Value()
		return ctx.SetValue(n + 1)
	})
	topo, err := topology.New(g)
	if err != nil {
		return err
	}
	rt, err := runtime.New(ctx, topo, runtime.Options{Brokers: brokers, Dir: dir, Partitions: partitions, Logger: logger})
	if err != nil {
		return err
	}
	defer rt.Close()
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
