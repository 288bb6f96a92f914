package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/runnel-io/runnel/broker/storage/internal/vfs"
)

// A segment is one file of a partition's log, named after the offset of its
// first batch (20 digits, zero-padded, so names sort like offsets), holding
// record batches back to back exactly as they were appended.
//
// Invariants: batches are contiguous from position 0 to size; base offsets
// increase; every batch's offsets are below the next segment's base offset.
// A segment's data and indexes were synced before the next segment was
// created (rollLocked), so after a power cut only the last segment can have
// a torn tail; recovery checks every segment's tail all the same
// (openPartition), because a disk may lose a sync.
// The fields are guarded by the owning partition's lock; the file itself is
// read without it (pread) up to a size read under the lock.
type segment struct {
	base  int64
	path  string // of the .log file
	f     *segFile
	size  int64
	next  int64 // offset after the last batch's last offset
	maxTs int64 // largest batch max timestamp, -1 if none
	// maxTsOffset and maxTsPos locate the batch holding maxTs, so that the
	// time index written at close can end with an exact entry for it.
	maxTsOffset int64
	maxTsPos    int64
	// lastOffset and lastPos locate the last batch (lastPos is -1 in an
	// empty segment), for the offset index entry that marks it.
	lastOffset int64
	lastPos    int64
	created    time.Time
	offsetIx   offsetIndex
	timeIx     timeIndex
	sinceIndex int64 // bytes appended since the last offset index entry
	sinceTime  int64 // bytes appended since the last time index entry
	// aborted lists the aborted transactions whose abort marker the segment
	// holds, in marker order; minFirst is the least first offset among them.
	aborted  []AbortedTxn
	minFirst int64
}

const segmentSuffix = ".log"

func segmentName(base int64) string { return fmt.Sprintf("%020d", base) }

