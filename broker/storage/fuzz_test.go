package storage

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"testing"

	"github.com/runnel-io/runnel/broker/storage/internal/vfs"
)

// FuzzValidateBatch feeds arbitrary bytes to batch validation and record
// decoding. Neither may panic; whatever ValidateBatch accepts must be
// self-consistent, must be taken by Append on a fresh partition, and must
// read back unchanged but for the base offset and leader epoch that Append
// assigns, at the offsets Append reported.
func FuzzValidateBatch(f *testing.F) {
	for _, c := range []Compression{CompressionNone, CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd} {
		b, err := NewBatch(c, 1_700_000_000_000, Record{Key: []byte("k"), Value: []byte("v")},
			Record{Key: nil, Value: []byte("no key"), TimestampDelta: 5, Headers: []RecordHeader{{Key: "h", Value: []byte("1")}}},
			Record{Key: []byte("tomb")})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ValidateBatch(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidBatch) {
				t.Fatalf("validation error does not wrap ErrInvalidBatch: %v", err)
			}
			return
		}
		if h.Size() > len(data) || h.Magic != 2 || h.RecordCount < 0 || h.LastOffsetDelta < 0 {
			t.Fatalf("accepted an inconsistent header: %+v for %d bytes", h, len(data))
		}
		batch := data[:h.Size()]
		checkAppendReadBack(t, batch, h)
		_, recs, err := DecodeRecords(batch)
		if err != nil {
			if !errors.Is(err, ErrInvalidBatch) {
				t.Fatalf("decode error does not wrap ErrInvalidBatch: %v", err)
			}
			return
		}
		if len(recs) != int(h.RecordCount) {
			t.Fatalf("decoded %d records, header says %d", len(recs), h.RecordCount)
		}
		for _, r := range recs {
			if r.OffsetDelta > h.LastOffsetDelta {
				t.Fatalf("record offset delta %d beyond last offset delta %d", r.OffsetDelta, h.LastOffsetDelta)
			}
		}
	})
}

// checkAppendReadBack appends a valid batch to a fresh partition (on a
// MemFS, so that each fuzz input costs no disk) and reads it back.
func checkAppendReadBack(t *testing.T, batch []byte, h BatchHeader) {
	t.Helper()
	m := vfs.NewMemFS()
	l, err := Open("/log", Options{Durability: DurabilityAlways, fs: m})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tp, err := l.CreateTopic("fuzz", 1, map[string]string{ConfigMaxMessageBytes: strconv.Itoa(math.MaxInt32)})
	if err != nil {
		t.Fatal(err)
	}
	p := tp.Partition(0)
	in := bytes.Clone(batch) // Append rewrites its argument
	res, err := p.Append(in)
	if err != nil {
		t.Fatalf("append of a batch ValidateBatch accepted (%+v): %v", h, err)
	}
	if res.BaseOffset != 0 || res.LastOffset != int64(h.LastOffsetDelta) {
		t.Fatalf("append to an empty partition put the batch at %d-%d, want 0-%d", res.BaseOffset, res.LastOffset, h.LastOffsetDelta)
	}
	r, err := p.Read(0, 1, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(batch) {
		t.Fatalf("read back %d bytes, appended %d", len(got), len(batch))
	}
	gh, err := ValidateBatch(got)
	if err != nil {
		t.Fatalf("the batch read back is invalid: %v", err)
	}
	if gh.BaseOffset != res.BaseOffset || gh.LeaderEpoch != 0 {
		t.Fatalf("read back base offset %d and leader epoch %d, want %d and 0", gh.BaseOffset, gh.LeaderEpoch, res.BaseOffset)
	}
	// Only the base offset and the leader epoch may differ: both lie
	// outside what the CRC covers.
	for _, part := range [][2]int{{offBatchLength, offLeaderEpoch}, {offLeaderEpoch + 4, len(batch)}} {
		if !bytes.Equal(got[part[0]:part[1]], batch[part[0]:part[1]]) {
			t.Fatalf("bytes %d to %d changed between append and read", part[0], part[1])
		}
	}
}
