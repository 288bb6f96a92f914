package broker

import (
	"bytes"
	"crypto/rand"
	"errors"
	"github.com/twmb/franz-go/pkg/kmsg"
	"io/fs"
	"math"
	"path/filepath"
	"runtime"
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

// liveHeap returns the bytes of live heap objects, after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestPipelinedFetchesBounded pipelines 64 fetches, each asking for
// 2^31-1 bytes of a topic holding 8 MiB, on one connection and reads their
// responses slowly. Each response is capped at MaxFetchBytes, they come in
// order, the live heap stays far below the 512 MiB that 64 whole copies
// would take, and a franz-go client is served meanwhile.
func TestPipelinedFetchesBounded(t *testing.T) {
	const maxFetch = 1 << 20
	b := startBroker(t, "", func(c *Config) { c.MaxFetchBytes = maxFetch })
	createTopic(t, b, "big", 1)
	cl := newKgo(t, b, kgo.DefaultProduceTopic("big"), kgo.ProducerBatchCompression(kgo.NoCompression()))
	var big []*kgo.Record
	for range 64 {
		v := make([]byte, 128<<10)
		rand.Read(v)
		big = append(big, &kgo.Record{Value: v})
	}
	if err := cl.ProduceSync(ctxFor(t), big...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	base := liveHeap()

	raw := dialRaw(t, b)
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(11)
	req.ReplicaID, req.MaxBytes, req.MinBytes, req.SessionEpoch = -1, math.MaxInt32, 1, -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = "big"
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = math.MaxInt32, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	var corrs []int32
	for range 64 {
		corrs = append(corrs, raw.send(req))
	}
	var peak uint64
	for i, corr := range corrs {
		resp := raw.recv(req, corr).(*kmsg.FetchResponse)
		sp := resp.Topics[0].Partitions[0]
		if sp.ErrorCode != 0 {
			t.Fatalf("fetch %d: %v", i, kerr.ErrorForCode(sp.ErrorCode))
		}
		if n := len(sp.RecordBatches); n > maxFetch || n == 0 {
			t.Fatalf("fetch %d returned %d bytes, want 1 to %d", i, n, maxFetch)
		}
		if h := liveHeap(); h > base {
			peak = max(peak, h-base)
		}
		if i == len(corrs)/2 {
			// A well-behaved client, served while the pipelined fetches
			// are in progress.
			checkReadBack(t, b, "steady", produceSync(t, b, "steady", 20))
		}
	}
	t.Logf("live heap peaked %d MiB above the start", peak>>20)
	if peak > 48<<20 {
		t.Fatalf("live heap grew by %d MiB serving pipelined fetches, want under 48", peak>>20)
	}
	got := consumeKgo(t, b, "big", []int32{0}, len(big))
	for i := range big {
		if !bytes.Equal(got[i].Value, big[i].Value) {
			t.Fatalf("record %d of big differs", i)
		}
	}
}
