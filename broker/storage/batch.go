package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Kafka v2 record batch header layout (all integers big-endian). The CRC
// covers everything from the attributes to the end of the batch, so the base
// offset and the partition leader epoch can be rewritten on append without
// touching it.
//
//	offset  size  field
//	0       8     baseOffset
//	8       4     batchLength (bytes after this field)
//	12      4     partitionLeaderEpoch
//	16      1     magic (2)
//	17      4     crc (CRC-32C)
//	21      2     attributes
//	23      4     lastOffsetDelta
//	27      8     baseTimestamp
//	35      8     maxTimestamp
//	43      8     producerId
//	51      2     producerEpoch
//	53      4     baseSequence
//	57      4     recordCount
//	61      ...   records
const (
	offBaseOffset      = 0
	offBatchLength     = 8
	offLeaderEpoch     = 12
	offMagic           = 16
	offCRC             = 17
	offAttributes      = 21
	offLastOffsetDelta = 23
	offBaseTimestamp   = 27
	offMaxTimestamp    = 35
	offProducerID      = 43
	offProducerEpoch   = 51
	offBaseSequence    = 53
	offRecordCount     = 57

	// BatchHeaderSize is the size of a v2 record batch header.
	BatchHeaderSize = 61
	// batchLogOverhead is what precedes the batchLength-counted bytes.
	batchLogOverhead = 12
)

// Attribute bits of a v2 record batch.
const (
	attrCompressionMask = 0x07
	attrTimestampType   = 0x08
	attrTransactional   = 0x10
	attrControl         = 0x20
)

// Compression is the codec recorded in a batch's attributes.
type Compression int8

// The codecs Kafka defines for record batches.
const (
	CompressionNone   Compression = 0
	CompressionGzip   Compression = 1
	CompressionSnappy Compression = 2
	CompressionLZ4    Compression = 3
	CompressionZstd   Compression = 4
)

func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionGzip:
		return "gzip"
	case CompressionSnappy:
		return "snappy"
	case CompressionLZ4:
		return "lz4"
	case CompressionZstd:
		return "zstd"
	}
	return fmt.Sprintf("compression(%d)", int8(c))
}

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// ErrInvalidBatch is wrapped by every batch validation error, so callers
// (the wire server answering CORRUPT_MESSAGE) can test for it with errors.Is.
var ErrInvalidBatch = errors.New("invalid record batch")

// BatchHeader is the parsed fixed header of a v2 record batch. It is the one
// place batch headers are decoded; the rest of the package and the broker
// use it rather than reading offsets into the byte slice.
type BatchHeader struct {
	BaseOffset      int64
	Length          int32 // bytes after the length field
	LeaderEpoch     int32
	Magic           int8
	CRC             uint32
	Attributes      int16
	LastOffsetDelta int32
	BaseTimestamp   int64
	MaxTimestamp    int64
	ProducerID      int64
	ProducerEpoch   int16
	BaseSequence    int32
	RecordCount     int32
}

// ParseBatchHeader decodes the header at the start of b. It checks only that
// enough bytes are present; ValidateBatch checks the rest.
func ParseBatchHeader(b []byte) (BatchHeader, error) {
	if len(b) < BatchHeaderSize {
		return BatchHeader{}, fmt.Errorf("%w: %d bytes is shorter than the %d-byte header", ErrInvalidBatch, len(b), BatchHeaderSize)
	}
	be := binary.BigEndian
	return BatchHeader{
		BaseOffset:      int64(be.Uint64(b[offBaseOffset:])),
		Length:          int32(be.Uint32(b[offBatchLength:])),
		LeaderEpoch:     int32(be.Uint32(b[offLeaderEpoch:])),
		Magic:           int8(b[offMagic]),
		CRC:             be.Uint32(b[offCRC:]),
		Attributes:      int16(be.Uint16(b[offAttributes:])),
		LastOffsetDelta: int32(be.Uint32(b[offLastOffsetDelta:])),
		BaseTimestamp:   int64(be.Uint64(b[offBaseTimestamp:])),
		MaxTimestamp:    int64(be.Uint64(b[offMaxTimestamp:])),
		ProducerID:      int64(be.Uint64(b[offProducerID:])),
		ProducerEpoch:   int16(be.Uint16(b[offProducerEpoch:])),
		BaseSequence:    int32(be.Uint32(b[offBaseSequence:])),
		RecordCount:     int32(be.Uint32(b[offRecordCount:])),
	}, nil
}

// Size is the whole batch's size in bytes, header included.
func (h BatchHeader) Size() int { return int(h.Length) + batchLogOverhead }

// LastOffset is the offset of the batch's last record (before compaction
// removed any: compaction keeps lastOffsetDelta so that offsets stay put).
func (h BatchHeader) LastOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) }

// Compression is the codec of the batch's records.
func (h BatchHeader) Compression() Compression {
	return Compression(h.Attributes & attrCompressionMask)
}

// LogAppendTime reports whether the batch's timestamps were set by the log.
func (h BatchHeader) LogAppendTime() bool { return h.Attributes&attrTimestampType != 0 }

