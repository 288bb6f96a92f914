package broker

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testTimeout bounds every client call of a test, so that a bug fails the
// test rather than hanging it.
const testTimeout = 30 * time.Second

// startBroker starts a broker on a free port over dir (a fresh temporary
// directory if empty), closed when the test ends.
func startBroker(t *testing.T, dir string, opts ...func(*Config)) *Broker {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := Config{Addr: "127.0.0.1:0", Dir: dir, Logger: testLogger(t)}
	for _, o := range opts {
		o(&cfg)
	}
	b, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return b
}

// testLogger logs to the test's output when RUNNEL_TEST_LOG is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("RUNNEL_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// ctxFor returns a context that ends with the test or after testTimeout.
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newKgo returns a franz-go client of b, closed when the test ends.
func newKgo(t *testing.T, b *Broker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.Addr())}, opts...)...)
	if err != nil {
		t.Fatalf("new kgo client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func newKadm(t *testing.T, b *Broker) *kadm.Client {
	return kadm.NewClient(newKgo(t, b))
}

// createTopic creates a topic directly in the broker's log.
func createTopic(t *testing.T, b *Broker, name string, partitions int32) {
	t.Helper()
	if _, err := b.Log().CreateTopic(name, partitions, nil); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// consumeKgo reads n records from the start of the given partitions with
// direct partition consumption (no group).
func consumeKgo(t *testing.T, b *Broker, topic string, partitions []int32, n int) []*kgo.Record {
	t.Helper()
	offsets := map[int32]kgo.Offset{}
	for _, p := range partitions {
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cl := newKgo(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	ctx := ctxFor(t)
	var got []*kgo.Record
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records of %s: %v", len(got), n, topic, err)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Fatalf("fetch %s-%d: %v", topic, p, err)
		})
		got = append(got, fs.Records()...)
	}
	if len(got) > n {
		t.Fatalf("consumed %d records of %s, want %d", len(got), topic, n)
	}
	return got
}
