package storage

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Compressed records section of a v2 batch, per codec, as Kafka clients
// write it (everything after the 61-byte header is one compressed blob of
// the record array):
//
//	gzip    an RFC 1952 gzip stream (members may be concatenated).
//	snappy  either one raw snappy block, or xerial framing: the 8-byte magic
//	        "\x82SNAPPY\x00", two big-endian int32s (version 1, minimum
//	        compatible version 1), then big-endian int32 length-prefixed raw
//	        snappy blocks, each of at most 32 KiB of input. The Java producer
//	        writes the framed form (snappy-java's SnappyOutputStream),
//	        librdkafka a bare block, franz-go either.
//	lz4     an LZ4 frame (magic 0x184D2204) with independent blocks; the Java
//	        client rejects dependent blocks and uses 64 KiB blocks with no
//	        content checksum.
//	zstd    one or more zstd frames.

// defaultMaxDecompressed bounds the decompressed records of one batch when
// the caller sets no limit. Kafka's own limits (message.max.bytes, 1 MiB by
// default) apply to the compressed batch, so a hostile client could send a
// small batch that inflates without bound; 1 GiB is far beyond any real batch
// yet still fits in memory.
const defaultMaxDecompressed = 1 << 30

// zstdMaxWindow is the largest zstd window we accept (see newCodecs).
const zstdMaxWindow = 1 << 27

// xerial framing constants (see the format comment above).
const (
	xerialHeaderSize = 16
	// xerialBlockSize is the input chunk the Java producer compresses per
	// block; matching it keeps our output indistinguishable from Java's.
	xerialBlockSize = 32 << 10
)

var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// errDecompressedTooLarge is wrapped when a batch would decompress to more
// than the codecs' limit.
var errDecompressedTooLarge = errors.New("decompressed size exceeds the limit")

// codecs compresses and decompresses record batch payloads. It holds reusable
// encoders and decoders so that a busy broker does not rebuild their
// (sometimes megabyte-sized) state for every batch. All methods are safe for
// concurrent use: gzip and lz4 state is pooled per call, and the zstd encoder
// and decoder are built once and then used only through their
// concurrency-safe EncodeAll and DecodeAll. A codecs must not be copied.
type codecs struct {
	// maxDecompressed bounds the output of decompress, in bytes.
	maxDecompressed int

	gzipEncoders sync.Pool // *gzipEncoder
	gzipDecoders sync.Pool // *gzipDecoder
	lz4Encoders  sync.Pool // *lz4Encoder
	lz4Decoders  sync.Pool // *lz4Decoder

	// The zstd coders are built on first use: most brokers never see zstd,
	// and an encoder reserves memory per concurrent user.
	zstdEncoder func() (*zstd.Encoder, error)
	zstdDecoder func() (*zstd.Decoder, error)
	// zstdWideDecoder serves frames whose window exceeds a limit below
	// zstdMaxWindow (see unzstd).
	zstdWideDecoder func() (*zstd.Decoder, error)
}

// newCodecs returns codecs that refuse to decompress a payload to more than
// maxDecompressed bytes; zero or less means the 1 GiB default.
func newCodecs(maxDecompressed int) *codecs {
	if maxDecompressed <= 0 {
		maxDecompressed = defaultMaxDecompressed
	}
	cs := &codecs{maxDecompressed: maxDecompressed}
	cs.gzipEncoders.New = func() any {
		e := &gzipEncoder{}
		e.w = gzip.NewWriter(&e.out)
		return e
	}
	cs.gzipDecoders.New = func() any { return &gzipDecoder{} }
	cs.lz4Encoders.New = func() any {
		e := &lz4Encoder{}
		e.w = lz4.NewWriter(&e.out)
		return e
	}
	cs.lz4Decoders.New = func() any {
		d := &lz4Decoder{}
		d.r = lz4.NewReader(&d.src)
		return d
	}
	cs.zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
		// Zero frames: an empty payload still gets a valid frame, which
		// every zstd decoder reads, rather than zero bytes, which some
		// stream decoders treat as truncated input.
		return zstd.NewWriter(nil, zstd.WithZeroFrames(true))
	})
	// The reference library (zstd-jni in the Java client, and librdkafka)
	// refuses windows above 2^27 by default, so a frame needing more is one
	// no Kafka consumer could read.
	cs.zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
		return zstd.NewReader(nil,
			zstd.WithDecoderMaxWindow(zstdMaxWindow),
			zstd.WithDecoderMaxMemory(uint64(maxDecompressed)),
		)
	})
	cs.zstdWideDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
		return zstd.NewReader(nil,
			zstd.WithDecoderMaxWindow(zstdMaxWindow),
			zstd.WithDecoderMaxMemory(zstdMaxWindow),
		)
	})
	return cs
}

