package storage

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
	"slices"
)

// Records of a v2 batch follow the header, compressed as a whole when the
// batch's codec is not none. Each record is (varint = zigzag varint, at most
// 5 bytes for 32-bit fields and 10 for 64-bit ones):
//
//	length          varint   bytes after this field
//	attributes      int8     unused, zero
//	timestampDelta  varlong  from the batch's baseTimestamp
//	offsetDelta     varint   from the batch's baseOffset
//	keyLength       varint   -1 for a null key
//	key             bytes
//	valueLength     varint   -1 for a null value (a tombstone)
//	value           bytes
//	headerCount     varint
//	headers         headerKeyLength varint, headerKey (UTF-8, never null),
//	                headerValueLength varint (-1 for null), headerValue
//
// Invariants checked by DecodeRecords and kept by EncodeBatch: exactly
// recordCount records, each exactly as long as its length says, nothing after
// the last one, and offset deltas strictly increasing within
// [0, lastOffsetDelta]. Compaction may leave gaps, never reorder.

// Record is one record of a v2 record batch.
type Record struct {
	// Attributes is the record's attribute byte; Kafka defines no bits yet.
	Attributes int8
	// TimestampDelta is the record's timestamp minus the batch's base
	// timestamp, in milliseconds.
	TimestampDelta int64
	// OffsetDelta is the record's offset minus the batch's base offset.
	OffsetDelta int32
	// Key and Value are the record's key and value; nil means null (a nil
	// value is a tombstone), an empty non-nil slice means empty.
	Key, Value []byte
	// Headers are the record's headers, in order.
	Headers []RecordHeader
}

// RecordHeader is one header of a record.
type RecordHeader struct {
	Key string
	// Value is the header's value; nil means null.
	Value []byte
}

// DecodeRecords validates the one v2 record batch that batch holds (see
// ValidateBatch; no bytes may follow it), decompresses its records with the
// default 1 GiB bound on their decompressed size, and parses exactly
// RecordCount of them. Every error wraps ErrInvalidBatch and names what was
// wrong.
//
// To avoid copies, the returned records' Key, Value and header Value alias
// batch (uncompressed batches) or the freshly decompressed buffer: the caller
// must not modify batch while it uses the records.
func DecodeRecords(batch []byte) (BatchHeader, []Record, error) {
	return defaultCodecs().decodeRecords(batch)
}

// decodeRecords is DecodeRecords with cs's codecs and decompression bound.
func (cs *codecs) decodeRecords(batch []byte) (BatchHeader, []Record, error) {
	h, err := ValidateBatch(batch)
	if err != nil {
		return h, nil, err
	}
	if extra := len(batch) - h.Size(); extra != 0 {
		return h, nil, fmt.Errorf("%w: %d bytes follow the %d-byte batch", ErrInvalidBatch, extra, h.Size())
	}
	data := batch[BatchHeaderSize:]
	if c := h.Compression(); c != CompressionNone {
		if data, err = cs.decompress(c, data); err != nil {
			return h, nil, fmt.Errorf("%w: decompressing records: %w", ErrInvalidBatch, err)
		}
	}
	recs, err := parseRecords(data, h)
	if err != nil {
		return h, nil, err
	}
	return h, recs, nil
}

// parseRecords parses the record array of the batch with header h.
func parseRecords(data []byte, h BatchHeader) ([]Record, error) {
	count := int(h.RecordCount)
	// For compressed batches ValidateBatch could not bound the count by the
	// batch length, so bound the allocation by what data can hold.
	recs := make([]Record, 0, min(count, len(data)/minRecordSize))
	r := recordReader{b: data}
	prevDelta := int32(-1)
	for i := range count {
		r.rec = i
		if len(r.b) == 0 {
			return nil, fmt.Errorf("%w: record count %d but the records end after %d", ErrInvalidBatch, count, i)
		}
		rec := r.record()
		if r.err != nil {
			return nil, r.err
		}
		switch {
		case rec.OffsetDelta < 0:
			return nil, fmt.Errorf("%w: record %d: negative offset delta %d", ErrInvalidBatch, i, rec.OffsetDelta)
		case rec.OffsetDelta > h.LastOffsetDelta:
			return nil, fmt.Errorf("%w: record %d: offset delta %d beyond last offset delta %d", ErrInvalidBatch, i, rec.OffsetDelta, h.LastOffsetDelta)
		case rec.OffsetDelta <= prevDelta:
			return nil, fmt.Errorf("%w: record %d: offset delta %d does not follow %d", ErrInvalidBatch, i, rec.OffsetDelta, prevDelta)
		}
		prevDelta = rec.OffsetDelta
		recs = append(recs, rec)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after the %d records", ErrInvalidBatch, len(r.b), count)
	}
	return recs, nil
}

