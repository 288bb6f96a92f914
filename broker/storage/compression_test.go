package storage

import (
	"bytes"
	stdgzip "compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/snappy/xerial"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

var allCodecs = []Compression{CompressionNone, CompressionGzip, CompressionSnappy, CompressionLZ4, CompressionZstd}

// testPayloads covers the sizes that matter to the codecs: empty, tiny,
// exactly one xerial block, one byte more, and many blocks of compressible
// and incompressible data.
func testPayloads() map[string][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 100<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	var text bytes.Buffer
	for i := 0; text.Len() < 200<<10; i++ {
		fmt.Fprintf(&text, "user-%d clicked item %d at %d\n", i%97, i%13, 1700000000000+i)
	}
	return map[string][]byte{
		"empty":        {},
		"tiny":         []byte("hello"),
		"block":        bytes.Repeat([]byte("ab"), xerialBlockSize/2),
		"block+1":      append(bytes.Repeat([]byte("ab"), xerialBlockSize/2), 'c'),
		"text":         text.Bytes(),
		"random":       random,
		"zeros-1MiB+1": make([]byte, 1<<20+1),
	}
}

func TestCompressRoundTrip(t *testing.T) {
	cs := newCodecs(0)
	for name, p := range testPayloads() {
		for _, c := range allCodecs {
			t.Run(fmt.Sprintf("%s/%s", c, name), func(t *testing.T) {
				z, err := compress(c, p)
				if err != nil {
					t.Fatalf("compress: %v", err)
				}
				got, err := decompress(c, z)
				if err != nil {
					t.Fatalf("decompress: %v", err)
				}
				if !bytes.Equal(got, p) {
					t.Fatalf("round trip changed %d bytes into %d bytes", len(p), len(got))
				}

				// Appending must keep what dst already holds.
				prefix := []byte("header")
				z2, err := cs.appendCompressed(append([]byte(nil), prefix...), c, p)
				if err != nil {
					t.Fatalf("appendCompressed: %v", err)
				}
				if !bytes.HasPrefix(z2, prefix) {
					t.Fatalf("appendCompressed overwrote the prefix: %q", z2[:len(prefix)])
				}
				if got, err := cs.decompress(c, z2[len(prefix):]); err != nil || !bytes.Equal(got, p) {
					t.Fatalf("appended payload does not round trip (err %v)", err)
				}
			})
		}
	}
}

// referenceDecompress decodes a payload with the codec libraries directly (or
// the standard library for gzip), not through our code, so that tests check
// our output against what other clients' decoders accept.
func referenceDecompress(t testing.TB, c Compression, z []byte) []byte {
	t.Helper()
	var (
		out []byte
		err error
	)
	switch c {
	case CompressionNone:
		return z
	case CompressionGzip:
		var r *stdgzip.Reader
		if r, err = stdgzip.NewReader(bytes.NewReader(z)); err == nil {
			out, err = io.ReadAll(r)
		}
	case CompressionSnappy:
		out, err = xerial.Decode(z)
	case CompressionLZ4:
		out, err = io.ReadAll(lz4.NewReader(bytes.NewReader(z)))
	case CompressionZstd:
		var d *zstd.Decoder
		if d, err = zstd.NewReader(nil); err == nil {
			out, err = d.DecodeAll(z, nil)
			d.Close()
		}
	default:
		t.Fatalf("no reference decoder for %s", c)
	}
	if err != nil {
		t.Fatalf("reference %s decoder: %v", c, err)
	}
	return out
}

func TestCompressOutputReadByReferenceDecoders(t *testing.T) {
	for name, p := range testPayloads() {
		for _, c := range allCodecs {
			t.Run(fmt.Sprintf("%s/%s", c, name), func(t *testing.T) {
				z, err := compress(c, p)
				if err != nil {
					t.Fatal(err)
				}
				if got := referenceDecompress(t, c, z); !bytes.Equal(got, p) {
					t.Fatalf("reference decoder got %d bytes, want %d", len(got), len(p))
				}
			})
		}
	}
}

// TestCompressLZ4FrameDescriptor checks the frame options the Java client
// requires or writes itself: independent blocks (required), 64 KiB blocks,
// no content checksum, no content size.
func TestCompressLZ4FrameDescriptor(t *testing.T) {
	z, err := compress(CompressionLZ4, []byte("some records"))
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint32(z); got != 0x184D2204 {
		t.Fatalf("magic %#x, want the LZ4 frame magic 0x184D2204", got)
	}
	flg, bd := z[4], z[5]
	if flg != 0x60 { // version 01, block independence, nothing else
		t.Errorf("FLG byte %#02x, want 0x60 (version 1, independent blocks, no checksums or size)", flg)
	}
	if bd != 0x40 { // block max size index 4: 64 KiB
		t.Errorf("BD byte %#02x, want 0x40 (64 KiB blocks)", bd)
	}
}

// TestCompressSnappyXerialFraming checks that snappy output is framed the way
// the Java producer frames it: header, then length-prefixed raw blocks of at
// most 32 KiB of input each.
func TestCompressSnappyXerialFraming(t *testing.T) {
	p := testPayloads()["text"]
	z, err := compress(CompressionSnappy, p)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01")
	if !bytes.HasPrefix(z, want) {
		t.Fatalf("header %q, want %q", z[:min(len(z), 16)], want)
	}
	var blocks, total int
	for rest := z[16:]; len(rest) > 0; blocks++ {
		n := int(binary.BigEndian.Uint32(rest))
		block := rest[4 : 4+n]
		dl, err := snappy.DecodedLen(block)
		if err != nil {
			t.Fatalf("block %d: %v", blocks, err)
		}
		if dl > xerialBlockSize {
			t.Fatalf("block %d holds %d bytes, more than the 32 KiB the Java client uses", blocks, dl)
		}
		total += dl
		rest = rest[4+n:]
	}
	if wantBlocks := (len(p) + xerialBlockSize - 1) / xerialBlockSize; blocks != wantBlocks || total != len(p) {
		t.Fatalf("%d blocks holding %d bytes, want %d blocks holding %d", blocks, total, wantBlocks, len(p))
	}
}

// TestCodecSnappyAcceptsBothForms decodes the forms other clients write: a
// bare block (librdkafka, franz-go for small batches), xerial framing from an
// independent encoder, concatenated xerial streams (which snappy-java
// reads), and a header with no blocks.
func TestCodecSnappyAcceptsBothForms(t *testing.T) {
	p := testPayloads()["text"]
	q := []byte("second stream")
	cases := map[string]struct {
		z, want []byte
	}{
		"raw block":           {snappy.Encode(nil, p), p},
		"raw empty block":     {snappy.Encode(nil, nil), []byte{}},
		"xerial":              {xerial.Encode(nil, p), p},
		"xerial concatenated": {append(xerial.Encode(nil, p), xerial.Encode(nil, q)...), append(append([]byte(nil), p...), q...)},
		"xerial header only":  {[]byte("\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01"), []byte{}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := decompress(CompressionSnappy, tc.z)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("got %d bytes, want %d", len(got), len(tc.want))
			}
		})
	}
}

