package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
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

// decodeBatches decodes the record batches of one partition of a fetch
// answer (raw, which the records' keys, values and headers then alias)
// into the Records of slab, reused, and appends pointers to them to out,
// skipping records below pos and control batches. It returns the records,
// the slab (grown if it had to), and the fetch position after the last
// whole batch, which is pos if raw holds none. A batch cut short by the
// fetch's byte limit ends the decoding without an error, as Kafka
// intends.
//
// Reusing the slab matters: a restore decodes millions of records, and
// Records in new memory cost a page fault every few dozen.
//
// It does what kgo.ProcessFetchPartition does for magic-2 batches under
// read_uncommitted, without a kgo.Record per record and the copy into a
// Record that follows: restores go through it record by record.
func decodeBatches(raw []byte, pos int64, topic string, partition int32, decompress kgo.Decompressor, slab []Record, out []*Record) ([]*Record, []Record, int64, error) {
	var (
		b  kmsg.RecordBatch
		kr kmsg.Record
	)
	recs := slab[:0]
	for len(raw) >= batchLengthEnd {
		length := int(int32(binary.BigEndian.Uint32(raw[8:12])))
		if length < batchHeaderSize-batchLengthEnd || len(raw) < batchLengthEnd+length {
			break // cut short by the byte limit
		}
		one := raw[:batchLengthEnd+length]
		raw = raw[batchLengthEnd+length:]
		if one[batchMagicAt] != 2 {
			return nil, slab, pos, errOldMagic
		}
		if err := b.ReadFrom(one); err != nil {
			return nil, slab, pos, fmt.Errorf("decode record batch at offset %d: %w", b.FirstOffset, err)
		}
		if crc := int32(crc32.Checksum(one[batchCRCFrom:], crc32c)); crc != b.CRC {
			return nil, slab, pos, fmt.Errorf("record batch at offset %d: crc %x, computed %x", b.FirstOffset, b.CRC, crc)
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
				return nil, slab, pos, fmt.Errorf("record batch at offset %d: decompress: %w", b.FirstOffset, err)
			}
			data = d
		}
		if cap(recs) == 0 {
			// Sized by the first batch and the bytes left.
			recs = make([]Record, 0, int(b.NumRecords)*(1+len(raw)/len(one)))
			slab = recs
		}
		for range b.NumRecords {
			l, n := binary.Varint(data)
			if n <= 0 || l < 0 || int64(len(data)-n) < l {
				return nil, slab, pos, fmt.Errorf("record batch at offset %d: truncated record", b.FirstOffset)
			}
			if err := kr.ReadFrom(data[:n+int(l)]); err != nil {
				return nil, slab, pos, fmt.Errorf("record batch at offset %d: %w", b.FirstOffset, err)
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
			if len(recs) == cap(recs) {
				// Grown by a new array, not append: the records already
				// handed out point into the old one. The new one is the
				// slab from now on.
				recs = make([]Record, 0, 2*cap(recs))
				slab = recs
			}
			recs = append(recs, Record{Topic: topic, Partition: partition, Offset: off, Key: kr.Key, Value: kr.Value, Timestamp: time.UnixMilli(ts)})
			r := &recs[len(recs)-1]
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
	return out, slab, pos, nil
}
