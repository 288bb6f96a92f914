package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strings"

	"github.com/runnel-io/runnel/broker/storage/internal/vfs"
)

// The aborted-transaction index of a segment, <base>.txnindex, lists the
// aborted transactions whose abort marker the segment holds. It is written
// whole when the segment closes (rolled, compacted, or at a clean shutdown)
// and retention removes it with its segment, which trims the index as the
// log is trimmed. Format (big-endian):
//
//	covered  int64   markers below this offset are all listed
//	count    uint32
//	entries  count x (producer id int64, first offset int64, marker offset int64)
//	crc      uint32  CRC-32C of everything before it
//
// covered is the segment's end offset when the file was written. Recovery
// trusts entries below min(covered, the segment's end now) and rebuilds the
// rest by scanning batches (loadProducerState); a missing or damaged file
// is rebuilt the same way.

const (
	txnIndexSuffix    = ".txnindex"
	txnIndexEntrySize = 24
)

func (s *segment) txnIndexPath() string {
	return strings.TrimSuffix(s.path, segmentSuffix) + txnIndexSuffix
}

func encodeTxnIndex(covered int64, entries []AbortedTxn) []byte {
	be := binary.BigEndian
	b := make([]byte, 0, 12+len(entries)*txnIndexEntrySize+4)
	b = be.AppendUint64(b, uint64(covered))
	b = be.AppendUint32(b, uint32(len(entries)))
	for _, a := range entries {
		b = be.AppendUint64(b, uint64(a.ProducerID))
		b = be.AppendUint64(b, uint64(a.FirstOffset))
		b = be.AppendUint64(b, uint64(a.LastOffset))
	}
	return be.AppendUint32(b, crc32.Checksum(b, crc32c))
}

func decodeTxnIndex(b []byte) (covered int64, entries []AbortedTxn, err error) {
	be := binary.BigEndian
	if len(b) < 16 {
		return 0, nil, fmt.Errorf("txn index: %d bytes is too short", len(b))
	}
	body := b[:len(b)-4]
	if got, want := crc32.Checksum(body, crc32c), be.Uint32(b[len(b)-4:]); got != want {
		return 0, nil, fmt.Errorf("txn index: CRC-32C mismatch (file says %08x, data gives %08x)", want, got)
	}
	covered = int64(be.Uint64(body))
	n := int(be.Uint32(body[8:]))
	body = body[12:]
	if len(body) != n*txnIndexEntrySize {
		return 0, nil, fmt.Errorf("txn index: %d entries in %d bytes", n, len(body))
	}
	entries = make([]AbortedTxn, n)
	for i := range entries {
		e := body[i*txnIndexEntrySize:]
		entries[i] = AbortedTxn{
			ProducerID:  int64(be.Uint64(e)),
			FirstOffset: int64(be.Uint64(e[8:])),
			LastOffset:  int64(be.Uint64(e[16:])),
		}
		if entries[i].FirstOffset > entries[i].LastOffset || (i > 0 && entries[i].LastOffset <= entries[i-1].LastOffset) {
			return 0, nil, fmt.Errorf("txn index: entry %d (%+v) out of order", i, entries[i])
		}
	}
	return covered, entries, nil
}

// writeTxnIndex persists the segment's aborted transactions as complete up
// to its end; durable once the caller syncs the directory.
func (s *segment) writeTxnIndex(fsys vfs.FS) error {
	if err := vfs.WriteFileAtomic(fsys, s.txnIndexPath(), encodeTxnIndex(s.next, s.aborted)); err != nil {
		return fmt.Errorf("write txn index of %s: %w", s.path, err)
	}
	return nil
}

// loadTxnIndexes reads every segment's txn index and returns the first
// offset from which markers are not known to be indexed: every segment
// keeps the entries below it, and those at or after it are for the scan
// to rebuild. Call at open, before the partition is shared.
func (p *Partition) loadTxnIndexes() int64 {
	fsys := p.log.fs
	gap := int64(-1)
	for _, s := range p.segs {
		s.aborted, s.minFirst = nil, 0
		b, err := vfs.ReadFile(fsys, s.txnIndexPath())
		var covered int64
		var entries []AbortedTxn
		if err == nil {
			covered, entries, err = decodeTxnIndex(b)
		}
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				p.log.logger.Warn("rebuilding txn index", "partition", p.String(), "segment", s.path, "reason", err)
			}
			if gap < 0 {
				gap = s.base
			}
			continue
		}
		for _, a := range entries {
			if a.LastOffset < min(covered, s.next) && a.LastOffset >= s.base {
				s.addAborted(a)
			}
		}
		if gap < 0 && covered < s.next {
			gap = max(covered, s.base)
		}
	}
	if gap < 0 {
		return p.segs[len(p.segs)-1].next
	}
	for _, s := range p.segs {
		n := 0
		for n < len(s.aborted) && s.aborted[n].LastOffset < gap {
			n++
		}
		if n < len(s.aborted) {
			kept := s.aborted[:n:n]
			s.aborted, s.minFirst = nil, 0
			for _, a := range kept {
				s.addAborted(a)
			}
		}
	}
	return gap
}