func parseSegmentName(name string) (int64, bool) {
	s, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(s) != 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

func (s *segment) indexPath() string {
	return strings.TrimSuffix(s.path, segmentSuffix) + ".index"
}

func (s *segment) timeIndexPath() string {
	return strings.TrimSuffix(s.path, segmentSuffix) + ".timeindex"
}

// createSegment creates an empty segment file. Its directory entry is
// durable once the caller syncs dir.
func createSegment(files *fileCache, dir string, base int64, now time.Time) (*segment, error) {
	path := filepath.Join(dir, segmentName(base)+segmentSuffix)
	f, err := files.fs.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	return &segment{base: base, path: path, f: files.adopt(path, f), next: base, maxTs: -1, lastPos: -1, created: now}, nil
}

// indexBatch records the batch just appended at pos in the in-memory
// indexes.
func (s *segment) indexBatch(h BatchHeader, pos int64, interval int64) {
	size := int64(h.Size())
	if pos > 0 && s.sinceIndex >= interval {
		s.offsetIx = append(s.offsetIx, offsetEntry{offset: h.BaseOffset, pos: pos})
		s.sinceIndex = 0
	}
	s.sinceIndex += size
	if h.MaxTimestamp > s.maxTs {
		if len(s.timeIx) == 0 || s.sinceTime >= interval {
			s.timeIx = append(s.timeIx, timeEntry{ts: h.MaxTimestamp, offset: h.BaseOffset, pos: pos})
			s.sinceTime = 0
		}
		s.maxTs, s.maxTsOffset, s.maxTsPos = h.MaxTimestamp, h.BaseOffset, pos
	}
	s.sinceTime += size
	s.next = h.LastOffset() + 1
	s.lastOffset, s.lastPos = h.BaseOffset, pos
}

// writeIndexes persists the in-memory indexes next to the segment; they
// are durable once the caller syncs the directory.
func (s *segment) writeIndexes(fsys vfs.FS) error {
	// The last time index entry always carries the segment's largest
	// timestamp, so that a reopened closed segment knows it without a scan.
	if n := len(s.timeIx); s.maxTs >= 0 && (n == 0 || s.timeIx[n-1].ts < s.maxTs) {
		s.timeIx = append(s.timeIx, timeEntry{ts: s.maxTs, offset: s.maxTsOffset, pos: s.maxTsPos})
	}
	// The last offset index entry always marks the last batch, so that
	// recovery can tell a segment that lost whole batches at its end from
	// one that never had them (see openSegment).
	if n := len(s.offsetIx); s.lastPos >= 0 && (n == 0 || s.offsetIx[n-1].pos < s.lastPos) {
		s.offsetIx = append(s.offsetIx, offsetEntry{offset: s.lastOffset, pos: s.lastPos})
	}
	if err := vfs.WriteFileAtomic(fsys, s.indexPath(), encodeOffsetIndex(s.base, s.offsetIx)); err != nil {
		return fmt.Errorf("write offset index of %s: %w", s.path, err)
	}
	if err := vfs.WriteFileAtomic(fsys, s.timeIndexPath(), encodeTimeIndex(s.base, s.timeIx)); err != nil {
		return fmt.Errorf("write time index of %s: %w", s.path, err)
	}
	return nil
}

// remove closes the segment and deletes its files.
func (s *segment) remove(fsys vfs.FS) error {
	s.f.Close()
	return s.removeFiles(fsys)
}

// removeFiles deletes the segment's files, leaving its open file usable by
// reads already under way.
func (s *segment) removeFiles(fsys vfs.FS) error {
	var errs []error
	for _, p := range []string{s.path, s.indexPath(), s.timeIndexPath(), s.txnIndexPath()} {
		if err := fsys.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// batchScanner walks batch headers of a file from a position, reading ahead
// in chunks so that small batches do not cost a system call each, and big
// ones are skipped without being read.
type batchScanner struct {
	f     io.ReaderAt
	end   int64 // scan limit (file size)
	pos   int64 // position of the current batch
	buf   []byte
	bufAt int64 // file position of buf[0]
	h     BatchHeader
	err   error
}

const scanChunk = 64 << 10

func newBatchScanner(f io.ReaderAt, pos, end int64) *batchScanner {
	return &batchScanner{f: f, pos: pos, end: end, bufAt: pos}
}

// next advances to the next batch header; it returns false at the end, on a
// read error, or at a header that is cut short or impossible (then err says
// which).
func (sc *batchScanner) next() bool {
	if sc.err != nil || sc.pos >= sc.end {
		return false
	}
	if sc.end-sc.pos < BatchHeaderSize {
		sc.err = fmt.Errorf("%w: %d bytes at position %d are shorter than a batch header", ErrInvalidBatch, sc.end-sc.pos, sc.pos)
		return false
	}
	rel := sc.pos - sc.bufAt
	if rel < 0 || rel+BatchHeaderSize > int64(len(sc.buf)) {
		// Read ahead when batches are small, so that many headers come in
		// one read; when they are big, read just the header, or the scan
		// would read every byte of the data it is skipping.
		want := int64(scanChunk)
		if sc.h.Length > 4096 {
			want = BatchHeaderSize
		}
		n := min(want, sc.end-sc.pos)
		if cap(sc.buf) < int(n) {
			sc.buf = make([]byte, scanChunk)
		}
		sc.buf = sc.buf[:n]
		if _, err := sc.f.ReadAt(sc.buf, sc.pos); err != nil && !errors.Is(err, io.EOF) {
			sc.err = fmt.Errorf("read batch header at %d: %w", sc.pos, err)
			return false
		}
		sc.bufAt, rel = sc.pos, 0
	}
	h, err := ParseBatchHeader(sc.buf[rel : rel+BatchHeaderSize])
	if err != nil {
		sc.err = err
		return false
	}
	if h.Length < BatchHeaderSize-batchLogOverhead || sc.pos+int64(h.Size()) > sc.end {
		sc.err = fmt.Errorf("%w: batch at position %d claims %d bytes, %d remain", ErrInvalidBatch, sc.pos, h.Size(), sc.end-sc.pos)
		return false
	}
	sc.h = h
	return true
}

// advance moves past the current batch.
func (sc *batchScanner) advance() { sc.pos += int64(sc.h.Size()) }

// scanSegment reads every batch of a segment from position 0, validating
// each fully (CRC included) when validate is set, and rebuilds the indexes.
// It stops at the first bad batch and returns the position where the good
// data ends, with the reason it stopped early (nil if it reached the end).
func (s *segment) scan(fileSize int64, interval int64, validate bool) (goodEnd int64, why error) {
	s.offsetIx, s.timeIx = nil, nil
	s.sinceIndex, s.sinceTime = 0, 0
	s.next, s.maxTs, s.lastPos = s.base, -1, -1
	sc := newBatchScanner(s.f, 0, fileSize)
	var body []byte
	prevEnd := s.base
	for sc.next() {
		h := sc.h
		if validate {
			if cap(body) < h.Size() {
				body = make([]byte, h.Size())
			}
			body = body[:h.Size()]
			if _, err := s.f.ReadAt(body, sc.pos); err != nil {
				return sc.pos, fmt.Errorf("read batch at %d: %w", sc.pos, err)
			}
			if _, err := ValidateBatch(body); err != nil {
				return sc.pos, fmt.Errorf("batch at position %d (offset %d): %w", sc.pos, h.BaseOffset, err)
			}
		}
		if h.BaseOffset < prevEnd || h.LastOffset() < h.BaseOffset {
			return sc.pos, fmt.Errorf("%w: batch at position %d has base offset %d, expected at least %d", ErrInvalidBatch, sc.pos, h.BaseOffset, prevEnd)
		}
		s.indexBatch(h, sc.pos, interval)
		prevEnd = h.LastOffset() + 1
		sc.advance()
	}
	return sc.pos, sc.err
}
