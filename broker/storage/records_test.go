package storage

import (
	"bytes"
	stdgzip "compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/snappy/xerial"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// sampleRecords covers what records can hold: keys, null and empty keys,
// null values (tombstones) and empty values, headers with null and empty
// values, negative and large timestamp deltas, and offset deltas with gaps
// as compaction leaves them.
func sampleRecords() []Record {
	return []Record{
		{TimestampDelta: 0, OffsetDelta: 0, Key: []byte("k0"), Value: []byte("v0")},
		{TimestampDelta: -5, OffsetDelta: 1, Key: nil, Value: []byte("no key")},
		{TimestampDelta: 1 << 40, OffsetDelta: 2, Key: []byte{}, Value: []byte{}},
		{TimestampDelta: 7, OffsetDelta: 5, Key: []byte("deleted"), Value: nil},
		{TimestampDelta: 8, OffsetDelta: 6, Key: []byte("k6"), Value: bytes.Repeat([]byte("value "), 300), Headers: []RecordHeader{
			{Key: "trace", Value: []byte("abc")},
			{Key: "null", Value: nil},
			{Key: "", Value: []byte{}},
		}},
		{Attributes: 0, TimestampDelta: 9, OffsetDelta: 9, Key: []byte("k9"), Value: []byte("last")},
	}
}

// crcTable is the test's own Castagnoli table, so CRCs are not checked with
// the table under test.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// kmsgRecords encodes recs with kmsg, an encoder independent of ours.
func kmsgRecords(recs []Record) []byte {
	var raw []byte
	for _, r := range recs {
		kr := kmsg.Record{
			Attributes:       r.Attributes,
			TimestampDelta64: r.TimestampDelta,
			OffsetDelta:      r.OffsetDelta,
			Key:              r.Key,
			Value:            r.Value,
		}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kmsg.Header{Key: h.Key, Value: h.Value})
		}
		// kmsg writes Length as given: encode once with length 0 (one
		// byte) to measure the body, then for real.
		kr.Length = int32(len(kr.AppendTo(nil)) - 1)
		raw = kr.AppendTo(raw)
	}
	return raw
}

// kmsgBatch builds a batch around records (already compressed if the
// attributes say so) with kmsg.RecordBatch, setting Length and the CRC-32C.
func kmsgBatch(h BatchHeader, records []byte) []byte {
	kb := kmsg.RecordBatch{
		FirstOffset:          h.BaseOffset,
		Length:               int32(49 + len(records)),
		PartitionLeaderEpoch: h.LeaderEpoch,
		Magic:                2,
		Attributes:           h.Attributes,
		LastOffsetDelta:      h.LastOffsetDelta,
		FirstTimestamp:       h.BaseTimestamp,
		MaxTimestamp:         h.MaxTimestamp,
		ProducerID:           h.ProducerID,
		ProducerEpoch:        h.ProducerEpoch,
		FirstSequence:        h.BaseSequence,
		NumRecords:           h.RecordCount,
		Records:              records,
	}
	b := kb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crcTable))
	return b
}

// parseKmsgRecords parses a record array with kmsg.
func parseKmsgRecords(t *testing.T, raw []byte) []kmsg.Record {
	t.Helper()
	var out []kmsg.Record
	for len(raw) > 0 {
		length, n := binary.Varint(raw)
		if n <= 0 || int(length) > len(raw)-n {
			t.Fatalf("kmsg record %d: bad length prefix", len(out))
		}
		var kr kmsg.Record
		if err := kr.ReadFrom(raw[:n+int(length)]); err != nil {
			t.Fatalf("kmsg record %d: %v", len(out), err)
		}
		out = append(out, kr)
		raw = raw[n+int(length):]
	}
	return out
}

// sameBytes compares nullable byte strings: nil and empty differ.
func sameBytes(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}

