package kafka

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestReadDecodesLikeFranzGo writes records of every kind a changelog can
// hold (headers, null keys, tombstones, empty values, log timestamps) in
// batches of each compression codec, then reads them with ReadPartition,
// which decodes record batches itself, and with franz-go's consumer, from
// an offset in the middle of a batch: both must see the same records.
func TestReadDecodesLikeFranzGo(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	c := newClient(t, testConfig(t, addr))
	ctx := ctxFor(t)
	const topic = "decode"
	if err := c.EnsureTopic(ctx, topic, 1, nil); err != nil {
		t.Fatal(err)
	}
	codecs := []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	base := time.UnixMilli(1_700_000_000_000)
	n := 0
	for _, codec := range codecs {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic(topic))
		if err != nil {
			t.Fatal(err)
		}
		var recs []*kgo.Record
		for range 50 {
			r := &kgo.Record{Key: fmt.Appendf(nil, "k%d", n%7), Value: bytes.Repeat([]byte{byte(n)}, n%300), Timestamp: base.Add(time.Duration(n) * time.Millisecond)}
			switch n % 5 {
			case 1:
				r.Key = nil
			case 2:
				r.Value = nil // a tombstone
			case 3:
				r.Headers = []kgo.RecordHeader{{Key: "h", Value: []byte("v")}, {Key: "", Value: nil}}
			}
			recs = append(recs, r)
			n++
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		cl.Close()
	}

	const from = 23 // inside the first batch
	var got []*Record
	if err := c.ReadPartition(ctx, topic, 0, from, int64(n), func(r *Record) error {
		r2 := *r // r is the read's only until fn returns
		got = append(got, &r2)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(from)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var want []*kgo.Record
	for len(want) < n-from {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		want = append(want, fs.Records()...)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d records, franz-go %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		var hs []Header
		for _, h := range w.Headers {
			hs = append(hs, Header{Key: h.Key, Value: h.Value})
		}
		same := g.Topic == w.Topic && g.Partition == w.Partition && g.Offset == w.Offset &&
			bytes.Equal(g.Key, w.Key) && (g.Key == nil) == (w.Key == nil) &&
			bytes.Equal(g.Value, w.Value) && (g.Value == nil) == (w.Value == nil) &&
			g.Timestamp.Equal(w.Timestamp) && len(g.Headers) == len(hs) &&
			slices.EqualFunc(g.Headers, hs, func(a, b Header) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) })
		if !same {
			t.Fatalf("record %d: read %+v, franz-go %+v", i, g, w)
		}
	}
}
