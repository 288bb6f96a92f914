package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/runnel-io/runnel/broker/storage/internal/vfs"
)

// The cleaner keeps partitions within their retention limits and compacts
// compacted topics. Both work only on closed segments: the active segment
// is never touched, so appends never wait for the cleaner beyond the brief
// moment a rewritten segment is swapped in.

const cleaningSuffix = ".cleaning"

// clean runs retention and compaction for the partition once.
func (p *Partition) clean(ctx context.Context) error {
	p.cleanerMu.Lock()
	defer p.cleanerMu.Unlock()
	p.closeRetired()
	cfg := p.topic.Config()
	var errs []error
	if cfg.Delete {
		errs = append(errs, p.enforceRetention(cfg))
	}
	if cfg.Compact {
		errs = append(errs, p.maybeCompact(ctx, cfg))
	}
	return errors.Join(errs...)
}

// retire keeps a removed segment's file open until the next cleaner round,
// so that reads which found it just before it went can still finish.
func (p *Partition) retire(s *segment) {
	s.f.retire()
	p.mu.Lock()
	p.retired = append(p.retired, s.f)
	p.mu.Unlock()
}

func (p *Partition) closeRetired() {
	p.mu.Lock()
	retired := p.retired
	p.retired = nil
	p.mu.Unlock()
	for _, f := range retired {
		f.Close()
	}
}

// enforceRetention deletes the oldest closed segments while they are older
// than retention.ms (by their largest record timestamp) or while the
// partition is bigger than retention.bytes without them.
func (p *Partition) enforceRetention(cfg TopicConfig) error {
	now := p.log.now().UnixMilli()
	p.mu.RLock()
	closed := slices.Clone(p.segs[:len(p.segs)-1])
	var total int64
	for _, s := range p.segs {
		total += s.size
	}
	sizes := make([]int64, len(closed))
	maxTs := make([]int64, len(closed))
	for i, s := range closed {
		sizes[i], maxTs[i] = s.size, s.maxTs
	}
	p.mu.RUnlock()

	n := 0
	if cfg.RetentionMs >= 0 {
		for n < len(closed) && (sizes[n] == 0 || (maxTs[n] >= 0 && maxTs[n] < now-cfg.RetentionMs)) {
			n++
		}
	}
	if cfg.RetentionBytes >= 0 {
		excess, i := total-cfg.RetentionBytes, 0
		for i < len(closed) && excess >= sizes[i] {
			excess -= sizes[i]
			i++
		}
		n = max(n, i)
	}
	if n == 0 {
		return nil
	}
	var newStart int64
	p.mu.Lock()
	newStart = p.segs[n].base
	p.logStart = max(p.logStart, newStart)
	gone := slices.Clone(p.segs[:n])
	p.segs = slices.Delete(p.segs, 0, n)
	p.mu.Unlock()
	var freed int64
	var errs []error
	for i, s := range gone {
		freed += sizes[i]
		p.retire(s)
		errs = append(errs, s.removeFiles(p.log.fs))
	}
	p.log.logger.Info("retention deleted segments", "partition", p.String(), "segments", n, "bytes", freed, "log_start_offset", newStart)
	return errors.Join(errs...)
}

// maybeCompact compacts when the dirty share of the cleanable segments
// (bytes above the last compaction's end) reaches
// min.cleanable.dirty.ratio. The cleanable segments are the closed ones
// below the last stable offset: the fate of a transaction's records must
// be known before compaction may drop or keep them.
func (p *Partition) maybeCompact(ctx context.Context, cfg TopicConfig) error {
	p.mu.RLock()
	lso := p.txns.lso(p.hw)
	n := 0
	for n < len(p.segs)-1 && p.segs[n].next <= lso {
		n++
	}
	closed := slices.Clone(p.segs[:n])
	end, cleanedTo := p.segs[n].base, p.cleanedTo
	var total, dirty int64
	for _, s := range closed {
		total += s.size
		if s.next > cleanedTo {
			dirty += s.size
		}
	}
	p.mu.RUnlock()
	if dirty == 0 || float64(dirty)/float64(total) < cfg.MinCleanableDirtyRatio {
		return nil
	}
	return p.compact(ctx, closed, end, cfg)
}

