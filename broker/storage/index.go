package storage

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// A segment's indexes live in memory and are written to disk whole when the
// segment is closed (rolled, or at a clean shutdown). An unclean stop leaves
// the active segment's index files stale or missing; recovery rebuilds them
// from the log, which it scans anyway to find a torn tail.
//
// File formats (big-endian, fixed-size entries, no header):
//
//	<base>.index      entries of 8 bytes:  relative offset uint32, position uint32
//	<base>.timeindex  entries of 16 bytes: timestamp int64, relative offset uint32, position uint32
//
// The offset index holds an entry for the first batch written after every
// indexInterval bytes, and one for the last batch of the segment when it
// was written; the batch at position 0 is implied unless it is the last.
// Every entry marks the start of a batch. The time index
// holds an entry whenever a batch raises the segment's largest timestamp and
// indexInterval bytes have passed since the last entry, so its timestamps are
// strictly increasing.

const (
	offsetEntrySize = 8
	timeEntrySize   = 16
)

type offsetEntry struct {
	offset int64 // absolute
	pos    int64
}

type timeEntry struct {
	ts     int64
	offset int64 // absolute
	pos    int64
}

type offsetIndex []offsetEntry

// lookup returns the position of the last indexed batch whose base offset is
// at most off, or 0.
func (ix offsetIndex) lookup(off int64) int64 {
	i := sort.Search(len(ix), func(i int) bool { return ix[i].offset > off })
	if i == 0 {
		return 0
	}
	return ix[i-1].pos
}

// lastStartWithin returns the position of the last indexed batch that
// starts after from and at or before maxPos, and whose base offset is at
// most limit; or from if there is none.
func (ix offsetIndex) lastStartWithin(from, maxPos, limit int64) int64 {
	i := sort.Search(len(ix), func(i int) bool { return ix[i].pos > maxPos })
	for i--; i >= 0 && ix[i].pos > from; i-- {
		if ix[i].offset <= limit {
			return ix[i].pos
		}
	}
	return from
}

type timeIndex []timeEntry

// lookup returns the position from which to scan for the first batch whose
// largest timestamp is at least ts: that of the last entry below ts, or 0.
func (ix timeIndex) lookup(ts int64) int64 {
	i := sort.Search(len(ix), func(i int) bool { return ix[i].ts >= ts })
	if i == 0 {
		return 0
	}
	return ix[i-1].pos
}

func encodeOffsetIndex(base int64, ix offsetIndex) []byte {
	b := make([]byte, 0, len(ix)*offsetEntrySize)
	for _, e := range ix {
		b = binary.BigEndian.AppendUint32(b, uint32(e.offset-base))
		b = binary.BigEndian.AppendUint32(b, uint32(e.pos))
	}
	return b
}

func encodeTimeIndex(base int64, ix timeIndex) []byte {
	b := make([]byte, 0, len(ix)*timeEntrySize)
	for _, e := range ix {
		b = binary.BigEndian.AppendUint64(b, uint64(e.ts))
		b = binary.BigEndian.AppendUint32(b, uint32(e.offset-base))
		b = binary.BigEndian.AppendUint32(b, uint32(e.pos))
	}
	return b
}

// decodeOffsetIndex parses an offset index file and checks the invariants a
// correct one has: offsets and positions strictly increasing, positions
// inside the segment.
func decodeOffsetIndex(base int64, b []byte, segSize int64) (offsetIndex, error) {
	if len(b)%offsetEntrySize != 0 {
		return nil, fmt.Errorf("offset index: size %d is not a multiple of %d", len(b), offsetEntrySize)
	}
	ix := make(offsetIndex, 0, len(b)/offsetEntrySize)
	for i := 0; i < len(b); i += offsetEntrySize {
		e := offsetEntry{
			offset: base + int64(binary.BigEndian.Uint32(b[i:])),
			pos:    int64(binary.BigEndian.Uint32(b[i+4:])),
		}
		if n := len(ix); n > 0 && (e.offset <= ix[n-1].offset || e.pos <= ix[n-1].pos) {
			return nil, fmt.Errorf("offset index: entry %d is not after entry %d", n, n-1)
		}
		if e.pos >= segSize {
			return nil, fmt.Errorf("offset index: position %d is past the segment's %d bytes", e.pos, segSize)
		}
		ix = append(ix, e)
	}
	return ix, nil
}

func decodeTimeIndex(base int64, b []byte, segSize int64) (timeIndex, error) {
	if len(b)%timeEntrySize != 0 {
		return nil, fmt.Errorf("time index: size %d is not a multiple of %d", len(b), timeEntrySize)
	}
	ix := make(timeIndex, 0, len(b)/timeEntrySize)
	for i := 0; i < len(b); i += timeEntrySize {
		e := timeEntry{
			ts:     int64(binary.BigEndian.Uint64(b[i:])),
			offset: base + int64(binary.BigEndian.Uint32(b[i+8:])),
			pos:    int64(binary.BigEndian.Uint32(b[i+12:])),
		}
		if n := len(ix); n > 0 && (e.ts <= ix[n-1].ts || e.offset < ix[n-1].offset || e.pos < ix[n-1].pos) {
			return nil, fmt.Errorf("time index: entry %d is not after entry %d", n, n-1)
		}
		if e.pos >= segSize {
			return nil, fmt.Errorf("time index: position %d is past the segment's %d bytes", e.pos, segSize)
		}
		ix = append(ix, e)
	}
	return ix, nil
}