// Transactional reports whether the batch belongs to a transaction.
func (h BatchHeader) Transactional() bool { return h.Attributes&attrTransactional != 0 }

// Control reports whether the batch holds a transaction control marker.
func (h BatchHeader) Control() bool { return h.Attributes&attrControl != 0 }

// Idempotent reports whether the batch carries a producer id and sequence.
func (h BatchHeader) Idempotent() bool { return h.ProducerID >= 0 }

// maxRecordsInBatch bounds recordCount so that a hostile header cannot make
// later stages allocate without limit: every record takes at least 7 bytes
// (length, attributes, timestamp delta, offset delta, key length, value
// length, header count, each at least one byte).
const minRecordSize = 7

// ValidateBatch checks one v2 record batch at the start of b and returns its
// header. It checks, in order, the header size, the batch length against the
// bytes present, the magic byte, the record count against the length and the
// last offset delta, and the CRC-32C. The error names the check that failed.
func ValidateBatch(b []byte) (BatchHeader, error) {
	h, err := ParseBatchHeader(b)
	if err != nil {
		return h, err
	}
	if h.Length < BatchHeaderSize-batchLogOverhead {
		return h, fmt.Errorf("%w: batch length %d is shorter than the header", ErrInvalidBatch, h.Length)
	}
	if h.Size() > len(b) {
		return h, fmt.Errorf("%w: batch length %d runs past the %d bytes given", ErrInvalidBatch, h.Length, len(b)-batchLogOverhead)
	}
	if h.Magic != 2 {
		return h, fmt.Errorf("%w: magic %d, only record batch format v2 (magic 2) is supported", ErrInvalidBatch, h.Magic)
	}
	if h.RecordCount < 0 {
		return h, fmt.Errorf("%w: negative record count %d", ErrInvalidBatch, h.RecordCount)
	}
	if h.LastOffsetDelta < 0 {
		return h, fmt.Errorf("%w: negative last offset delta %d", ErrInvalidBatch, h.LastOffsetDelta)
	}
	if h.RecordCount > 0 && h.RecordCount-1 > h.LastOffsetDelta {
		return h, fmt.Errorf("%w: record count %d does not fit last offset delta %d", ErrInvalidBatch, h.RecordCount, h.LastOffsetDelta)
	}
	if h.Compression() == CompressionNone && int64(h.RecordCount)*minRecordSize > int64(h.Size()-BatchHeaderSize) {
		return h, fmt.Errorf("%w: record count %d cannot fit in %d bytes of records", ErrInvalidBatch, h.RecordCount, h.Size()-BatchHeaderSize)
	}
	if h.Compression() > CompressionZstd {
		return h, fmt.Errorf("%w: unknown compression codec %d", ErrInvalidBatch, h.Compression())
	}
	if got := crc32.Checksum(b[offAttributes:h.Size()], crc32c); got != h.CRC {
		return h, fmt.Errorf("%w: CRC-32C mismatch (header says %08x, data gives %08x)", ErrInvalidBatch, h.CRC, got)
	}
	return h, nil
}

// ErrInvalidRecord is wrapped by the checks Kafka makes of a batch as a
// producer sends it, beyond its being well formed: the wire server answers
// INVALID_RECORD, as Kafka does, where ErrInvalidBatch gets
// CORRUPT_MESSAGE.
var ErrInvalidRecord = errors.New("invalid record")

// checkProducedBatch applies to a batch that ValidateBatch accepted the
// checks Kafka makes only of batches from producers: at least one record,
// and exactly one offset per record (lastOffsetDelta = recordCount - 1).
// Batches the cleaner rewrote keep their offset range with fewer records,
// and recovery reads those, so ValidateBatch itself cannot insist on it;
// without it, a producer could take any number of offsets with one record,
// or one with none.
func checkProducedBatch(h BatchHeader) error {
	if h.RecordCount <= 0 {
		return fmt.Errorf("%w: record count %d, a batch needs at least one record", ErrInvalidRecord, h.RecordCount)
	}
	if int64(h.LastOffsetDelta) != int64(h.RecordCount)-1 {
		return fmt.Errorf("%w: last offset delta %d does not match record count %d (want %d)", ErrInvalidRecord, h.LastOffsetDelta, h.RecordCount, h.RecordCount-1)
	}
	return nil
}

// setBaseOffset rewrites the base offset of the batch at the start of b.
func setBaseOffset(b []byte, off int64) {
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(off))
}

// setLeaderEpoch rewrites the partition leader epoch of the batch at b.
func setLeaderEpoch(b []byte, epoch int32) {
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(epoch))
}

// setLogAppendTime stamps a batch with the log's append time. Unlike the base
// offset, attributes and timestamps are covered by the CRC, so it is
// recomputed.
func setLogAppendTime(b []byte, h BatchHeader, ms int64) {
	be := binary.BigEndian
	be.PutUint16(b[offAttributes:], uint16(h.Attributes|attrTimestampType))
	be.PutUint64(b[offMaxTimestamp:], uint64(ms))
	be.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:h.Size()], crc32c))
}
