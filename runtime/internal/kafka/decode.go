package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Record batch layout (magic 2) as far as decoding needs it: the offsets
// of fields in a batch's header, and attribute bits.
const (
	batchLengthEnd  = 12 // FirstOffset int64 | Length int32
	batchMagicAt    = 16
	batchCRCFrom    = 21 // the CRC covers attributes to the end
	batchHeaderSize = 61

	attrCodec         = 0x07
	attrLogAppendTime = 0x08
	attrControl       = 0x20
)

var (
	crc32c = crc32.MakeTable(crc32.Castagnoli)

	// errOldMagic marks a fetch holding message sets older than record
	// batches, which decodeBatches leaves to franz-go.
	errOldMagic = errors.New("message set older than magic 2")
)

// decodeBatches decodes record batches of one partition of a fetch answer
// (raw, which the records' keys, values and headers then alias) into
// Records from alloc, and appends pointers to them to out, skipping
// records below pos and control batches. It stops after the batch that
// brings out to limit records, and returns the records, the fetch
// position after the last batch decoded (pos if none) and the batches
// left. A batch cut short by the fetch's byte limit ends the decoding
// without an error, as Kafka intends.
//
// It does what kgo.ProcessFetchPartition does for magic-2 batches under
// read_uncommitted, without a kgo.Record per record and the copy into a
// Record that follows: restores go through it record by record.
func decodeBatches(raw []byte, pos int64, topic string, partition int32, decompress kgo.Decompressor, alloc *recordAlloc, out []*Record, limit int) (_ []*Record, _ int64, rest []byte, _ error) {
	var (
		b  kmsg.RecordBatch
		kr kmsg.Record
	)
	for len(raw) >= batchLengthEnd && len(out) < limit {
		length := int(int32(binary.BigEndian.Uint32(raw[8:12])))
		if length < batchHeaderSize-batchLengthEnd || len(raw) < batchLengthEnd+length {
			return out, pos, nil, nil // cut short by the byte limit
		}
		one := raw[:batchLengthEnd+length]
		raw = raw[batchLengthEnd+length:]
		if one[batchMagicAt] != 2 {
			return nil, pos, nil, errOldMagic
		}
		if err := b.ReadFrom(one); err != nil {
			return nil, pos, nil, fmt.Errorf("decode record batch at offset %d: %w", b.FirstOffset, err)
		}
		if crc := int32(crc32.Checksum(one[batchCRCFrom:], crc32c)); crc != b.CRC {
			return nil, pos, nil, fmt.Errorf("record batch at offset %d: crc %x, computed %x", b.FirstOffset, b.CRC, crc)
		}
		end := b.FirstOffset + int64(b.LastOffsetDelta) + 1
		if end <= pos || b.Attributes&attrControl != 0 || b.NumRecords <= 0 {
			pos = max(pos, end)
			continue
		}
		data := b.Records
		if codec := b.Attributes & attrCodec; codec != 0 {
			d, err := decompress.Decompress(data, kgo.CompressionCodecType(codec))
			if err != nil {
				return nil, pos, nil, fmt.Errorf("record batch at offset %d: decompress: %w", b.FirstOffset, err)
			}
			data = d
		}
		for range b.NumRecords {
			l, n := binary.Varint(data)
			if n <= 0 || l < 0 || int64(len(data)-n) < l {
				return nil, pos, nil, fmt.Errorf("record batch at offset %d: truncated record", b.FirstOffset)
			}
			if err := kr.ReadFrom(data[:n+int(l)]); err != nil {
				return nil, pos, nil, fmt.Errorf("record batch at offset %d: %w", b.FirstOffset, err)
			}
			data = data[n+int(l):]
			off := b.FirstOffset + int64(kr.OffsetDelta)
			if off < pos {
				continue
			}
			ts := b.FirstTimestamp + kr.TimestampDelta64
			if b.Attributes&attrLogAppendTime != 0 {
				ts = b.MaxTimestamp
			}
			r := alloc.next()
			*r = Record{Topic: topic, Partition: partition, Offset: off, Key: kr.Key, Value: kr.Value, Timestamp: time.UnixMilli(ts)}
			if len(kr.Headers) > 0 {
				r.Headers = make([]Header, len(kr.Headers))
				for j, h := range kr.Headers {
					r.Headers[j] = Header{Key: h.Key, Value: h.Value}
				}
			}
			out = append(out, r)
		}
		pos = end
	}
	if len(raw) < batchLengthEnd {
		raw = nil
	}
	return out, pos, raw, nil
}

// recordAlloc hands out Records from chunks that it reuses once reset: a
// read decodes each fetch into the Records of the one before. Reuse
// matters: a restore decodes millions of records, and Records in new
// memory cost a page fault every few dozen. Chunks come from, and go back
// to, a pool that the Client's reads share.
type recordAlloc struct {
	pool   *sync.Pool // of *[]Record, each recordChunk long
	chunks []*[]Record
	chunk  int // the chunk next hands out from
	used   int // Records handed out of that chunk
}

// recordChunk is the Records of one chunk: 128 KiB.
const recordChunk = 1024

func (a *recordAlloc) next() *Record {
	if a.chunk < len(a.chunks) && a.used == recordChunk {
		a.chunk++
		a.used = 0
	}
	if a.chunk == len(a.chunks) {
		c, _ := a.pool.Get().(*[]Record)
		if c == nil {
			s := make([]Record, recordChunk)
			c = &s
		}
		a.chunks = append(a.chunks, c)
	}
	r := &(*a.chunks[a.chunk])[a.used]
	a.used++
	return r
}

// reset makes every Record handed out free for reuse.
func (a *recordAlloc) reset() {
	a.chunk, a.used = 0, 0
}

// release gives the chunks back to the pool, cleared so that they keep
// no fetch's buffer alive.
func (a *recordAlloc) release() {
	for _, c := range a.chunks {
		clear(*c)
		a.pool.Put(c)
	}
	a.chunks = nil
	a.reset()
}