// compact keeps, in the given closed segments (which lie below the last
// stable offset and end at end), only the latest record of each key (as of
// those segments), dropping tombstones whose segment's newest timestamp is
// older than delete.retention.ms. Offsets never move: a batch keeps its base
// offset and last offset delta, and a batch left with no records is dropped,
// leaving a gap (a segment left empty is removed, but for the first).
// Records without a key are kept.
//
// Transactions, as Kafka compacts them: records of aborted transactions are
// dropped and supersede nothing; committed ones are compacted like any.
// A marker is kept while any record of its transaction remains; once none
// does, compaction stamps it with a delete horizon (delete.retention.ms
// from then, in the batch's base timestamp, attribute bit 6), and drops it
// at the first compaction past the horizon, so that a consumer that read the
// transaction's records within delete.retention.ms still finds its marker.
//
// Each segment is rewritten to a ".cleaning" file, synced, and renamed
// over the original; the rename is the commit point, so a crash leaves
// either the old segment or the new one (and Open deletes a stray
// ".cleaning" file).
func (p *Partition) compact(ctx context.Context, segs []*segment, end int64, cfg TopicConfig) error {
	cs := &compaction{
		latest:  map[string]int64{},
		aborted: p.abortedByProducer(),
		hasData: map[int64]bool{},
		now:     p.log.now().UnixMilli(),
	}
	cs.horizon = cs.now - cfg.DeleteRetentionMs
	cs.deleteRetention = cfg.DeleteRetentionMs
	var buf []byte
	for _, s := range segs {
		err := s.forEachBatch(&buf, func(h BatchHeader, b []byte) error {
			if h.Control() || cs.abortedData(h) {
				return nil
			}
			_, recs, err := DecodeRecords(b)
			if err != nil {
				return fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
			}
			for _, r := range recs {
				if r.Key != nil {
					cs.latest[string(r.Key)] = h.BaseOffset + int64(r.OffsetDelta)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("compact %s: map keys of %s: %w", p, s.path, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	var before, after int64
	for _, s := range segs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n, err := p.compactSegment(s, cs, &buf)
		if err != nil {
			return fmt.Errorf("compact %s: %w", p, err)
		}
		before += s.size
		after += n
	}
	// Not synced into the directory: should a crash lose it, the next
	// round compacts again.
	if err := vfs.WriteFileAtomic(p.log.fs, filepath.Join(p.dir, cleanedToFile), []byte(strconv.FormatInt(end, 10))); err != nil {
		return fmt.Errorf("compact %s: %w", p, err)
	}
	p.mu.Lock()
	p.cleanedTo = end
	p.mu.Unlock()
	p.log.logger.Info("compacted", "partition", p.String(), "segments", len(segs), "bytes_before", before, "bytes_after", after, "keys", len(cs.latest))
	return nil
}

// compaction is one compaction's knowledge, shared by its segments, which
// it rewrites in offset order.
type compaction struct {
	latest  map[string]int64       // key -> offset of its latest record
	aborted map[int64][]AbortedTxn // by producer, in offset order
	// hasData: the producer's current transaction (since its last marker)
	// keeps records after this compaction.
	hasData         map[int64]bool
	now             int64 // ms
	horizon         int64 // tombstones in segments older than this go
	deleteRetention int64 // ms
}

// abortedData reports whether h is a transactional data batch of an
// aborted transaction.
func (cs *compaction) abortedData(h BatchHeader) bool {
	if !h.Transactional() || h.Control() || h.ProducerID < 0 {
		return false
	}
	for _, a := range cs.aborted[h.ProducerID] {
		if a.FirstOffset <= h.BaseOffset && h.BaseOffset < a.LastOffset {
			return true
		}
	}
	return false
}

// abortedByProducer gathers the partition's aborted transactions.
func (p *Partition) abortedByProducer() map[int64][]AbortedTxn {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := map[int64][]AbortedTxn{}
	for _, s := range p.segs {
		for _, a := range s.aborted {
			out[a.ProducerID] = append(out[a.ProducerID], a)
		}
	}
	return out
}

// attrDeleteHorizon marks a batch whose base timestamp is the time after
// which compaction may remove it (Kafka's KIP-534).
const attrDeleteHorizon = 0x40

// compactMarker decides a marker's fate: keep it as it is (b), keep it
// stamped with a delete horizon (a new batch), or drop it (nil).
func (cs *compaction) compactMarker(h BatchHeader, b []byte) ([]byte, error) {
	hasData := cs.hasData[h.ProducerID]
	delete(cs.hasData, h.ProducerID)
	switch {
	case hasData:
		return b, nil
	case h.Attributes&attrDeleteHorizon != 0:
		if cs.now >= h.BaseTimestamp {
			return nil, nil
		}
		return b, nil
	}
	_, recs, err := DecodeRecords(b)
	if err != nil {
		return nil, fmt.Errorf("marker at offset %d: %w", h.BaseOffset, err)
	}
	horizon := cs.now + cs.deleteRetention
	// Records keep their timestamps: their deltas now count from the
	// horizon.
	for i := range recs {
		recs[i].TimestampDelta += h.BaseTimestamp - horizon
	}
	h.Attributes |= attrDeleteHorizon
	h.BaseTimestamp = horizon
	out, err := EncodeBatch(h, recs)
	if err != nil {
		return nil, fmt.Errorf("marker at offset %d: %w", h.BaseOffset, err)
	}
	return out, nil
}

// compactSegment rewrites one segment and swaps it in, returning its new
// size.
func (p *Partition) compactSegment(s *segment, cs *compaction, buf *[]byte) (int64, error) {
	fsys := p.log.fs
	tmp := s.path + cleaningSuffix
	of, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return 0, err
	}
	f := p.log.files.adopt(tmp, of)
	ns := &segment{base: s.base, path: s.path, f: f, next: s.base, maxTs: -1, lastPos: -1, created: s.created}
	p.mu.RLock()
	aborted := slices.Clone(s.aborted)
	p.mu.RUnlock()
	var droppedAborts []int64 // markers of aborted transactions dropped
	expired := s.maxTs >= 0 && s.maxTs < cs.horizon
	var out []byte
	err = s.forEachBatch(buf, func(h BatchHeader, b []byte) error {
		keep := b
		switch {
		case h.Control():
			var err error
			if keep, err = cs.compactMarker(h, b); err != nil {
				return err
			}
			if keep == nil {
				droppedAborts = append(droppedAborts, h.BaseOffset)
				return nil
			}
			if h, err = ParseBatchHeader(keep); err != nil {
				return err
			}
		case cs.abortedData(h):
			return nil
		default:
			_, recs, err := DecodeRecords(b)
			if err != nil {
				return fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
			}
			kept := recs[:0:0]
			for _, r := range recs {
				if r.Key != nil && cs.latest[string(r.Key)] != h.BaseOffset+int64(r.OffsetDelta) {
					continue // superseded
				}
				if r.Value == nil && r.Key != nil && expired {
					continue // tombstone past delete.retention.ms
				}
				kept = append(kept, r)
			}
			if len(kept) > 0 && h.Transactional() && h.ProducerID >= 0 {
				cs.hasData[h.ProducerID] = true
			}
			switch {
			case len(kept) == 0:
				return nil
			case len(kept) < len(recs):
				if out, err = EncodeBatch(h, kept); err != nil {
					return fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
				}
				keep = out
				if h, err = ParseBatchHeader(keep); err != nil {
					return err
				}
			}
		}
		if _, err := f.WriteAt(keep, ns.size); err != nil {
			return err
		}
		ns.indexBatch(h, ns.size, p.log.indexInterval)
		ns.size += int64(len(keep))
		return nil
	})
	if err == nil {
		err = f.SyncData()
	}
	if err != nil {
		f.Close()
		fsys.Remove(tmp)
		return 0, fmt.Errorf("rewrite %s: %w", s.path, err)
	}
	for _, a := range aborted {
		if !slices.Contains(droppedAborts, a.LastOffset) {
			ns.addAborted(a)
		}
	}

	p.mu.Lock()
	i := slices.Index(p.segs, s)
	if i < 0 || p.closed || p.failed != nil {
		p.mu.Unlock()
		f.Close()
		fsys.Remove(tmp)
		return 0, ErrClosed
	}
	// Old indexes go first: should a crash follow the rename, the new log
	// is found without indexes and they are rebuilt, never mismatched.
	// (The old txn index may stay: what it lists beyond the new segment's
	// markers is transactions none of whose records remain, which
	// filtering them cannot affect.)
	// An emptied segment goes, except the first: its base offset is where
	// the log starts, which compaction must not move.
	drop := ns.size == 0 && i > 0
	// The old file is retired before it is renamed over, so that nobody
	// opens the new one by its path thinking it the old (segFile.acquire).
	s.f.retire()
	err = errors.Join(removeIfExists(fsys, s.indexPath()), removeIfExists(fsys, s.timeIndexPath()))
	if err == nil {
		if drop {
			err = errors.Join(fsys.Remove(s.path), removeIfExists(fsys, s.txnIndexPath()))
			fsys.Remove(tmp)
		} else {
			if err = fsys.Rename(tmp, s.path); err == nil {
				f.rename(s.path)
			}
		}
	}
	if err == nil {
		err = fsys.SyncDir(p.dir)
	}
	if err != nil {
		// Which files the directory holds after a crash is now unknown:
		// only recovery can say (failLocked).
		err = p.failLocked(fmt.Errorf("swap in %s: %w", s.path, err))
		p.mu.Unlock()
		f.Close()
		return 0, err
	}
	if drop {
		p.segs = slices.Delete(p.segs, i, i+1)
		f.Close()
	} else {
		p.segs[i] = ns
	}
	p.retired = append(p.retired, s.f)
	p.mu.Unlock()
	if !drop {
		if err := ns.writeIndexes(fsys); err != nil {
			return 0, err
		}
		if err := ns.writeTxnIndex(fsys); err != nil {
			return 0, err
		}
	}
	return ns.size, nil
}

// forEachBatch calls fn with every batch of a closed segment, read into
// *buf (reused between calls, so fn must not keep b).
func (s *segment) forEachBatch(buf *[]byte, fn func(h BatchHeader, b []byte) error) error {
	sc := newBatchScanner(s.f, 0, s.size)
	for sc.next() {
		n := sc.h.Size()
		if cap(*buf) < n {
			*buf = make([]byte, n)
		}
		b := (*buf)[:n]
		if _, err := s.f.ReadAt(b, sc.pos); err != nil {
			return fmt.Errorf("read batch at %d: %w", sc.pos, err)
		}
		h, err := ValidateBatch(b)
		if err != nil {
			return fmt.Errorf("batch at position %d: %w", sc.pos, err)
		}
		if err := fn(h, b); err != nil {
			return err
		}
		sc.advance()
	}
	return sc.err
}

func removeIfExists(fsys vfs.FS, path string) error {
	if err := fsys.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