func checkKmsgRecords(t *testing.T, got []kmsg.Record, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("kmsg parsed %d records, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Attributes != w.Attributes || g.TimestampDelta64 != w.TimestampDelta || g.OffsetDelta != w.OffsetDelta ||
			!sameBytes(g.Key, w.Key) || !sameBytes(g.Value, w.Value) || len(g.Headers) != len(w.Headers) {
			t.Fatalf("record %d: kmsg parsed %+v, want %+v", i, g, w)
		}
		for j, wh := range w.Headers {
			if gh := g.Headers[j]; gh.Key != wh.Key || !sameBytes(gh.Value, wh.Value) {
				t.Fatalf("record %d header %d: kmsg parsed %+v, want %+v", i, j, gh, wh)
			}
		}
	}
}

func checkRecords(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("decoded %d records, want %d", len(got), len(want))
	}
	for i := range want {
		// DeepEqual tells nil from empty slices, as it must here.
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestEncodeBatchRoundTrip(t *testing.T) {
	want := sampleRecords()
	for _, c := range allCodecs {
		for _, extra := range []int16{0, attrTimestampType | attrTransactional} {
			t.Run(fmt.Sprintf("%s/attrs=%#x", c, extra), func(t *testing.T) {
				h := BatchHeader{
					BaseOffset:      1000,
					LeaderEpoch:     7,
					Attributes:      int16(c) | extra,
					LastOffsetDelta: 12, // beyond the last record: kept, as after compaction
					BaseTimestamp:   1700000000000,
					MaxTimestamp:    1700000000009,
					ProducerID:      42,
					ProducerEpoch:   3,
					BaseSequence:    17,
				}
				b, err := EncodeBatch(h, want)
				if err != nil {
					t.Fatal(err)
				}
				vh, err := ValidateBatch(b)
				if err != nil {
					t.Fatalf("ValidateBatch: %v", err)
				}
				if vh.Size() != len(b) {
					t.Fatalf("batch length says %d bytes, have %d", vh.Size(), len(b))
				}

				gh, recs, err := DecodeRecords(b)
				if err != nil {
					t.Fatalf("DecodeRecords: %v", err)
				}
				wantH := h
				wantH.Length, wantH.Magic, wantH.CRC, wantH.RecordCount = int32(len(b)-12), 2, vh.CRC, int32(len(want))
				if gh != wantH {
					t.Fatalf("header\n got %+v\nwant %+v", gh, wantH)
				}
				checkRecords(t, recs, want)

				// An independent parser reads the same fields.
				var kb kmsg.RecordBatch
				if err := kb.ReadFrom(b); err != nil {
					t.Fatalf("kmsg: %v", err)
				}
				if kb.FirstOffset != h.BaseOffset || kb.Length != wantH.Length || kb.PartitionLeaderEpoch != h.LeaderEpoch ||
					kb.Magic != 2 || uint32(kb.CRC) != crc32.Checksum(b[21:], crcTable) || kb.Attributes != h.Attributes ||
					kb.LastOffsetDelta != h.LastOffsetDelta || kb.FirstTimestamp != h.BaseTimestamp ||
					kb.MaxTimestamp != h.MaxTimestamp || kb.ProducerID != h.ProducerID || kb.ProducerEpoch != h.ProducerEpoch ||
					kb.FirstSequence != h.BaseSequence || kb.NumRecords != int32(len(want)) {
					t.Fatalf("kmsg parsed %+v, want the fields of %+v", kb, wantH)
				}
				checkKmsgRecords(t, parseKmsgRecords(t, referenceDecompress(t, c, kb.Records)), want)
			})
		}
	}
}

// TestDecodeRecordsFromKmsg decodes batches from an independent encoder:
// records and batch framing by kmsg, compression by the codec libraries
// directly, in the forms different clients write.
func TestDecodeRecordsFromKmsg(t *testing.T) {
	want := sampleRecords()
	raw := kmsgRecords(want)

	lz4Frame := func(opts ...lz4.Option) []byte {
		var buf bytes.Buffer
		w := lz4.NewWriter(&buf)
		if err := w.Apply(opts...); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(raw); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	var gz bytes.Buffer
	gw := stdgzip.NewWriter(&gz)
	_, _ = gw.Write(raw)
	_ = gw.Close()
	zenc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zenc.Close()
	var zstream bytes.Buffer
	zw, err := zstd.NewWriter(&zstream)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = zw.Write(raw)
	_ = zw.Close()

	cases := []struct {
		name    string
		c       Compression
		records []byte
	}{
		{"none", CompressionNone, raw},
		{"gzip (stdlib)", CompressionGzip, gz.Bytes()},
		{"snappy xerial (java form)", CompressionSnappy, xerial.Encode(nil, raw)},
		{"snappy raw block (librdkafka form)", CompressionSnappy, snappy.Encode(nil, raw)},
		{"lz4 java-like frame", CompressionLZ4, lz4Frame(lz4.BlockSizeOption(lz4.Block64Kb), lz4.ChecksumOption(false))},
		{"lz4 frame with checksums and size", CompressionLZ4, lz4Frame(lz4.BlockChecksumOption(true), lz4.SizeOption(uint64(len(raw))))},
		{"zstd EncodeAll", CompressionZstd, zenc.EncodeAll(raw, nil)},
		{"zstd stream", CompressionZstd, zstream.Bytes()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := BatchHeader{
				BaseOffset: 5, LeaderEpoch: -1, Attributes: int16(tc.c), LastOffsetDelta: 9,
				BaseTimestamp: 100, MaxTimestamp: 109, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1,
				RecordCount: int32(len(want)),
			}
			b := kmsgBatch(h, tc.records)
			gh, recs, err := DecodeRecords(b)
			if err != nil {
				t.Fatalf("DecodeRecords: %v", err)
			}
			if gh.BaseOffset != 5 || gh.LastOffsetDelta != 9 || gh.RecordCount != int32(len(want)) || gh.Compression() != tc.c {
				t.Fatalf("header %+v", gh)
			}
			checkRecords(t, recs, want)
		})
	}
}

func TestDecodeRecordsAliasesUncompressedBatch(t *testing.T) {
	b, err := NewBatch(CompressionNone, 0, Record{Key: []byte("key"), Value: []byte("value")})
	if err != nil {
		t.Fatal(err)
	}
	_, recs, err := DecodeRecords(b)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.Index(b, []byte("value")); &recs[0].Value[0] != &b[i] {
		t.Fatal("value was copied out of the batch; it should alias it")
	}
	// Appending to a key must not overwrite the value after it.
	if k := recs[0].Key; cap(k) != len(k) {
		t.Fatalf("key capacity %d reaches past its length %d", cap(k), len(k))
	}
}

func TestEncodeBatchLastOffsetDelta(t *testing.T) {
	recs := []Record{{OffsetDelta: 0}, {OffsetDelta: 3}}
	for _, tc := range []struct {
		given, want int32
		recs        []Record
	}{
		{given: 0, want: 3, recs: recs},   // below the records: raised
		{given: 10, want: 10, recs: recs}, // compaction removed the tail: kept
		{given: -4, want: 0, recs: nil},   // negative would be invalid
		{given: 7, want: 7, recs: nil},    // an empty compacted batch keeps its offsets
	} {
		b, err := EncodeBatch(BatchHeader{LastOffsetDelta: tc.given, ProducerID: -1}, tc.recs)
		if err != nil {
			t.Fatal(err)
		}
		h, got, err := DecodeRecords(b)
		if err != nil {
			t.Fatal(err)
		}
		if h.LastOffsetDelta != tc.want || len(got) != len(tc.recs) {
			t.Errorf("given %d with %d records: last offset delta %d, %d records; want %d", tc.given, len(tc.recs), h.LastOffsetDelta, len(got), tc.want)
		}
	}
}

func TestEncodeBatchRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    BatchHeader
		recs []Record
		want string
	}{
		{"negative delta", BatchHeader{}, []Record{{OffsetDelta: -1}}, "record 0: negative offset delta -1"},
		{"repeated delta", BatchHeader{}, []Record{{OffsetDelta: 1}, {OffsetDelta: 1}}, "record 1: offset delta 1 does not follow 1"},
		{"decreasing delta", BatchHeader{}, []Record{{OffsetDelta: 2}, {OffsetDelta: 1}}, "record 1: offset delta 1 does not follow 2"},
		{"unknown codec", BatchHeader{Attributes: 6}, nil, "unknown compression codec 6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := EncodeBatch(tc.h, tc.recs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestNewBatch(t *testing.T) {
	in := []Record{
		{Key: []byte("a"), Value: []byte("1"), TimestampDelta: 3},
		{Key: []byte("b"), Value: []byte("2"), TimestampDelta: 10},
		{Key: []byte("c"), Value: nil, TimestampDelta: -2},
	}
	for _, c := range allCodecs {
		t.Run(c.String(), func(t *testing.T) {
			b, err := NewBatch(c, 1000, in...)
			if err != nil {
				t.Fatal(err)
			}
			h, got, err := DecodeRecords(b)
			if err != nil {
				t.Fatal(err)
			}
			wantH := BatchHeader{
				BaseOffset: 0, Length: int32(len(b) - 12), LeaderEpoch: -1, Magic: 2, CRC: h.CRC,
				Attributes: int16(c), LastOffsetDelta: 2, BaseTimestamp: 1000, MaxTimestamp: 1010,
				ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, RecordCount: 3,
			}
			if h != wantH {
				t.Fatalf("header\n got %+v\nwant %+v", h, wantH)
			}
			for i, r := range got {
				if r.OffsetDelta != int32(i) || r.TimestampDelta != in[i].TimestampDelta || !sameBytes(r.Value, in[i].Value) {
					t.Fatalf("record %d: %+v", i, r)
				}
				if in[i].OffsetDelta != 0 {
					t.Fatal("NewBatch numbered the caller's records in place")
				}
			}
		})
	}

	t.Run("explicit deltas kept", func(t *testing.T) {
		b, err := NewBatch(CompressionNone, 0, Record{OffsetDelta: 0}, Record{OffsetDelta: 4})
		if err != nil {
			t.Fatal(err)
		}
		h, got, err := DecodeRecords(b)
		if err != nil {
			t.Fatal(err)
		}
		if h.LastOffsetDelta != 4 || got[1].OffsetDelta != 4 {
			t.Fatalf("last offset delta %d, second record delta %d; want 4 and 4", h.LastOffsetDelta, got[1].OffsetDelta)
		}
	})
	t.Run("no records", func(t *testing.T) {
		b, err := NewBatch(CompressionZstd, 5)
		if err != nil {
			t.Fatal(err)
		}
		h, got, err := DecodeRecords(b)
		if err != nil || h.RecordCount != 0 || len(got) != 0 || h.MaxTimestamp != 5 {
			t.Fatalf("header %+v, %d records, err %v", h, len(got), err)
		}
	})
	t.Run("unknown codec", func(t *testing.T) {
		if _, err := NewBatch(Compression(7), 0); err == nil {
			t.Fatal("NewBatch accepted codec 7")
		}
	})
}

// vi is a zigzag varint, as records encode integers.
func vi(v int64) []byte { return binary.AppendVarint(nil, v) }

// rawRecord frames body (everything after the length) as a record.
func rawRecord(body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	return append(vi(int64(len(b))), b...)
}

// goodBody is a valid record body with offset delta d and a value long enough
// that ValidateBatch's minimum-size check never decides a case for us.
func goodBody(d int64) []byte {
	return bytes.Join([][]byte{{0}, vi(0), vi(d), vi(1), []byte("k"), vi(20), bytes.Repeat([]byte("v"), 20), vi(0)}, nil)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestDecodeRecordsCorrupt(t *testing.T) {
	r0, r1 := rawRecord(goodBody(0)), rawRecord(goodBody(1))
	cases := []struct {
		name      string
		records   []byte
		count     int32
		lastDelta int32
		want      string
	}{
		{"record count larger than present", cat(r0, r1), 3, 2, "record count 3 but the records end after 2"},
		{"trailing bytes after the records", cat(r0, r1, []byte{1, 2, 3}), 2, 1, "3 trailing bytes after the 2 records"},
		{"truncated record length varint", cat(r0, r1, []byte{0x80}), 3, 2, "record 2: record length: truncated varint"},
		{"record length past the end", cat(r0, vi(100), goodBody(1)), 2, 1, "record 1: record length 100 runs past the"},
		{"negative record length", cat(r0, vi(-3), goodBody(1)), 2, 1, "record 1: negative record length -3"},
		{"truncated timestamp varint", cat(r0, rawRecord([]byte{0}, []byte{0x80, 0x80})), 2, 1, "record 1: timestamp delta: truncated varint"},
		{"truncated header count varint", cat(r0, rawRecord([]byte{0}, vi(0), vi(1), vi(-1), vi(-1))), 2, 1, "record 1: header count: truncated varint"},
		{"empty record", cat(r0, rawRecord()), 2, 1, "record 1: attributes: truncated"},
		{"key past the record", cat(rawRecord([]byte{0}, vi(0), vi(0), vi(50), []byte("short"), vi(-1), vi(0)), r1), 2, 1, "record 0: key: length 50 runs past the"},
		{"negative key length", cat(rawRecord([]byte{0}, vi(0), vi(0), vi(-2), vi(-1), vi(0)), r1), 2, 1, "record 0: key: negative length -2"},
		{"value past the record", cat(rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(9), []byte("abc"), vi(0)), r1), 2, 1, "record 0: value: length 9 runs past the"},
		{"bytes left inside the record", cat(rawRecord(goodBody(0), []byte{7, 7}), r1), 2, 1, "record 0: 2 bytes left inside the record after its headers"},
		{"negative header count", cat(rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(-1)), r1), 2, 1, "record 0: negative header count -1"},
		{"header count beyond the record", cat(rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(1000), vi(0), vi(0)), r1), 2, 1, "record 0: header count 1000 cannot fit"},
		{"null header key", cat(rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(1), vi(-1), vi(-1)), r1), 2, 1, "record 0: header 0 key: null"},
		{"header value past the record", cat(rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(1), vi(1), []byte("h"), vi(40)), r1), 2, 1, "record 0: header 0 value: length 40 runs past"},
		{"offset delta overflows int32", cat(rawRecord([]byte{0}, vi(0), vi(1<<40), vi(-1), vi(-1), vi(0)), r1), 2, 1, "record 0: offset delta: 1099511627776 overflows a 32-bit varint"},
		{"varint overflows 64 bits", cat(rawRecord([]byte{0}, bytes.Repeat([]byte{0xff}, 10), []byte{0x7f}), r1), 2, 1, "record 0: timestamp delta: varint overflows 64 bits"},
		{"offset delta beyond last offset delta", cat(r0, rawRecord(goodBody(5))), 2, 1, "record 1: offset delta 5 beyond last offset delta 1"},
		{"repeated offset delta", cat(r0, rawRecord(goodBody(0))), 2, 1, "record 1: offset delta 0 does not follow 0"},
		{"negative offset delta", cat(rawRecord(goodBody(-1)), r1), 2, 1, "record 0: negative offset delta -1"},
	}
	for _, c := range []Compression{CompressionNone, CompressionZstd} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/%s", c, tc.name), func(t *testing.T) {
				payload, err := compress(c, tc.records)
				if err != nil {
					t.Fatal(err)
				}
				b := kmsgBatch(BatchHeader{Attributes: int16(c), LastOffsetDelta: tc.lastDelta, RecordCount: tc.count, ProducerID: -1}, payload)
				if _, err := ValidateBatch(b); err != nil {
					t.Fatalf("the corrupt records should pass ValidateBatch, got %v", err)
				}
				checkInvalid(t, b, tc.want)
			})
		}
	}
}

