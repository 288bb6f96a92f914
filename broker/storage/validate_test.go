package storage

import (
	"encoding/binary"
	"hash/crc32"
	"math"
	"testing"
)

// withHeader returns a copy of batch with its record count and last offset
// delta replaced and the CRC made right again, as a hostile producer would
// send it.
func withHeader(batch []byte, count, lastOffsetDelta int32) []byte {
	b := append([]byte(nil), batch...)
	binary.BigEndian.PutUint32(b[offRecordCount:], uint32(count))
	binary.BigEndian.PutUint32(b[offLastOffsetDelta:], uint32(lastOffsetDelta))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], crc32c))
	return b
}

// Kafka refuses a produced batch with no records, or whose offset range
// does not match its record count, with INVALID_RECORD; runnel took both,
// so a producer could burn 2^31 offsets with three records, or one offset
// with none.
func TestAppendRejectsOffsetRangeNotMatchingRecords(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	p := mustCreate(t, l, "t", 1, nil).Partition(0)
	three := mustBatch(t, 1000, kv("a", "1"), kv("b", "2"), kv("c", "3"))
	empty, err := NewBatch(CompressionNone, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		batch []byte
	}{
		{"no records", empty},
		{"count 0 with records", withHeader(three, 0, 2)},
		{"offsets beyond the records", withHeader(three, 3, math.MaxInt32)},
		{"one offset too many", withHeader(three, 3, 3)},
	} {
		_, err := p.Append(tc.batch)
		wantErr(t, err, ErrInvalidRecord, tc.name)
		if leo := p.LogEndOffset(); leo != 0 {
			t.Fatalf("%s: log end offset %d after a refused append, want 0", tc.name, leo)
		}
	}
	// A well-formed batch still goes in, at offset 0.
	if res := mustAppend(t, p, three); res.BaseOffset != 0 || res.LastOffset != 2 {
		t.Fatalf("append: offsets %d..%d, want 0..2", res.BaseOffset, res.LastOffset)
	}
}

// The check is for producers' batches only: a compacted batch keeps its
// offset range with fewer records, and recovery must keep reading it.
func TestCompactedBatchStillValid(t *testing.T) {
	three := mustBatch(t, 1000, kv("a", "1"), kv("b", "2"), kv("c", "3"))
	h, recs, err := DecodeRecords(three)
	if err != nil {
		t.Fatal(err)
	}
	compacted, err := EncodeBatch(h, recs[2:])
	if err != nil {
		t.Fatal(err)
	}
	ch, err := ValidateBatch(compacted)
	if err != nil {
		t.Fatalf("a compacted batch fails validation: %v", err)
	}
	if ch.RecordCount != 1 || ch.LastOffsetDelta != 2 {
		t.Fatalf("compacted batch: count %d, last offset delta %d; want 1 and 2", ch.RecordCount, ch.LastOffsetDelta)
	}
}