// defaultCodecs is shared by the package-level helpers. It is built once and
// then only used through its concurrency-safe methods.
var defaultCodecs = sync.OnceValue(func() *codecs { return newCodecs(0) })

// decompress returns the record array held in src, a batch's compressed
// records section, using the shared codecs and the default size limit. For
// CompressionNone it returns src itself.
func decompress(c Compression, src []byte) ([]byte, error) {
	return defaultCodecs().decompress(c, src)
}

// compress returns raw, a record array, compressed with c the way Kafka
// clients put it in a v2 batch, using the shared codecs. For CompressionNone
// it returns raw itself.
func compress(c Compression, raw []byte) ([]byte, error) {
	return defaultCodecs().appendCompressed(nil, c, raw)
}

// decompress returns the record array held in src. Errors name the codec; if
// the output would exceed cs.maxDecompressed the error wraps
// errDecompressedTooLarge. For CompressionNone src is returned as is.
func (cs *codecs) decompress(c Compression, src []byte) ([]byte, error) {
	var (
		out []byte
		err error
	)
	switch c {
	case CompressionNone:
		return src, nil
	case CompressionGzip:
		out, err = cs.gunzip(src)
	case CompressionSnappy:
		out, err = cs.unsnappy(src)
	case CompressionLZ4:
		out, err = cs.unlz4(src)
	case CompressionZstd:
		out, err = cs.unzstd(src)
	default:
		return nil, fmt.Errorf("unknown compression codec %d", int8(c))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	return out, nil
}

// appendCompressed appends raw, compressed with c, to dst. Appending lets
// EncodeBatch compress straight behind the batch header it has reserved.
func (cs *codecs) appendCompressed(dst []byte, c Compression, raw []byte) ([]byte, error) {
	var err error
	switch c {
	case CompressionNone:
		if dst == nil {
			return raw, nil
		}
		return append(dst, raw...), nil
	case CompressionGzip:
		dst, err = cs.gzip(dst, raw)
	case CompressionSnappy:
		dst = appendXerial(dst, raw)
	case CompressionLZ4:
		dst, err = cs.lz4(dst, raw)
	case CompressionZstd:
		dst, err = cs.zstd(dst, raw)
	default:
		return nil, fmt.Errorf("unknown compression codec %d", int8(c))
	}
	if err != nil {
		return nil, fmt.Errorf("compressing with %s: %w", c, err)
	}
	return dst, nil
}

// appendWriter is an io.Writer appending to a slice, so that stream
// compressors can write into a caller's buffer without a bytes.Buffer copy.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

type gzipEncoder struct {
	out appendWriter
	w   *gzip.Writer
}

type gzipDecoder struct {
	src bytes.Reader
	r   gzip.Reader
}

type lz4Encoder struct {
	out appendWriter
	w   *lz4.Writer
}

type lz4Decoder struct {
	src bytes.Reader
	r   *lz4.Reader
}

func (cs *codecs) gzip(dst, raw []byte) ([]byte, error) {
	e := cs.gzipEncoders.Get().(*gzipEncoder)
	defer func() {
		e.out.b = nil // don't keep the caller's buffer alive in the pool
		cs.gzipEncoders.Put(e)
	}()
	e.out.b = dst
	e.w.Reset(&e.out)
	if _, err := e.w.Write(raw); err != nil {
		return nil, err
	}
	if err := e.w.Close(); err != nil {
		return nil, err
	}
	return e.out.b, nil
}

func (cs *codecs) gunzip(src []byte) ([]byte, error) {
	d := cs.gzipDecoders.Get().(*gzipDecoder)
	defer func() {
		d.src.Reset(nil)
		cs.gzipDecoders.Put(d)
	}()
	d.src.Reset(src)
	if err := d.r.Reset(&d.src); err != nil {
		return nil, err
	}
	// The trailer's ISIZE is the size mod 2^32 of the last member's input:
	// only a hint for the first allocation. It is trusted up to a 64:1 ratio,
	// so a tiny batch with a forged trailer cannot reserve the whole limit
	// up front; a real bomb still has to inflate its way there.
	hint := 0
	if len(src) >= 4 {
		hint = min(int(binary.LittleEndian.Uint32(src[len(src)-4:])), 64*len(src))
	}
	return readAllLimited(&d.r, hint, cs.maxDecompressed)
}

func (cs *codecs) lz4(dst, raw []byte) ([]byte, error) {
	e := cs.lz4Encoders.Get().(*lz4Encoder)
	defer func() {
		e.out.b = nil
		cs.lz4Encoders.Put(e)
	}()
	e.out.b = dst
	e.w.Reset(&e.out)
	// Options are applied after Reset, as the writer requires, and mirror
	// the Java producer: 64 KiB blocks, no content checksum (the batch
	// CRC-32C already covers the payload).
	if err := e.w.Apply(lz4.BlockSizeOption(lz4.Block64Kb), lz4.ChecksumOption(false)); err != nil {
		return nil, err
	}
	if _, err := e.w.Write(raw); err != nil {
		return nil, err
	}
	if err := e.w.Close(); err != nil {
		return nil, err
	}
	return e.out.b, nil
}

func (cs *codecs) unlz4(src []byte) ([]byte, error) {
	d := cs.lz4Decoders.Get().(*lz4Decoder)
	defer func() {
		d.src.Reset(nil)
		d.r.Reset(&d.src)
		cs.lz4Decoders.Put(d)
	}()
	d.src.Reset(src)
	d.r.Reset(&d.src)
	// LZ4 rarely exceeds a 4:1 ratio on record data; growth handles the rest.
	return readAllLimited(d.r, 4*len(src), cs.maxDecompressed)
}

func (cs *codecs) zstd(dst, raw []byte) ([]byte, error) {
	enc, err := cs.zstdEncoder()
	if err != nil {
		return nil, err
	}
	return enc.EncodeAll(raw, dst), nil
}

// unzstd decodes zstd frames, bounding the output by cs.maxDecompressed.
func (cs *codecs) unzstd(src []byte) ([]byte, error) {
	dec, err := cs.zstdDecoder()
	if err != nil {
		return nil, err
	}
	// DecodeAll checks a declared content size against the limit before
	// allocating, and the output so far after every block.
	out, err := dec.DecodeAll(src, nil)
	if errors.Is(err, zstd.ErrWindowSizeExceeded) && cs.maxDecompressed < zstdMaxWindow {
		// The decoder also refuses windows above its memory limit, though
		// DecodeAll decodes into its output and keeps no window buffer.
		// The reference library's stream encoder, which the Java producer
		// uses, declares no content size and a window of a few MiB even
		// for tiny batches, so a small limit would refuse them. Such
		// frames are decoded with the limit raised to zstdMaxWindow, and
		// the small limit is checked on the result: for them, and only
		// for them, the bound is zstdMaxWindow rather than the limit.
		wide, werr := cs.zstdWideDecoder()
		if werr != nil {
			return nil, werr
		}
		out, err = wide.DecodeAll(src, nil)
	}
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) || len(out) > cs.maxDecompressed {
		return nil, fmt.Errorf("%w (%d bytes)", errDecompressedTooLarge, cs.maxDecompressed)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readAllLimited reads r to EOF, failing once it has produced more than limit
// bytes. hint sizes the first allocation; it is clamped to the limit, so a
// lying header cannot make us allocate more than the limit allows.
func readAllLimited(r io.Reader, hint, limit int) ([]byte, error) {
	const minAlloc = 512
	// One byte beyond the expected size lets the final Read report EOF
	// without growing a buffer that is exactly full.
	buf := make([]byte, 0, min(max(hint, minAlloc), limit)+1)
	for {
		if len(buf) == cap(buf) {
			// Never hold more than limit+1 bytes: one byte past the limit
			// is enough to know it was exceeded.
			if len(buf) > limit {
				return nil, fmt.Errorf("%w (%d bytes)", errDecompressedTooLarge, limit)
			}
			buf = slices.Grow(buf, min(len(buf), limit+1-len(buf)))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return nil, fmt.Errorf("%w (%d bytes)", errDecompressedTooLarge, limit)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// appendXerial appends raw to dst in xerial framing. We write the framed form
// rather than a bare snappy block because it is what the Java producer
// writes, so every consumer reads it: the Java client through snappy-java's
// SnappyInputStream (older versions of which could not read bare blocks),
// librdkafka, franz-go, sarama and the rest, which all detect the magic.
func appendXerial(dst, raw []byte) []byte {
	blocks := (len(raw) + xerialBlockSize - 1) / xerialBlockSize
	need := xerialHeaderSize + blocks*(4+snappy.MaxEncodedLen(min(len(raw), xerialBlockSize)))
	dst = slices.Grow(dst, need)
	dst = append(dst, xerialMagic...)
	dst = binary.BigEndian.AppendUint32(dst, 1) // version
	dst = binary.BigEndian.AppendUint32(dst, 1) // minimum compatible version
	for len(raw) > 0 {
		chunk := raw[:min(len(raw), xerialBlockSize)]
		raw = raw[len(chunk):]
		at := len(dst)
		room := dst[at+4 : cap(dst)] // Grow reserved MaxEncodedLen for it
		block := snappy.Encode(room, chunk)
		if len(block) > 0 && &block[0] != &room[0] {
			copy(room, block) // not expected: Encode had the room it needs
		}
		binary.BigEndian.PutUint32(dst[at:at+4], uint32(len(block)))
		dst = dst[:at+4+len(block)]
	}
	return dst
}

// unsnappy decodes a snappy payload in either form Kafka clients write:
// xerial framed (recognised by its magic, as every Kafka client does) or a
// single raw block. Blocks are decoded with the strict snappy decoder, so we
// accept exactly what the reference decoders in other clients accept.
func (cs *codecs) unsnappy(src []byte) ([]byte, error) {
	if !bytes.HasPrefix(src, xerialMagic) {
		n, err := snappyDecodedLen(src, cs.maxDecompressed)
		if err != nil {
			return nil, fmt.Errorf("raw block: %w", err)
		}
		out, err := snappy.DecodeStrict(make([]byte, n), src)
		if err != nil {
			return nil, fmt.Errorf("raw block: %w", err)
		}
		return out, nil
	}

	// First pass: check the framing and add up the declared block sizes, so
	// that the limit is enforced before anything is allocated and the output
	// is allocated once.
	total := 0
	err := walkXerial(src, func(i int, block []byte) error {
		n, err := snappyDecodedLen(block, cs.maxDecompressed-total)
		if err != nil {
			return fmt.Errorf("xerial block %d: %w", i, err)
		}
		total += n
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]byte, total)
	at := 0
	err = walkXerial(src, func(i int, block []byte) error {
		n, _ := snappy.DecodedLen(block) // checked in the first pass
		dst := out[at : at+n : at+n]
		got, err := snappy.DecodeStrict(dst, block)
		if err != nil {
			return fmt.Errorf("xerial block %d: %w", i, err)
		}
		if len(got) > 0 && &got[0] != &dst[0] {
			copy(dst, got) // not expected: dst has exactly the declared size
		}
		at += n
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// snappyMaxRatio bounds how much a snappy block can expand: no element
// produces more than 64 bytes from 3 (a copy with a 2-byte offset).
const snappyMaxRatio = 22

// snappyDecodedLen returns the decoded length a snappy block declares, after
// checking it against limit and that the block could possibly decode to it:
// the output is allocated before decoding, and a five-byte block must not
// make us reserve a gigabyte.
func snappyDecodedLen(block []byte, limit int) (int, error) {
	n, err := snappy.DecodedLen(block)
	switch {
	case err != nil:
		return 0, err
	case n > limit:
		return 0, fmt.Errorf("%w: block declares %d bytes", errDecompressedTooLarge, n)
	case n/snappyMaxRatio > len(block):
		return 0, fmt.Errorf("block of %d bytes cannot decode to the %d it declares", len(block), n)
	}
	return n, nil
}

// walkXerial calls fn for each raw snappy block of a xerial-framed payload.
// A header may recur between blocks: snappy-java reads concatenated streams,
// so we do too. A block length cannot be mistaken for the magic, which would
// be a length above 2 GiB.
func walkXerial(src []byte, fn func(i int, block []byte) error) error {
	for i := 0; len(src) > 0; {
		if bytes.HasPrefix(src, xerialMagic) {
			if len(src) < xerialHeaderSize {
				return fmt.Errorf("xerial header truncated to %d bytes", len(src))
			}
			src = src[xerialHeaderSize:]
			continue
		}
		if len(src) < 4 {
			return fmt.Errorf("xerial block %d: length truncated to %d bytes", i, len(src))
		}
		n := binary.BigEndian.Uint32(src)
		src = src[4:]
		if uint64(n) > uint64(len(src)) {
			return fmt.Errorf("xerial block %d: length %d runs past the %d bytes left", i, n, len(src))
		}
		if err := fn(i, src[:n]); err != nil {
			return err
		}
		src = src[n:]
		i++
	}
	return nil
}

// Streaming validation. DecodeRecords inflates a batch's records into one
// buffer and keeps every record, which is right for reading stored batches
// but lets a produce request make the broker allocate up to the
// decompression limit per batch before anything is checked. CheckRecords
// instead parses records as they leave the decompressor, skipping keys,
// values and headers rather than keeping them, so that its memory is the
// decompressor's own state (DecompressionMemory) and a bomb is refused as
// soon as what it inflates to stops being records or exceeds the limit.

// checkBufferSize is the read buffer between decompressor and parser.
const checkBufferSize = 16 << 10

// zstdBlockSpace is what a zstd stream decoder needs besides its window: room
// for blocks around the window ring (two of 128 KiB) and its tables.
const zstdBlockSpace = 1 << 20

// CheckRecords validates the one v2 record batch that batch holds as
// DecodeRecords does (header, CRC, no trailing bytes, exactly RecordCount
// records, each well formed, offset deltas strictly increasing within
// [0, lastOffsetDelta]), without keeping the records: it streams them out
// of the decompressor and fails as soon as one is wrong or the records run
// past maxDecompressed bytes (zero or less: the 1 GiB default). It needs
// about DecompressionMemory(batch) bytes. Every error wraps
// ErrInvalidBatch.
func CheckRecords(batch []byte, maxDecompressed int) (BatchHeader, error) {
	if maxDecompressed <= 0 {
		maxDecompressed = defaultMaxDecompressed
	}
	h, err := ValidateBatch(batch)
	if err != nil {
		return h, err
	}
	if extra := len(batch) - h.Size(); extra != 0 {
		return h, fmt.Errorf("%w: %d bytes follow the %d-byte batch", ErrInvalidBatch, extra, h.Size())
	}
	data := batch[BatchHeaderSize:]
	c := h.Compression()
	if c == CompressionNone {
		if len(data) > maxDecompressed {
			return h, fmt.Errorf("%w: %w (%d bytes)", ErrInvalidBatch, errDecompressedTooLarge, maxDecompressed)
		}
		return h, checkRecordStream(&sliceSource{b: data}, h, int64(len(data)))
	}
	r, done, err := defaultCodecs().streamReader(c, data, maxDecompressed)
	if err != nil {
		return h, fmt.Errorf("%w: decompressing records: %s: %w", ErrInvalidBatch, c, err)
	}
	defer done()
	if err := checkRecordStream(bufio.NewReaderSize(r, checkBufferSize), h, int64(maxDecompressed)); err != nil {
		return h, fmt.Errorf("%s: %w", c, err)
	}
	return h, nil
}

// DecompressionMemory returns about how many bytes CheckRecords needs to
// check batch, read from the batch's codec and, for zstd and snappy, from
// what its compressed data declares; callers bound concurrent checks by it.
// It reads no more than headers and does not validate the batch.
func DecompressionMemory(batch []byte) int64 {
	h, err := ParseBatchHeader(batch)
	if err != nil || len(batch) < BatchHeaderSize {
		return checkBufferSize
	}
	data := batch[BatchHeaderSize:min(len(batch), max(h.Size(), BatchHeaderSize))]
	const small = checkBufferSize + 64<<10
	switch h.Compression() {
	case CompressionGzip:
		return small
	case CompressionLZ4:
		return small + 2*lz4BlockMax(data)
	case CompressionSnappy:
		return small + snappyBlockMax(data)
	case CompressionZstd:
		w, err := zstdWindow(data)
		if err != nil {
			return small
		}
		return small + zstdBlockSpace + int64(w)
	}
	return checkBufferSize
}

// lz4BlockMax reads the largest block size an LZ4 frame declares (its frame
// descriptor's BD byte); 4 MiB, the format's largest, if it cannot tell.
func lz4BlockMax(data []byte) int64 {
	const largest = 4 << 20
	if len(data) < 6 || binary.LittleEndian.Uint32(data) != 0x184D2204 {
		return largest
	}
	switch (data[5] >> 4) & 7 {
	case 4:
		return 64 << 10
	case 5:
		return 256 << 10
	case 6:
		return 1 << 20
	}
	return largest
}

// snappyBlockMax returns the largest decoded size a snappy payload's blocks
// declare (one raw block, or xerial framed ones).
func snappyBlockMax(data []byte) int64 {
	if !bytes.HasPrefix(data, xerialMagic) {
		n, _ := snappy.DecodedLen(data)
		return int64(max(n, 0))
	}
	var most int
	walkXerial(data, func(_ int, block []byte) error {
		n, _ := snappy.DecodedLen(block)
		most = max(most, n)
		return nil
	})
	return int64(most)
}

// zstdWindow returns the window the first zstd frame of data declares: the
// history its decoder keeps. A single-segment frame's window is its content
// size.
func zstdWindow(data []byte) (uint64, error) {
	var zh zstd.Header
	if err := zh.Decode(data); err != nil {
		return 0, err
	}
	w := zh.WindowSize
	if zh.SingleSegment {
		w = zh.FrameContentSize
	}
	return max(w, zstd.MinWindowSize), nil
}

// streamReader returns a reader of the record array that data, compressed
// with c, holds, producing at most limit bytes before it fails, and a
// function to call once done with it.
func (cs *codecs) streamReader(c Compression, data []byte, limit int) (io.Reader, func(), error) {
	switch c {
	case CompressionGzip:
		d := cs.gzipDecoders.Get().(*gzipDecoder)
		d.src.Reset(data)
		if err := d.r.Reset(&d.src); err != nil {
			cs.gzipDecoders.Put(d)
			return nil, nil, err
		}
		return &limitedReader{r: &d.r, left: int64(limit), limit: limit}, func() {
			d.src.Reset(nil)
			cs.gzipDecoders.Put(d)
		}, nil
	case CompressionLZ4:
		d := cs.lz4Decoders.Get().(*lz4Decoder)
		d.src.Reset(data)
		d.r.Reset(&d.src)
		return &limitedReader{r: d.r, left: int64(limit), limit: limit}, func() {
			d.src.Reset(nil)
			d.r.Reset(&d.src)
			cs.lz4Decoders.Put(d)
		}, nil
	case CompressionSnappy:
		if !bytes.HasPrefix(data, xerialMagic) {
			// A raw block decodes only as a whole, bounded by the limit and
			// by what its size can produce.
			n, err := snappyDecodedLen(data, limit)
			if err != nil {
				return nil, nil, fmt.Errorf("raw block: %w", err)
			}
			out, err := snappy.DecodeStrict(make([]byte, n), data)
			if err != nil {
				return nil, nil, fmt.Errorf("raw block: %w", err)
			}
			return bytes.NewReader(out), func() {}, nil
		}
		return &xerialReader{src: data, limit: limit}, func() {}, nil
	case CompressionZstd:
		w, err := zstdWindow(data)
		if err != nil {
			return nil, nil, err
		}
		if w > zstdMaxWindow {
			return nil, nil, fmt.Errorf("window of %d bytes exceeds the largest Kafka clients read, %d", w, zstdMaxWindow)
		}
		// A decoder of its own, whose window limit is the first frame's,
		// so that no later frame needs more memory than
		// DecompressionMemory reported. Concurrency 1 decodes on this
		// goroutine.
		dec, err := zstd.NewReader(bytes.NewReader(data),
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(max(w, zstd.MinWindowSize)),
			zstd.WithDecoderMaxMemory(uint64(limit)+1))
		if err != nil {
			return nil, nil, err
		}
		return &limitedReader{r: dec, left: int64(limit), limit: limit}, dec.Close, nil
	}
	return nil, nil, fmt.Errorf("unknown compression codec %d", int8(c))
}

// limitedReader fails once r has produced more than limit bytes.
type limitedReader struct {
	r     io.Reader
	left  int64
	limit int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, fmt.Errorf("%w (%d bytes)", errDecompressedTooLarge, l.limit)
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, fmt.Errorf("%w (%d bytes)", errDecompressedTooLarge, l.limit)
	}
	return n, err
}

// xerialReader decodes a xerial-framed snappy payload one block at a time.
type xerialReader struct {
	src   []byte
	buf   []byte // decoded, not yet read
	block int
	total int
	limit int
}

func (x *xerialReader) Read(p []byte) (int, error) {
	for len(x.buf) == 0 {
		if len(x.src) == 0 {
			return 0, io.EOF
		}
		if bytes.HasPrefix(x.src, xerialMagic) {
			if len(x.src) < xerialHeaderSize {
				return 0, fmt.Errorf("xerial header truncated to %d bytes", len(x.src))
			}
			x.src = x.src[xerialHeaderSize:]
			continue
		}
		if len(x.src) < 4 {
			return 0, fmt.Errorf("xerial block %d: length truncated to %d bytes", x.block, len(x.src))
		}
		n := binary.BigEndian.Uint32(x.src)
		x.src = x.src[4:]
		if uint64(n) > uint64(len(x.src)) {
			return 0, fmt.Errorf("xerial block %d: length %d runs past the %d bytes left", x.block, n, len(x.src))
		}
		block := x.src[:n]
		x.src = x.src[n:]
		size, err := snappyDecodedLen(block, x.limit-x.total)
		if err != nil {
			return 0, fmt.Errorf("xerial block %d: %w", x.block, err)
		}
		out, err := snappy.DecodeStrict(make([]byte, size), block)
		if err != nil {
			return 0, fmt.Errorf("xerial block %d: %w", x.block, err)
		}
		x.total += size
		x.block++
		x.buf = out
	}
	n := copy(p, x.buf)
	x.buf = x.buf[n:]
	return n, nil
}

// recordSource is what checkRecordStream reads: a bufio.Reader over a
// decompressor, or the records of an uncompressed batch in place.
type recordSource interface {
	io.ByteReader
	Discard(n int) (int, error)
}

// sliceSource is a recordSource over a byte slice, read without copying.
type sliceSource struct{ b []byte }

func (s *sliceSource) ReadByte() (byte, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c, nil
}

func (s *sliceSource) Discard(n int) (int, error) {
	if n > len(s.b) {
		k := len(s.b)
		s.b = nil
		return k, io.EOF
	}
	s.b = s.b[n:]
	return n, nil
}

// recordChecker parses records from src, counting the bytes it has read.
// Its checks are parseRecords' and recordReader.record's; the first failure
// is kept in err, and later reads do nothing.
type recordChecker struct {
	src   recordSource
	n     int64 // bytes read
	end   int64 // where the current record ends
	limit int64
	rec   int
	err   error
	// srcErr is the source's failure (the decompressor's), as opposed to
	// the end of its data.
	srcErr error
}

func (r *recordChecker) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: record %d: %s", ErrInvalidBatch, r.rec, fmt.Sprintf(format, args...))
	}
}

// readErr records a failure of the source: the records ended early, or the
// decompressor failed.
func (r *recordChecker) readErr(field string, err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		r.fail("%s: truncated", field)
		return
	}
	if r.err == nil {
		r.err = fmt.Errorf("%w: record %d: %s: %w", ErrInvalidBatch, r.rec, field, err)
	}
}

func (r *recordChecker) ReadByte() (byte, error) {
	c, err := r.src.ReadByte()
	switch {
	case err == nil:
		r.n++
	case !errors.Is(err, io.EOF):
		r.srcErr = err
	}
	return c, err
}

func (r *recordChecker) varlong(field string) int64 {
	if r.err != nil {
		return 0
	}
	v, err := binary.ReadVarint(r)
	switch {
	case r.srcErr != nil:
		r.readErr(field, r.srcErr)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		r.fail("%s: truncated varint", field)
	case err != nil:
		r.fail("%s: varint overflows 64 bits", field)
	case r.n > r.end:
		r.fail("%s: runs past the record's end", field)
	}
	return v
}

func (r *recordChecker) varint(field string) int32 {
	v := r.varlong(field)
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.fail("%s: %d overflows a 32-bit varint", field, v)
		return 0
	}
	return int32(v)
}

// skipBytes reads a length-prefixed field and skips its bytes. It returns
// false for a null (-1 length) field.
func (r *recordChecker) skipBytes(field string) (present bool) {
	n := r.varint(field + " length")
	switch {
	case r.err != nil:
		return false
	case n == -1:
		return false
	case n < 0:
		r.fail("%s: negative length %d", field, n)
		return false
	case int64(n) > r.end-r.n:
		r.fail("%s: length %d runs past the %d bytes left", field, n, r.end-r.n)
		return false
	}
	k, err := r.src.Discard(int(n))
	r.n += int64(k)
	if err != nil {
		r.readErr(field, err)
	}
	return true
}

// checkRecordStream checks that src holds exactly h.RecordCount well-formed
// records and nothing after them, reading at most limit bytes.
func checkRecordStream(src recordSource, h BatchHeader, limit int64) error {
	r := &recordChecker{src: src, limit: limit}
	prevDelta := int32(-1)
	for i := range int(h.RecordCount) {
		r.rec = i
		r.end = r.limit
		length := r.varint("record length")
		if r.err != nil {
			return r.err
		}
		switch {
		case length < 0:
			r.fail("negative record length %d", length)
		case int64(length) > r.limit-r.n:
			return fmt.Errorf("%w: record %d: length %d: %w (%d bytes)", ErrInvalidBatch, i, length, errDecompressedTooLarge, r.limit)
		}
		r.end = r.n + int64(length)
		if r.n == r.end {
			r.fail("attributes: truncated")
			return r.err
		}
		if _, err := r.ReadByte(); err != nil {
			r.readErr("attributes", err)
		}
		r.varlong("timestamp delta")
		delta := r.varint("offset delta")
		r.skipBytes("key")
		r.skipBytes("value")
		headers := r.varint("header count")
		switch {
		case r.err != nil:
		case headers < 0:
			r.fail("negative header count %d", headers)
		case int64(headers) > (r.end-r.n)/2: // a header takes at least two bytes
			r.fail("header count %d cannot fit in the %d bytes left", headers, r.end-r.n)
		}
		for j := 0; j < int(headers) && r.err == nil; j++ {
			if !r.skipBytes(fmt.Sprintf("header %d key", j)) && r.err == nil {
				r.fail("header %d key: null", j)
			}
			r.skipBytes(fmt.Sprintf("header %d value", j))
		}
		if r.err == nil && r.n != r.end {
			r.fail("%d bytes left inside the record after its headers", r.end-r.n)
		}
		if r.err != nil {
			return r.err
		}
		switch {
		case delta < 0:
			return fmt.Errorf("%w: record %d: negative offset delta %d", ErrInvalidBatch, i, delta)
		case delta > h.LastOffsetDelta:
			return fmt.Errorf("%w: record %d: offset delta %d beyond last offset delta %d", ErrInvalidBatch, i, delta, h.LastOffsetDelta)
		case delta <= prevDelta:
			return fmt.Errorf("%w: record %d: offset delta %d does not follow %d", ErrInvalidBatch, i, delta, prevDelta)
		}
		prevDelta = delta
	}
	// Reading to the end also makes the decompressor verify its checksum.
	r.rec = int(h.RecordCount)
	switch _, err := src.ReadByte(); {
	case err == nil:
		return fmt.Errorf("%w: bytes follow the %d records", ErrInvalidBatch, h.RecordCount)
	case !errors.Is(err, io.EOF):
		return fmt.Errorf("%w: after the %d records: %w", ErrInvalidBatch, h.RecordCount, err)
	}
	return nil
}
