package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/runnel-io/runnel/broker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testTimeout bounds each test's calls, so that a bug fails the test
// rather than hanging it.
const testTimeout = 30 * time.Second

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// testLogger logs to the test's output when RUNNEL_TEST_LOG is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("RUNNEL_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startBroker starts the bundled log on a free loopback port, closed when
// the test ends, and returns its address.
func startBroker(t *testing.T) string {
	t.Helper()
	b, err := broker.Start(t.Context(), broker.Config{
		Addr:                       "127.0.0.1:0",
		Dir:                        t.TempDir(),
		GroupInitialRebalanceDelay: -1,
		Logger:                     testLogger(t),
	})
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return b.Addr()
}

// testConfig is a Config for tests: heartbeats often, so that members learn
// of rebalances quickly.
func testConfig(t *testing.T, addrs ...string) Config {
	return Config{
		Brokers:           addrs,
		ClientID:          "runnel-kafka-test",
		Logger:            testLogger(t),
		SessionTimeout:    6 * time.Second,
		HeartbeatInterval: 100 * time.Millisecond,
		RebalanceTimeout:  10 * time.Second,
	}
}

// newClient returns a Client of the cluster at addrs, closed when the test
// ends.
func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(ctxFor(t), cfg)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close client: %v", err)
		}
	})
	return c
}

func newKadm(t *testing.T, addrs ...string) *kadm.Client {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatalf("new kgo client: %v", err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// produce sends records and waits until all are acknowledged.
func produce(t *testing.T, c *Client, recs ...*Record) {
	t.Helper()
	var mu sync.Mutex
	var errs []error
	for _, r := range recs {
		c.Send(r, func(r *Record, err error) {
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	if err := c.Flush(ctxFor(t)); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if len(errs) > 0 {
		t.Fatalf("produce: %v", errs)
	}
}

// fill produces n records with values "topic/p/i" to each of the given
// partitions of topic.
func fill(t *testing.T, c *Client, topic string, partitions int32, n int) {
	t.Helper()
	var recs []*Record
	for p := range partitions {
		for i := range n {
			recs = append(recs, &Record{Topic: topic, Partition: p, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "%s/%d/%d", topic, p, i)})
		}
	}
	produce(t, c, recs...)
}

// await polls cond until it holds or the test's time is up. It is for
// conditions that no event signals, such as a rebalance that the test
// observes only through a handler.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx := ctxFor(t)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
