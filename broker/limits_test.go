package broker

import (
	"errors"
	"io/fs"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produceSync produces n records to topic with a fresh franz-go client and
// returns them as acknowledged.
func produceSync(t *testing.T, b *Broker, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := newKgo(t, b, kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation())
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Key: []byte{byte(i)}, Value: []byte(strings.Repeat("v", i%50))}
	}
	if err := cl.ProduceSync(ctxFor(t), recs...).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
	return recs
}

// checkReadBack consumes topic's partition 0 from the start and checks that
// it holds exactly want, in order.
func checkReadBack(t *testing.T, b *Broker, topic string, want []*kgo.Record) {
	t.Helper()
	got := consumeKgo(t, b, topic, []int32{0}, len(want))
	for i := range want {
		if string(got[i].Key) != string(want[i].Key) || string(got[i].Value) != string(want[i].Value) {
			t.Fatalf("record %d of %s: %q=%q, want %q=%q", i, topic, got[i].Key, got[i].Value, want[i].Key, want[i].Value)
		}
	}
}

// onDisk reports whether any file or directory under dir mentions name, in
// its path or (topic.json and the like) its first bytes.
func onDisk(t *testing.T, dir, name string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(d.Name(), name) {
			found = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return found
}

// TestPartitionLimits asks for 20,000 and 2^31-1 partitions, by
// CreateTopics and by CreatePartitions, and for more than the broker's
// total allows: each is refused with an error naming the limit, nothing of
// it reaches the disk, and the broker restarts and serves as before.
func TestPartitionLimits(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir, func(c *Config) { c.MaxPartitionsPerTopic = 1000; c.MaxPartitions = 500 })
	adm := newKadm(t, b)
	ctx := ctxFor(t)
	want := produceSync(t, b, "steady", 20)

	for _, n := range []int32{20000, math.MaxInt32} {
		rs, err := adm.CreateTopics(ctx, n, 1, nil, "huge")
		if err != nil {
			t.Fatal(err)
		}
		r := rs["huge"]
		if !errors.Is(r.Err, kerr.InvalidPartitions) || !strings.Contains(r.ErrMessage, "limit of 1000 per topic") {
			t.Fatalf("create topic of %d partitions: %v (%q), want INVALID_PARTITIONS naming the limit", n, r.Err, r.ErrMessage)
		}
	}
	// Within the per-topic limit, past the broker's.
	rs, err := adm.CreateTopics(ctx, 1000, 1, nil, "huge")
	if err != nil {
		t.Fatal(err)
	}
	if r := rs["huge"]; !errors.Is(r.Err, kerr.PolicyViolation) || !strings.Contains(r.ErrMessage, "limit of 500") {
		t.Fatalf("create topic past the broker's limit: %v (%q), want POLICY_VIOLATION naming the limit", r.Err, r.ErrMessage)
	}

	createTopic(t, b, "grow", 1)
	for _, n := range []int32{20000, math.MaxInt32} {
		prs, err := adm.UpdatePartitions(ctx, int(n), "grow")
		if err != nil {
			t.Fatal(err)
		}
		if r := prs["grow"]; !errors.Is(r.Err, kerr.InvalidPartitions) || !strings.Contains(r.ErrMessage, "per topic") {
			t.Fatalf("grow to %d partitions: %v (%q), want INVALID_PARTITIONS naming the limit", n, r.Err, r.ErrMessage)
		}
	}
	prs, err := adm.UpdatePartitions(ctx, 900, "grow")
	if err != nil {
		t.Fatal(err)
	}
	if r := prs["grow"]; !errors.Is(r.Err, kerr.PolicyViolation) {
		t.Fatalf("grow past the broker's limit: %v (%q), want POLICY_VIOLATION", r.Err, r.ErrMessage)
	}
	if n := b.Log().Topic("grow").NumPartitions(); n != 1 {
		t.Fatalf("grow has %d partitions after refused growth, want 1", n)
	}
	if onDisk(t, dir, "huge") {
		t.Fatal("a refused topic left files behind")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = startBroker(t, dir)
	checkReadBack(t, b, "steady", want)
	if b.Log().Topic("huge") != nil {
		t.Fatal("refused topic exists after restart")
	}
}
