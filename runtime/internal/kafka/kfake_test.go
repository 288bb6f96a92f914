package kafka

import (
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/runnel-io/runnel/internal/partition"
)

// The tests here run the client against franz-go's kfake, a Kafka cluster
// of three brokers in memory, so that nothing depends on the bundled log's
// ways: partitions are led by different brokers, and the group coordinator
// is one of them.

func startKfake(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func TestKfakeGroup(t *testing.T) {
	t.Parallel()
	testGroup(t, startKfake(t)...)
}

func TestKfakeGroupStaticMember(t *testing.T) {
	t.Parallel()
	testGroupStaticMember(t, startKfake(t)...)
}

// TestKfakeClient covers the producer, the reader and the admin calls on
// kfake, with partitions spread over the three brokers.
func TestKfakeClient(t *testing.T) {
	t.Parallel()
	addrs := startKfake(t, kfake.SeedTopics(6, "seeded"))
	c := newClient(t, testConfig(t, addrs...))
	adm := newKadm(t, addrs...)
	ctx := ctxFor(t)

	if err := c.EnsureTopic(ctx, "seeded", 6, nil); err != nil {
		t.Fatalf("ensure a seeded topic: %v", err)
	}
	var mismatch *TopicMismatchError
	if err := c.EnsureTopic(ctx, "seeded", 3, nil); !errors.As(err, &mismatch) {
		t.Fatalf("partition mismatch: %v", err)
	}
	if err := c.EnsureTopic(ctx, "compacted", 6, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureTopic(ctx, "compacted", 6, map[string]string{"cleanup.policy": "delete"}); !errors.As(err, &mismatch) {
		t.Fatalf("policy mismatch: %v", err)
	}

	md, err := adm.Metadata(ctx, "compacted")
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[int32]bool{}
	for _, p := range md.Topics["compacted"].Partitions {
		leaders[p.Leader] = true
	}
	if len(leaders) < 2 {
		t.Fatalf("all partitions led by %v: the test needs several leaders", leaders)
	}

	const n = 50
	var recs []*Record
	for i := range n {
		key := fmt.Appendf(nil, "key-%d", i)
		recs = append(recs, &Record{Topic: "compacted", Partition: partition.For(key, 6), Key: key, Value: fmt.Appendf(nil, "v%d", i)})
	}
	produce(t, c, recs...)
	total := 0
	for p := range int32(6) {
		ls, hw, err := c.Offsets(ctx, "compacted", p)
		if err != nil || ls != 0 {
			t.Fatalf("offsets of partition %d: %d, %d, %v", p, ls, hw, err)
		}
		offs, vals, err := readAll(ctx, c, "compacted", p, 0, hw)
		if err != nil || int64(len(offs)) != hw {
			t.Fatalf("read partition %d: %d records of %d, %v", p, len(offs), hw, err)
		}
		for i, v := range vals {
			var k int
			fmt.Sscanf(v, "v%d", &k)
			if partition.For(fmt.Appendf(nil, "key-%d", k), 6) != p {
				t.Fatalf("record %q (offset %d) in partition %d", v, offs[i], p)
			}
		}
		total += len(offs)
	}
	if total != n {
		t.Fatalf("read %d records, want %d", total, n)
	}

	deleteRecords(t, adm, "compacted", 0, 1)
	if _, _, err := readAll(ctx, c, "compacted", 0, 0, -1); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below the log start: %v, want ErrOffsetOutOfRange", err)
	}
}
