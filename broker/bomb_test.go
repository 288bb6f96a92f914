package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/twmb/franz-go/pkg/kgo"
	"hash/crc32"
	"math"
	mathrand "math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker/storage"
)

// rawBatch frames payload, a records section compressed with codec (the
// attributes' low bits), as a v2 batch claiming count records.
func rawBatch(codec int16, count int32, payload []byte) []byte {
	be := binary.BigEndian
	b := make([]byte, storage.BatchHeaderSize, storage.BatchHeaderSize+len(payload))
	be.PutUint32(b[8:], uint32(storage.BatchHeaderSize-12+len(payload))) // length
	b[16] = 2                                                            // magic
	be.PutUint16(b[21:], uint16(codec))                                  // attributes
	be.PutUint32(b[23:], uint32(count-1))                                // last offset delta
	be.PutUint64(b[43:], math.MaxUint64)                                 // producer id -1
	be.PutUint16(b[51:], math.MaxUint16)                                 // producer epoch -1
	be.PutUint32(b[53:], math.MaxUint32)                                 // base sequence -1
	be.PutUint32(b[57:], uint32(count))
	b = append(b, payload...)
	be.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// recordPrefix is the start of a record whose value is valueLen bytes: what
// a bomb inflates to so that a parser reading it sees a plausible record.
func recordPrefix(valueLen int) []byte {
	body := []byte{0}                    // attributes
	body = binary.AppendVarint(body, 0)  // timestamp delta
	body = binary.AppendVarint(body, 0)  // offset delta
	body = binary.AppendVarint(body, -1) // null key
	body = binary.AppendVarint(body, int64(valueLen))
	length := len(body) + valueLen + 1 // and a header count of 0
	return append(binary.AppendVarint(nil, int64(length)), body...)
}

// zstdBomb hand-writes a zstd frame (8 MiB window, no content size) of the
// prefix as a raw block, then size bytes of zeros as RLE blocks of 128 KiB:
// 4 bytes per block, so 1 GiB of zeros takes 32 KiB.
func zstdBomb(prefix []byte, size int) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xFD2FB528)
	b = append(b, 0x00, 13<<3) // no content size, not single segment; window 2^23
	block := func(last bool, typ, n int) {
		h := uint32(n)<<3 | uint32(typ)<<1
		if last {
			h |= 1
		}
		b = append(b, byte(h), byte(h>>8), byte(h>>16))
	}
	block(false, 0, len(prefix))
	b = append(b, prefix...)
	for left := size; left > 0; {
		n := min(left, 128<<10)
		left -= n
		block(left == 0, 1, n)
		b = append(b, 0)
	}
	return b
}