func checkInvalid(t *testing.T, b []byte, want string) {
	t.Helper()
	_, recs, err := DecodeRecords(b)
	if err == nil {
		t.Fatalf("decoded %d records, want an error containing %q", len(recs), want)
	}
	if !errors.Is(err, ErrInvalidBatch) {
		t.Fatalf("error %q does not wrap ErrInvalidBatch", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func TestDecodeRecordsCorruptBatch(t *testing.T) {
	good, err := NewBatch(CompressionNone, 0, sampleRecords()...)
	if err != nil {
		t.Fatal(err)
	}
	badCRC := append([]byte(nil), good...)
	badCRC[len(badCRC)-1] ^= 1

	t.Run("bytes after the batch", func(t *testing.T) {
		checkInvalid(t, append(append([]byte(nil), good...), 0, 0), "2 bytes follow the")
	})
	t.Run("truncated batch", func(t *testing.T) {
		checkInvalid(t, good[:len(good)-1], "runs past the")
	})
	t.Run("bad CRC", func(t *testing.T) {
		checkInvalid(t, badCRC, "CRC-32C mismatch")
	})
	for _, c := range allCodecs[1:] {
		t.Run("bad "+c.String()+" payload", func(t *testing.T) {
			b := kmsgBatch(BatchHeader{Attributes: int16(c), RecordCount: 1, ProducerID: -1}, []byte("\x00garbage that is no codec's output"))
			checkInvalid(t, b, "decompressing records: "+c.String()+": ")
		})
	}
	t.Run("decompression bomb", func(t *testing.T) {
		cs := newCodecs(64 << 10)
		b, err := NewBatch(CompressionZstd, 0, Record{Value: make([]byte, 1<<20)})
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = cs.decodeRecords(b)
		if !errors.Is(err, ErrInvalidBatch) || !errors.Is(err, errDecompressedTooLarge) || !strings.Contains(err.Error(), "zstd") {
			t.Fatalf("error %v, want one wrapping ErrInvalidBatch and errDecompressedTooLarge and naming zstd", err)
		}
	})
}

// FuzzDecodeRecords checks that no input panics DecodeRecords, that every
// error wraps ErrInvalidBatch, and that whatever decodes re-encodes to a batch
// decoding to the same records.
func FuzzDecodeRecords(f *testing.F) {
	for _, c := range allCodecs {
		b, err := NewBatch(c, 1, sampleRecords()...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(kmsgBatch(BatchHeader{LastOffsetDelta: 1, RecordCount: 2}, cat(rawRecord(goodBody(0)), rawRecord(goodBody(1)))))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, recs, err := DecodeRecords(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidBatch) {
				t.Fatalf("error %q does not wrap ErrInvalidBatch", err)
			}
			return
		}
		again, err := EncodeBatch(h, recs)
		if err != nil {
			t.Fatalf("re-encoding decoded records: %v", err)
		}
		h2, recs2, err := DecodeRecords(again)
		if err != nil {
			t.Fatalf("decoding re-encoded batch: %v", err)
		}
		h2.Length, h2.CRC = h.Length, h.CRC // compressed sizes may differ
		if h2 != h {
			t.Fatalf("header changed on re-encoding:\n got %+v\nwant %+v", h2, h)
		}
		checkRecords(t, recs2, recs)
	})
}

// benchRecords returns records whose encoded form is about 16 KiB, keys and
// values looking like typical JSON events.
func benchRecords() []Record {
	var recs []Record
	for size, i := 0, 0; size < 16<<10; i++ {
		r := Record{
			TimestampDelta: int64(i),
			OffsetDelta:    int32(i),
			Key:            fmt.Appendf(nil, "user-%06d", i*7919%100000),
			Value:          fmt.Appendf(nil, `{"event":"click","item":%d,"page":"/catalog/%d","session":"%08x"}`, i%37, i%11, i*2654435761),
		}
		size += recordBodySize(r) + 2
		recs = append(recs, r)
	}
	return recs
}

func BenchmarkDecodeRecords(b *testing.B) {
	recs := benchRecords()
	raw := appendRecords(nil, recs)
	for _, c := range []Compression{CompressionNone, CompressionZstd} {
		b.Run(c.String(), func(b *testing.B) {
			batch, err := NewBatch(c, 0, recs...)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := DecodeRecords(batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeBatch(b *testing.B) {
	recs := benchRecords()
	raw := appendRecords(nil, recs)
	for _, c := range []Compression{CompressionNone, CompressionZstd} {
		b.Run(c.String(), func(b *testing.B) {
			h := BatchHeader{Attributes: int16(c), ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := EncodeBatch(h, recs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