func TestCodecCorruptInput(t *testing.T) {
	text := testPayloads()["text"]
	mustCompress := func(c Compression, p []byte) []byte {
		z, err := compress(c, p)
		if err != nil {
			t.Fatal(err)
		}
		return z
	}
	gz := mustCompress(CompressionGzip, text)
	lz := mustCompress(CompressionLZ4, text)
	zs := mustCompress(CompressionZstd, text)
	xr := mustCompress(CompressionSnappy, text)
	header := xr[:xerialHeaderSize]

	corruptBlock := append([]byte(nil), xr...)
	for i := xerialHeaderSize + 4 + 1; i < xerialHeaderSize+64; i++ {
		corruptBlock[i] = 0xff // literal/copy tags pointing nowhere
	}
	gzBadCRC := append([]byte(nil), gz...)
	gzBadCRC[len(gzBadCRC)-8] ^= 0xff

	cases := []struct {
		name string
		c    Compression
		z    []byte
		want string
	}{
		{"gzip garbage", CompressionGzip, []byte("not gzip at all"), "gzip: "},
		{"gzip empty", CompressionGzip, nil, "gzip: "},
		{"gzip truncated", CompressionGzip, gz[:len(gz)/2], "gzip: "},
		{"gzip bad checksum", CompressionGzip, gzBadCRC, "gzip: "},
		{"gzip trailing garbage", CompressionGzip, append(append([]byte(nil), gz...), "junk"...), "gzip: "},
		{"snappy raw garbage", CompressionSnappy, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "snappy: raw block"},
		{"snappy raw truncated", CompressionSnappy, snappy.Encode(nil, text)[:100], "snappy: raw block"},
		{"xerial header truncated", CompressionSnappy, header[:10], "snappy: xerial header truncated"},
		{"xerial length truncated", CompressionSnappy, append(append([]byte(nil), header...), 0, 0), "snappy: xerial block 0: length truncated"},
		{"xerial block past end", CompressionSnappy, xr[:len(xr)-1], "runs past the"},
		{"xerial block corrupt", CompressionSnappy, corruptBlock, "snappy: xerial block 0"},
		{"lz4 garbage", CompressionLZ4, []byte("not an lz4 frame"), "lz4: "},
		{"lz4 truncated", CompressionLZ4, lz[:len(lz)/2], "lz4: "},
		{"zstd garbage", CompressionZstd, []byte("not a zstd frame"), "zstd: "},
		{"zstd truncated", CompressionZstd, zs[:len(zs)/2], "zstd: "},
		{"unknown codec", Compression(5), []byte("x"), "unknown compression codec 5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decompress(tc.c, tc.z)
			if err == nil {
				t.Fatalf("decompressed %d bytes from corrupt input, want an error", len(got))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// zeroBomb returns n MiB of zeros compressed with c: one MiB compressed by
// the codec library directly, repeated as concatenated gzip members, LZ4
// frames, zstd frames or xerial streams (all of which decoders must read as
// one payload). No single piece exceeds a 1 MiB limit; only the total does.
// zstd is written as a stream, so its frames declare no content size and the
// decoder has to stop while decoding; the LZ4 frames use 4 MiB blocks, the
// largest a hostile producer can choose.
func zeroBomb(t testing.TB, c Compression, n int) []byte {
	t.Helper()
	mib := make([]byte, 1<<20)
	var buf bytes.Buffer
	var w io.WriteCloser
	switch c {
	case CompressionGzip:
		w = stdgzip.NewWriter(&buf)
	case CompressionLZ4:
		lw := lz4.NewWriter(&buf)
		if err := lw.Apply(lz4.BlockSizeOption(lz4.Block4Mb)); err != nil {
			t.Fatal(err)
		}
		w = lw
	case CompressionZstd:
		// A window below the test's limit: larger ones take the path
		// bounded by zstdMaxWindow instead (see unzstd).
		zw, err := zstd.NewWriter(&buf, zstd.WithWindowSize(256<<10))
		if err != nil {
			t.Fatal(err)
		}
		w = zw
	case CompressionSnappy:
		buf.Write(xerial.Encode(nil, mib))
	default:
		t.Fatalf("no bomb for %s", c)
	}
	if w != nil {
		if _, err := w.Write(mib); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return bytes.Repeat(buf.Bytes(), n)
}

func TestCodecDecompressionBound(t *testing.T) {
	const limit = 1 << 20
	cs := newCodecs(limit)
	exact := make([]byte, limit)
	for _, c := range allCodecs[1:] {
		t.Run(c.String(), func(t *testing.T) {
			// Exactly the limit is allowed.
			z, err := compress(c, exact)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := cs.decompress(c, z); err != nil || len(got) != limit {
				t.Fatalf("decompressing exactly the limit: %d bytes, %v", len(got), err)
			}

			// One byte more is not.
			z, err = compress(c, make([]byte, limit+1))
			if err != nil {
				t.Fatal(err)
			}
			checkTooLarge(t, c, cs, z)

			// A real bomb: 256 MiB of zeros must be refused without
			// allocating anything like 256 MiB. The bound is on all
			// allocations, not just the peak: LZ4 needs block buffers
			// (up to 2x4 MiB) besides the output, and zstd's decoder
			// grows its output by append, allocating several times the
			// limit on the way. Neither grows with the bomb.
			bomb := zeroBomb(t, c, 256)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			checkTooLarge(t, c, cs, bomb)
			runtime.ReadMemStats(&after)
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
				t.Errorf("refusing a %d-byte %s bomb allocated %d bytes", len(bomb), c, alloc)
			}
		})
	}

	t.Run("zstd declared size", func(t *testing.T) {
		// A frame declaring 1 GiB is refused before decoding anything.
		enc, err := zstd.NewWriter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		z := enc.EncodeAll(make([]byte, 4<<20), nil)
		var fh zstd.Header
		if err := fh.Decode(z); err != nil || !fh.HasFCS {
			t.Fatalf("test frame has no content size (err %v)", err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		checkTooLarge(t, CompressionZstd, cs, z)
		runtime.ReadMemStats(&after)
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
			t.Errorf("refusing a frame declaring %d bytes allocated %d bytes", fh.FrameContentSize, alloc)
		}
	})
	t.Run("zstd large window, small output", func(t *testing.T) {
		// The reference library's stream encoder (what the Java producer
		// uses) writes no content size and a window set by the level, a
		// few MiB, however small the batch. Such a frame, built here by
		// hand with an 8 MiB window and one raw block of 100 bytes, must
		// decode under a 1 MiB limit.
		var buf bytes.Buffer
		buf.Write([]byte{0x28, 0xb5, 0x2f, 0xfd}) // magic
		buf.WriteByte(0x00)                       // no content size, not single segment, no checksum, no dictionary
		buf.WriteByte((23 - 10) << 3)             // window descriptor: 2^23 bytes
		bh := uint32(100<<3 | 1)                  // block header: 100 bytes, raw, last
		buf.Write([]byte{byte(bh), byte(bh >> 8), byte(bh >> 16)})
		buf.Write(bytes.Repeat([]byte{'z'}, 100))
		var fh zstd.Header
		if err := fh.Decode(buf.Bytes()); err != nil || fh.WindowSize <= limit || fh.HasFCS {
			t.Fatalf("test frame window %d (content size declared: %v), want one above the %d limit and no size (err %v)", fh.WindowSize, fh.HasFCS, limit, err)
		}
		if got, err := cs.decompress(CompressionZstd, buf.Bytes()); err != nil || len(got) != 100 {
			t.Fatalf("got %d bytes, %v; want 100", len(got), err)
		}
	})
	t.Run("snappy raw block declaring 2 GiB", func(t *testing.T) {
		z := binary.AppendUvarint(nil, 1<<31)
		z = append(z, 0, 0, 0, 0)
		checkTooLarge(t, CompressionSnappy, cs, z)
	})
	t.Run("snappy block declaring more than it can hold", func(t *testing.T) {
		// Under the default limit, yet five bytes cannot decode to
		// 512 MiB: refused before the output is allocated.
		z := append(binary.AppendUvarint(nil, 512<<20), 0, 0, 0, 0, 0)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := newCodecs(0).decompress(CompressionSnappy, z)
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), "cannot decode to the 536870912 it declares") {
			t.Fatalf("error %v, want one saying the block cannot hold what it declares", err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
			t.Errorf("refusing the block allocated %d bytes", alloc)
		}
	})
	t.Run("default limit", func(t *testing.T) {
		if got := newCodecs(0).maxDecompressed; got != 1<<30 {
			t.Fatalf("default limit %d, want 1 GiB", got)
		}
	})
}

func checkTooLarge(t *testing.T, c Compression, cs *codecs, z []byte) {
	t.Helper()
	got, err := cs.decompress(c, z)
	if !errors.Is(err, errDecompressedTooLarge) {
		t.Fatalf("decompressed %d bytes past the limit, err %v; want errDecompressedTooLarge", len(got), err)
	}
	if !strings.HasPrefix(err.Error(), c.String()+": ") {
		t.Fatalf("error %q does not name the codec %s", err, c)
	}
}

// TestCodecsConcurrentUse shares one codecs value between goroutines; run
// with -race it checks that pooled and shared coders are safe.
func TestCodecsConcurrentUse(t *testing.T) {
	cs := newCodecs(0)
	payloads := testPayloads()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				c := allCodecs[(g+i)%len(allCodecs)]
				p := payloads["text"][g*100 : g*100+(i+1)*1000]
				z, err := cs.appendCompressed(nil, c, p)
				if err != nil {
					t.Errorf("%s: compress: %v", c, err)
					return
				}
				got, err := cs.decompress(c, z)
				if err != nil || !bytes.Equal(got, p) {
					t.Errorf("%s: round trip failed (err %v)", c, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
