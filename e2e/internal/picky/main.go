// Command picky is the processor of the end-to-end tests' bad-input
// scenario. Like counter, it counts the records of its input topic per key
// in its group's table, on the log at -brokers, with its local stores under
// -dir; unlike counter, it is picky about its input, whose values must be
// int64s (8 bytes big-endian, processor.Int64):
//
//   - a value of any other length cannot be decoded: the record fails
//     before the handler runs;
//   - a negative value makes the handler return an error.
//
// -policy chooses what the group does with those records: stop, skip or
// dead-letter (to the -dead-letter topic).
//
// It logs on stderr, as counter does, msg=assigned whenever the partitions
// it owns change and msg=stopped, with the group's processed, skipped and
// dead-lettered counts, at a clean exit (see package report). SIGTERM and
// SIGINT stop it cleanly (exit 0); any error, including a failed record
// under the stop policy, is logged as msg="picky failed" and exits 1.
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

// errNegative is what the handler returns for a negative value: the
// dead-letter record's runnel.error header starts with its text.
var errNegative = errors.New("picky: negative value refused")

func main() {
	brokers := flag.String("brokers", "", "comma-separated `host:port` bootstrap addresses (required)")
	dir := flag.String("dir", "", "local state `directory` (required)")
	id := flag.String("id", "picky", "instance `name`, added to every log line")
	group := flag.String("group", "e2e-picky", "group `name`; its table is <name>-table")
	input := flag.String("input", "e2e-input", "input `topic`")
	partitions := flag.Int("partitions", 12, "partition `count` of the topics the runtime has to create")
	policyName := flag.String("policy", "stop", "what to do with a record that fails: stop, skip or dead-letter")
	deadLetter := flag.String("dead-letter", "", "dead-letter `topic` of -policy dead-letter (default <group>-dead-letter)")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("instance", *id)
	if *brokers == "" || *dir == "" {
		logger.Error("picky: -brokers and -dir are required")
		os.Exit(2)
	}
	var policy processor.Policy
	switch *policyName {
	case "stop":
		policy = processor.Stop()
	case "skip":
		policy = processor.Skip()
	case "dead-letter":
		topic := *deadLetter
		if topic == "" {
			topic = *group + "-dead-letter"
		}
		policy = processor.DeadLetter(topic)
	default:
		logger.Error("picky: -policy must be stop, skip or dead-letter", "policy", *policyName)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, logger, strings.Split(*brokers, ","), *dir, *group, *input, int32(*partitions), policy); err != nil {
		logger.Error("picky failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, logger *slog.Logger, brokers []string, dir, group, input string, partitions int32, policy processor.Policy) error {
	g := topology.NewGroup(group, processor.String, processor.Int64)
	g.OnError(policy)
	in := topology.NewTopic(input, processor.String, processor.Int64)
	topology.Input(g, in, func(ctx processor.Context[string, int64], _ string, v int64) error {
		if v < 0 {
			return fmt.Errorf("%w: %d", errNegative, v)
		}
		n, _ := ctx.Value()
		return ctx.SetValue(n + 1)
	})
	topo, err := topology.New(g)
	if err != nil {
		return fmt.Errorf("picky: topology: %w", err)
	}
	rt, err := runtime.New(ctx, topo, runtime.Options{Brokers: brokers, Dir: dir, Partitions: partitions, Logger: logger})
	if err != nil {
		return fmt.Errorf("picky: %w", err)
	}
	defer rt.Close()
	stats := rt.Stats(group)
	logger.Info("policy", "policy", policy.String())

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go report.Assignments(watchCtx, logger, stats)

	err = rt.Run(ctx)
	stopWatch()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("picky: %w", err)
	}
	if ctx.Err() == nil {
		return errors.New("picky: run returned before it was stopped")
	}
	report.Stopped(logger, stats)
	return nil
}
