package broker

import (
	"fmt"
	"testing"

	"github.com/runnel-io/runnel/broker/storage"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKgoProduceConsumeEachCodec produces with franz-go's default producer
// (idempotent, acks=all) and each compression codec, and reads every record
// back, in order, by direct partition consumption.
func TestKgoProduceConsumeEachCodec(t *testing.T) {
	b := startBroker(t, "")
	codecs := map[string]struct {
		kgo    kgo.CompressionCodec
		stored storage.Compression
	}{
		"none":   {kgo.NoCompression(), storage.CompressionNone},
		"gzip":   {kgo.GzipCompression(), storage.CompressionGzip},
		"snappy": {kgo.SnappyCompression(), storage.CompressionSnappy},
		"lz4":    {kgo.Lz4Compression(), storage.CompressionLZ4},
		"zstd":   {kgo.ZstdCompression(), storage.CompressionZstd},
	}
	for name, codec := range codecs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			topic := "codec-" + name
			createTopic(t, b, topic, 2)
			cl := newKgo(t, b, kgo.ProducerBatchCompression(codec.kgo), kgo.DefaultProduceTopic(topic),
				kgo.RecordPartitioner(kgo.ManualPartitioner()))
			const n = 200
			var recs []*kgo.Record
			for i := range n {
				recs = append(recs, &kgo.Record{
					Key:       fmt.Appendf(nil, "k%d", i%7),
					Value:     fmt.Appendf(nil, "value %d of a record that compresses well well well well", i),
					Partition: int32(i % 2),
					Headers:   []kgo.RecordHeader{{Key: "i", Value: fmt.Appendf(nil, "%d", i)}},
				})
			}
			if err := cl.ProduceSync(ctxFor(t), recs...).FirstErr(); err != nil {
				t.Fatalf("produce: %v", err)
			}
			got := consumeKgo(t, b, topic, []int32{0, 1}, n)
			next := map[int32]int64{}
			for _, r := range got {
				if r.Offset != next[r.Partition] {
					t.Fatalf("partition %d: offset %d, want %d", r.Partition, r.Offset, next[r.Partition])
				}
				next[r.Partition]++
				var i int
				if _, err := fmt.Sscan(string(r.Headers[0].Value), &i); err != nil {
					t.Fatalf("header %q: %v", r.Headers[0].Value, err)
				}
				want := recs[i]
				if string(r.Key) != string(want.Key) || string(r.Value) != string(want.Value) || r.Partition != want.Partition {
					t.Fatalf("record %d read back as %s/%s on %d, want %s/%s on %d", i, r.Key, r.Value, r.Partition, want.Key, want.Value, want.Partition)
				}
			}
			if next[0] != n/2 || next[1] != n/2 {
				t.Fatalf("read %v records per partition, want %d each", next, n/2)
			}
			// The log holds the batches as the producer compressed them.
			recs0, err := b.Log().Topic(topic).Partition(0).Read(0, 1<<20, -1)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := recs0.AppendTo(nil)
			if err != nil {
				t.Fatal(err)
			}
			h, err := storage.ParseBatchHeader(raw)
			if err != nil {
				t.Fatal(err)
			}
			if h.Compression() != codec.stored {
				t.Fatalf("first stored batch is compressed with %v, want %v", h.Compression(), codec.stored)
			}
		})
	}
}

// TestBrokerRestartKeepsRecords produces, closes the broker, starts another
// on the same directory and consumes everything.
func TestBrokerRestartKeepsRecords(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	createTopic(t, b, "durable", 3)
	cl := newKgo(t, b, kgo.DefaultProduceTopic("durable"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	const n = 300
	for i := range n {
		cl.Produce(ctxFor(t), &kgo.Record{Value: fmt.Appendf(nil, "%d", i)}, nil)
	}
	if err := cl.Flush(ctxFor(t)); err != nil {
		t.Fatalf("flush: %v", err)
	}
	cl.Close()
	clusterID := b.ClusterID()
	if err := b.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	b2 := startBroker(t, dir)
	if b2.ClusterID() != clusterID {
		t.Errorf("cluster id changed across the restart: %s, then %s", clusterID, b2.ClusterID())
	}
	got := consumeKgo(t, b2, "durable", []int32{0, 1, 2}, n)
	seen := map[string]bool{}
	for _, r := range got {
		seen[string(r.Value)] = true
	}
	if len(seen) != n {
		t.Fatalf("read %d distinct records after the restart, want %d", len(seen), n)
	}

	// Producing goes on where the log ended, with a fresh producer id.
	cl2 := newKgo(t, b2, kgo.DefaultProduceTopic("durable"))
	r, err := cl2.ProduceSync(ctxFor(t), &kgo.Record{Value: []byte("after"), Partition: 0}).First()
	if err != nil {
		t.Fatalf("produce after restart: %v", err)
	}
	if want := b2.Log().Topic("durable").Partition(r.Partition).LogEndOffset() - 1; r.Offset != want {
		t.Fatalf("record after restart got offset %d, want %d", r.Offset, want)
	}
}