// recordReader reads record fields from b. The first failure is kept in err
// and later reads return zero values, so that parsing code reads straight
// through and checks once. Field names are constant strings, so that naming
// them costs nothing until an error is built.
type recordReader struct {
	b   []byte
	rec int // index of the record being read, for errors
	hdr int // index of the header being read, or -1, for errors
	err error
}

func (r *recordReader) fail(format string, args ...any) {
	if r.err != nil {
		return
	}
	where := fmt.Sprintf("record %d: ", r.rec)
	if r.hdr >= 0 {
		where += fmt.Sprintf("header %d ", r.hdr)
	}
	r.err = fmt.Errorf("%w: %s%s", ErrInvalidBatch, where, fmt.Sprintf(format, args...))
}

// varlong reads a zigzag varint; field and suffix name it in errors.
func (r *recordReader) varlong(field, suffix string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	switch {
	case n == 0:
		r.fail("%s%s: truncated varint", field, suffix)
		return 0
	case n < 0:
		r.fail("%s%s: varint overflows 64 bits", field, suffix)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// varint reads a zigzag varint that must fit 32 bits.
func (r *recordReader) varint(field, suffix string) int32 {
	v := r.varlong(field, suffix)
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.fail("%s%s: %d overflows a 32-bit varint", field, suffix, v)
		return 0
	}
	return int32(v)
}

// bytes reads a length-prefixed byte string; length -1 is null (nil). The
// result aliases the input.
func (r *recordReader) bytes(field string) []byte {
	n := r.varint(field, " length")
	if r.err != nil {
		return nil
	}
	switch {
	case n == -1:
		return nil
	case n < 0:
		r.fail("%s: negative length %d", field, n)
		return nil
	case int(n) > len(r.b):
		r.fail("%s: length %d runs past the %d bytes left", field, n, len(r.b))
		return nil
	}
	// A full slice expression, so that appending to a value cannot
	// overwrite the record after it.
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// record reads one record, length prefix included.
func (r *recordReader) record() Record {
	r.hdr = -1
	length := r.varint("record length", "")
	if r.err != nil {
		return Record{}
	}
	if length < 0 {
		r.fail("negative record length %d", length)
		return Record{}
	}
	if int(length) > len(r.b) {
		r.fail("record length %d runs past the %d bytes left", length, len(r.b))
		return Record{}
	}
	// Read the fields from exactly the record's bytes, so that a field
	// running past the record's end is caught rather than read from the
	// next record.
	rest := r.b[length:]
	r.b = r.b[:length]

	var rec Record
	if len(r.b) == 0 {
		r.fail("attributes: truncated")
		return Record{}
	}
	rec.Attributes = int8(r.b[0])
	r.b = r.b[1:]
	rec.TimestampDelta = r.varlong("timestamp delta", "")
	rec.OffsetDelta = r.varint("offset delta", "")
	rec.Key = r.bytes("key")
	rec.Value = r.bytes("value")
	n := r.varint("header count", "")
	switch {
	case r.err != nil:
		return Record{}
	case n < 0:
		r.fail("negative header count %d", n)
		return Record{}
	case int(n) > len(r.b)/2: // a header takes at least two bytes
		r.fail("header count %d cannot fit in the %d bytes left", n, len(r.b))
		return Record{}
	}
	if n > 0 {
		rec.Headers = make([]RecordHeader, n)
		for i := range rec.Headers {
			r.hdr = i
			key := r.bytes("key")
			if r.err == nil && key == nil {
				r.fail("key: null")
			}
			// The key is copied into a string: converting without a
			// copy would let later writes to the buffer change it.
			rec.Headers[i] = RecordHeader{Key: string(key), Value: r.bytes("value")}
		}
		r.hdr = -1
	}
	if r.err != nil {
		return Record{}
	}
	if len(r.b) != 0 {
		r.fail("%d bytes left inside the record after its headers", len(r.b))
		return Record{}
	}
	r.b = rest
	return rec
}

// EncodeBatch builds a v2 record batch holding recs. From h it takes
// BaseOffset, LeaderEpoch, Attributes (and with them the compression codec),
// LastOffsetDelta, BaseTimestamp, MaxTimestamp, ProducerID, ProducerEpoch and
// BaseSequence; it computes Length, RecordCount and the CRC-32C, and always
// writes magic 2. LastOffsetDelta is kept as given, as compaction needs it to
// keep a batch's offsets in place, but is raised to the largest record offset
// delta if smaller (and to zero if negative).
//
// Record offset deltas must be non-negative and strictly increasing. A zero
// BatchHeader has producer id 0, which is a real producer id: batches from no
// producer use -1 for ProducerID, ProducerEpoch and BaseSequence, as NewBatch
// does.
func EncodeBatch(h BatchHeader, recs []Record) ([]byte, error) {
	return defaultCodecs().encodeBatch(h, recs)
}

// NewBatch builds a v2 record batch of recs, compressed with c, as a producer
// without idempotence would: base offset 0 (the log assigns offsets), leader
// epoch, producer id, producer epoch and base sequence all -1, create-time
// timestamps with the given base and the maximum of the records' timestamps
// as MaxTimestamp. If every record has offset delta zero the records are
// numbered 0 to len(recs)-1 (recs itself is not modified); otherwise their
// deltas are kept.
func NewBatch(c Compression, baseTimestampMs int64, recs ...Record) ([]byte, error) {
	if c < CompressionNone || c > CompressionZstd {
		return nil, fmt.Errorf("new batch: unknown compression codec %d", int8(c))
	}
	numbered := true
	for _, rec := range recs {
		if rec.OffsetDelta != 0 {
			numbered = false
			break
		}
	}
	if numbered && len(recs) > 1 {
		recs = slices.Clone(recs) // shallow: only the deltas change
		for i := range recs {
			recs[i].OffsetDelta = int32(i)
		}
	}
	maxTS := baseTimestampMs
	for i, rec := range recs {
		if ts := baseTimestampMs + rec.TimestampDelta; i == 0 || ts > maxTS {
			maxTS = ts
		}
	}
	h := BatchHeader{
		LeaderEpoch:   -1,
		Attributes:    int16(c),
		BaseTimestamp: baseTimestampMs,
		MaxTimestamp:  maxTS,
		ProducerID:    -1,
		ProducerEpoch: -1,
		BaseSequence:  -1,
	}
	return EncodeBatch(h, recs)
}

// encodeBatch is EncodeBatch with cs's codecs.
func (cs *codecs) encodeBatch(h BatchHeader, recs []Record) ([]byte, error) {
	c := h.Compression()
	if c > CompressionZstd {
		return nil, fmt.Errorf("encode batch: unknown compression codec %d", int8(c))
	}
	if len(recs) > math.MaxInt32 {
		return nil, fmt.Errorf("encode batch: %d records do not fit a batch", len(recs))
	}
	lastDelta := max(h.LastOffsetDelta, 0)
	rawSize := 0
	for i, rec := range recs {
		switch {
		case rec.OffsetDelta < 0:
			return nil, fmt.Errorf("encode batch: record %d: negative offset delta %d", i, rec.OffsetDelta)
		case i > 0 && rec.OffsetDelta <= recs[i-1].OffsetDelta:
			return nil, fmt.Errorf("encode batch: record %d: offset delta %d does not follow %d", i, rec.OffsetDelta, recs[i-1].OffsetDelta)
		}
		lastDelta = max(lastDelta, rec.OffsetDelta)
		body := recordBodySize(rec)
		if body > math.MaxInt32 {
			return nil, fmt.Errorf("encode batch: record %d: %d bytes do not fit a record", i, body)
		}
		rawSize += varintSize(int64(body)) + body
		if rawSize > math.MaxInt32 {
			return nil, fmt.Errorf("encode batch: records exceed the maximum batch size")
		}
	}

	// Reserve the header, then write the records (or their compressed
	// form) straight behind it, so the batch is built in one buffer.
	var b []byte
	if c == CompressionNone {
		b = make([]byte, BatchHeaderSize, BatchHeaderSize+rawSize)
		b = appendRecords(b, recs)
	} else {
		raw := appendRecords(make([]byte, 0, rawSize), recs)
		// Compressed record data is usually much smaller; appendCompressed
		// grows b when it is not.
		b = make([]byte, BatchHeaderSize, BatchHeaderSize+rawSize/2+64)
		var err error
		if b, err = cs.appendCompressed(b, c, raw); err != nil {
			return nil, fmt.Errorf("encode batch: %w", err)
		}
	}
	if len(b)-batchLogOverhead > math.MaxInt32 {
		return nil, fmt.Errorf("encode batch: %d bytes exceed the maximum batch size", len(b))
	}

	be := binary.BigEndian
	be.PutUint64(b[offBaseOffset:], uint64(h.BaseOffset))
	be.PutUint32(b[offBatchLength:], uint32(len(b)-batchLogOverhead))
	be.PutUint32(b[offLeaderEpoch:], uint32(h.LeaderEpoch))
	b[offMagic] = 2
	be.PutUint16(b[offAttributes:], uint16(h.Attributes))
	be.PutUint32(b[offLastOffsetDelta:], uint32(lastDelta))
	be.PutUint64(b[offBaseTimestamp:], uint64(h.BaseTimestamp))
	be.PutUint64(b[offMaxTimestamp:], uint64(h.MaxTimestamp))
	be.PutUint64(b[offProducerID:], uint64(h.ProducerID))
	be.PutUint16(b[offProducerEpoch:], uint16(h.ProducerEpoch))
	be.PutUint32(b[offBaseSequence:], uint32(h.BaseSequence))
	be.PutUint32(b[offRecordCount:], uint32(len(recs)))
	// The CRC covers attributes to the end, so it is computed last.
	be.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], crc32c))
	return b, nil
}