// gzipBomb compresses the prefix and size zeros.
func gzipBomb(t *testing.T, prefix []byte, size int) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	w.Write(prefix)
	zeros := make([]byte, 1<<20)
	for left := size; left > 0; left -= len(zeros) {
		w.Write(zeros[:min(left, len(zeros))])
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// heapPeak samples the heap in use until stop is called, and returns the
// largest sample.
func heapPeak() (stop func() uint64) {
	done := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		var most uint64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			most = max(most, ms.HeapAlloc)
			select {
			case <-done:
				peak <- most
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 { close(done); return <-peak }
}

// TestDecompressionBombs sends batches that inflate far beyond their size:
// a 32 KiB zstd frame of 1 GiB, a zstd frame just within the request size
// limit, a batch of zeros, and four 256 KiB gzip batches of 256 MiB each at
// once on four connections. Each is refused with CORRUPT_MESSAGE or
// INVALID_RECORD, the heap stays within a small bound rather than holding
// what they inflate to, and a franz-go client produces and reads back
// throughout.
func TestDecompressionBombs(t *testing.T) {
	const maxRequest = 16 << 20
	b := startBroker(t, "", func(c *Config) {
		c.MaxRequestSize = maxRequest
		c.MaxInflightBytes = 64 << 20
	})
	createTopic(t, b, "bomb", 1)
	steady := produceSync(t, b, "steady", 20)
	const gzipped = 256 << 20
	gz := rawBatch(int16(storage.CompressionGzip), 1, gzipBomb(t, recordPrefix(gzipped), gzipped))
	bombs := []struct {
		name  string
		batch []byte
	}{
		{"zstd 1 GiB", rawBatch(int16(storage.CompressionZstd), 1, zstdBomb(recordPrefix(1<<30), 1<<30))},
		{"zstd within the limit", rawBatch(int16(storage.CompressionZstd), 2, zstdBomb(recordPrefix(maxRequest-100), maxRequest-100))},
		{"zstd zeros", rawBatch(int16(storage.CompressionZstd), 1000, zstdBomb(nil, 1<<30))},
		{"gzip 1", gz}, {"gzip 2", gz}, {"gzip 3", gz}, {"gzip 4", gz},
	}
	t.Logf("zstd bomb: %d bytes; gzip bomb: %d bytes", len(bombs[0].batch), len(gz))
	base := liveHeap()
	stop := heapPeak()
	var wg sync.WaitGroup
	results := make([]int16, len(bombs))
	for i, bomb := range bombs {
		raw := dialRaw(t, b)
		wg.Go(func() {
			req := kmsg.NewPtrProduceRequest()
			req.SetVersion(7)
			req.Acks, req.TimeoutMillis = -1, 10000
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic = "bomb"
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Records = bomb.batch
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			resp := raw.roundTrip(req).(*kmsg.ProduceResponse)
			results[i] = resp.Topics[0].Partitions[0].ErrorCode
		})
	}
	// Served meanwhile.
	more := produceSync(t, b, "steady", 20)
	wg.Wait()
	peak := stop()
	for i, bomb := range bombs {
		if c := results[i]; c != kerr.CorruptMessage.Code && c != kerr.InvalidRecord.Code {
			t.Errorf("%s: %v, want CORRUPT_MESSAGE or INVALID_RECORD", bomb.name, kerr.ErrorForCode(c))
		}
	}
	grew := int64(peak) - int64(base)
	t.Logf("heap peaked %d MiB above the start", grew>>20)
	if grew > 160<<20 {
		t.Errorf("heap grew by %d MiB under decompression bombs, want under 160", grew>>20)
	}
	if _, _, end := b.Log().Topic("bomb").Partition(0).Offsets(); end != 0 {
		t.Errorf("bomb partition has end offset %d, want 0", end)
	}
	checkReadBack(t, b, "steady", append(steady, more...))
}

// TestCheckRecordsAgreesWithDecode checks the streaming validator against
// DecodeRecords on batches of every codec and on thousands of corrupted
// uncompressed batches (with their CRC fixed so that the records
// themselves are what is checked): both accept or both refuse.
func TestCheckRecordsAgreesWithDecode(t *testing.T) {
	rng := mathrand.New(mathrand.NewPCG(1, 2))
	var recs []storage.Record
	for i := range 20 {
		r := storage.Record{OffsetDelta: int32(i), Value: bytes.Repeat([]byte{byte(i)}, rng.IntN(300))}
		if i%3 == 0 {
			r.Key = []byte("k")
			r.Headers = []storage.RecordHeader{{Key: "h", Value: []byte("v")}, {Key: "n"}}
		}
		recs = append(recs, r)
	}
	for _, c := range []storage.Compression{storage.CompressionNone, storage.CompressionGzip, storage.CompressionSnappy, storage.CompressionLZ4, storage.CompressionZstd} {
		batch, err := storage.NewBatch(c, 1000, recs...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := storage.CheckRecords(batch, 0); err != nil {
			t.Errorf("%s: CheckRecords refused a valid batch: %v", c, err)
		}
		if _, err := storage.CheckRecords(batch, 100); err == nil {
			t.Errorf("%s: CheckRecords accepted %d bytes of records with a limit of 100", c, len(batch))
		}
	}
	valid, err := storage.NewBatch(storage.CompressionNone, 1000, recs...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20000 {
		b := bytes.Clone(valid)
		for range 1 + rng.IntN(3) {
			at := storage.BatchHeaderSize + rng.IntN(len(b)-storage.BatchHeaderSize)
			b[at] = byte(rng.IntN(256))
		}
		if i%7 == 0 { // a wrong record count
			binary.BigEndian.PutUint32(b[57:], uint32(rng.IntN(25)))
		}
		binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
		_, _, decErr := storage.DecodeRecords(b)
		_, chkErr := storage.CheckRecords(b, 0)
		if (decErr == nil) != (chkErr == nil) {
			t.Fatalf("mutation %d: DecodeRecords says %v, CheckRecords says %v", i, decErr, chkErr)
		}
		if chkErr != nil && !errors.Is(chkErr, storage.ErrInvalidBatch) {
			t.Fatalf("mutation %d: %v does not wrap ErrInvalidBatch", i, chkErr)
		}
	}
}

// TestInflightBudgetWaits runs producers whose requests together exceed
// MaxInflightBytes many times over: they wait for the budget and all
// succeed, rather than being refused.
func TestInflightBudgetWaits(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.MaxInflightBytes = 1 << 20 })
	rng := mathrand.NewChaCha8([32]byte{})
	var wg sync.WaitGroup
	wants := map[string][]*kgo.Record{}
	for p := range 4 {
		topic := fmt.Sprintf("budget-%d", p)
		createTopic(t, b, topic, 1)
		cl := newKgo(t, b, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.GzipCompression()))
		var want []*kgo.Record
		for range 40 {
			v := make([]byte, 100<<10)
			rng.Read(v) // incompressible: each request near 1 MiB, twice the frame budget
			want = append(want, &kgo.Record{Value: v})
		}
		wg.Go(func() {
			if err := cl.ProduceSync(ctxFor(t), want...).FirstErr(); err != nil {
				t.Errorf("produce to %s: %v", topic, err)
			}
		})
		wants[topic] = want
	}
	wg.Wait()
	for topic, want := range wants {
		checkReadBack(t, b, topic, want)
	}
}
