package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// defaultBrokers is where runnel serve listens by default.
const defaultBrokers = "127.0.0.1:9092"

// clientID names the CLI's connections in the broker's group descriptions.
const clientID = "runnel-cli"

// connFlags are the flags of every command that talks to a cluster.
type connFlags struct {
	brokers string
	timeout time.Duration
}

// addConnFlags declares --brokers and, if timeout > 0, --timeout with that
// default: commands that follow a topic until interrupted have none.
func addConnFlags(fs *flag.FlagSet, timeout time.Duration) *connFlags {
	c := &connFlags{}
	fs.StringVar(&c.brokers, "brokers", defaultBrokers, "comma-separated `host:port` list of runnel serve or Kafka brokers to bootstrap from")
	if timeout > 0 {
		fs.DurationVar(&c.timeout, "timeout", timeout, "give up after this `duration`")
	}
	return c
}

// adminTimeout is the default --timeout of commands that ask the cluster
// something and are done.
const adminTimeout = 30 * time.Second

// seeds returns the bootstrap addresses.
func (c *connFlags) seeds() ([]string, error) {
	var seeds []string
	for s := range strings.SplitSeq(c.brokers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return nil, errors.New("--brokers: no broker address")
	}
	return seeds, nil
}

// withTimeout bounds ctx by --timeout, if the command has one.
func (c *connFlags) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, c.timeout, fmt.Errorf("timed out after %v (--timeout)", c.timeout))
}

// connect returns a client of the cluster, once a broker has answered: a
// wrong address is then one clear error rather than requests retried until
// a timeout.
func (c *connFlags) connect(ctx context.Context, opts ...kgo.Opt) (*kgo.Client, error) {
	seeds, err := c.seeds()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ClientID(clientID)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("client of %s: %w", c.brokers, err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("cannot reach brokers %s: %w", c.brokers, contextErr(ctx, err))
	}
	return cl, nil
}

// contextErr prefers the cause of ctx's end, which says which deadline
// passed, to the bare context error a request returns.
func contextErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return context.Cause(ctx)
	}
	return err
}

// topicDetails returns the metadata of topics, each of which must exist.
func topicDetails(ctx context.Context, adm *kadm.Client, topics ...string) (kadm.TopicDetails, error) {
	tds, err := adm.ListTopicsWithInternal(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", contextErr(ctx, err))
	}
	var errs []error
	for _, t := range topics {
		td, ok := tds[t]
		switch {
		case !ok, errors.Is(td.Err, kerr.UnknownTopicOrPartition):
			errs = append(errs, fmt.Errorf("topic %q does not exist", t))
		case td.Err != nil:
			errs = append(errs, fmt.Errorf("topic %q: %w", t, td.Err))
		}
	}
	return tds, errors.Join(errs...)
}

// partitionsOf returns a topic's partition numbers in order.
func partitionsOf(td kadm.TopicDetail) []int32 {
	ps := make([]int32, 0, len(td.Partitions))
	for p := range td.Partitions {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}