// appendRecords appends the encoded records to b.
func appendRecords(b []byte, recs []Record) []byte {
	for _, rec := range recs {
		b = binary.AppendVarint(b, int64(recordBodySize(rec)))
		b = append(b, byte(rec.Attributes))
		b = binary.AppendVarint(b, rec.TimestampDelta)
		b = binary.AppendVarint(b, int64(rec.OffsetDelta))
		b = appendNullableBytes(b, rec.Key)
		b = appendNullableBytes(b, rec.Value)
		b = binary.AppendVarint(b, int64(len(rec.Headers)))
		for _, hd := range rec.Headers {
			b = binary.AppendVarint(b, int64(len(hd.Key)))
			b = append(b, hd.Key...)
			b = appendNullableBytes(b, hd.Value)
		}
	}
	return b
}

func appendNullableBytes(b, v []byte) []byte {
	if v == nil {
		return binary.AppendVarint(b, -1)
	}
	b = binary.AppendVarint(b, int64(len(v)))
	return append(b, v...)
}

// recordBodySize is the encoded size of rec after its length prefix.
func recordBodySize(rec Record) int {
	n := 1 + // attributes
		varintSize(rec.TimestampDelta) +
		varintSize(int64(rec.OffsetDelta)) +
		nullableBytesSize(rec.Key) +
		nullableBytesSize(rec.Value) +
		varintSize(int64(len(rec.Headers)))
	for _, hd := range rec.Headers {
		n += varintSize(int64(len(hd.Key))) + len(hd.Key) + nullableBytesSize(hd.Value)
	}
	return n
}

func nullableBytesSize(v []byte) int {
	if v == nil {
		return varintSize(-1)
	}
	return varintSize(int64(len(v))) + len(v)
}

// varintSize is the size of v as a zigzag varint. Kafka's 32-bit varints
// encode like 64-bit ones for values in range, so this serves both.
func varintSize(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	return (bits.Len64(u|1) + 6) / 7
}
