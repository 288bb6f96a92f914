package kafka

import (
	"fmt"
	"hash/crc32"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// BenchmarkDecodeBatches decodes a fetch of 64 uncompressed batches of
// 500 records (16-byte keys, 100-byte values), as a restore reads a
// changelog, with decodeBatches and with kgo.ProcessFetchPartition.
func BenchmarkDecodeBatches(b *testing.B) {
	var raw []byte
	value := make([]byte, 100)
	off := int64(0)
	for range 64 {
		batch := kmsg.RecordBatch{FirstOffset: off, Magic: 2, LastOffsetDelta: 499, NumRecords: 500, FirstTimestamp: 1, MaxTimestamp: 1, ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1}
		var recs []byte
		for i := range 500 {
			r := kmsg.Record{OffsetDelta: int32(i), Key: fmt.Appendf(nil, "key-%012d", off+int64(i)), Value: value}
			body := r.AppendTo(nil)
			r.Length = int32(len(body) - 1) // AppendTo wrote a zero length
			recs = r.AppendTo(recs)
		}
		batch.Records = recs
		batch.Length = int32(49 + len(recs))
		enc := batch.AppendTo(nil)
		// The CRC covers attributes onward.
		batch.CRC = int32(crc32cOf(enc[batchCRCFrom:]))
		raw = batch.AppendTo(raw)
		off += 500
	}
	b.Run("runnel", func(b *testing.B) {
		b.ReportAllocs()
		alloc := recordAlloc{pool: new(sync.Pool)}
		var recs []*Record
		var err error
		for b.Loop() {
			alloc.reset()
			recs, _, _, err = decodeBatches(raw, 0, "t", 0, kgo.DefaultDecompressor(), &alloc, recs[:0], 1<<20)
			if err != nil || len(recs) != 32000 {
				b.Fatal(len(recs), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*32000), "ns/record")
	})
	b.Run("kgo", func(b *testing.B) {
		b.ReportAllocs()
		p := &kmsg.FetchResponseTopicPartition{RecordBatches: raw, HighWatermark: off}
		for b.Loop() {
			fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: "t"}, p, kgo.DefaultDecompressor(), nil)
			if fp.Err != nil || len(fp.Records) != 32000 {
				b.Fatal(len(fp.Records), fp.Err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*32000), "ns/record")
	})
}

func crc32cOf(b []byte) uint32 { return crc32.Checksum(b, crc32c) }
