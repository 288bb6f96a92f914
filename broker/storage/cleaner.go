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

// maybeCompact compacts when the dirty share of the closed segments (bytes
// above the last compaction's end) reaches min.cleanable.dirty.ratio.
func (p *Partition) maybeCompact(ctx context.Context, cfg TopicConfig) error {
	p.mu.RLock()
	closed := slices.Clone(p.segs[:len(p.segs)-1])
	activeBase, cleanedTo := p.segs[len(p.segs)-1].base, p.cleanedTo
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
	return p.compact(ctx, closed, activeBase, cfg)
}

// compact keeps, in the given closed segments, only the latest record of
// each key (as of those segments), dropping tombstones whose segment's
// newest timestamp is older than delete.retention.ms. Offsets never move:
// a batch keeps its base offset and last offset delta, and a batch left
// with no records is dropped, leaving a gap (a segment left empty is
// removed, but for the first). Records without a key and
// control batches are kept.
//
// Each segment is rewritten to a ".cleaning" file, synced, and renamed
// over the original; the rename is the commit point, so a crash leaves
// either the old segment or the new one (and Open deletes a stray
// ".cleaning" file).
func (p *Partition) compact(ctx context.Context, segs []*segment, activeBase int64, cfg TopicConfig) error {
	latest := map[string]int64{}
	var buf []byte
	for _, s := range segs {
		err := s.forEachBatch(&buf, func(h BatchHeader, b []byte) error {
			if h.Control() {
				return nil
			}
			_, recs, err := DecodeRecords(b)
			if err != nil {
				return fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
			}
			for _, r := range recs {
				if r.Key != nil {
					latest[string(r.Key)] = h.BaseOffset + int64(r.OffsetDelta)
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
	horizon := p.log.now().UnixMilli() - cfg.DeleteRetentionMs
	var before, after int64
	for _, s := range segs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n, err := p.compactSegment(s, latest, horizon, &buf)
		if err != nil {
			return fmt.Errorf("compact %s: %w", p, err)
		}
		before += s.size
		after += n
	}
	// Not synced into the directory: should a crash lose it, the next
	// round compacts again.
	if err := vfs.WriteFileAtomic(p.log.fs, filepath.Join(p.dir, cleanedToFile), []byte(strconv.FormatInt(activeBase, 10))); err != nil {
		return fmt.Errorf("compact %s: %w", p, err)
	}
	p.mu.Lock()
	p.cleanedTo = activeBase
	p.mu.Unlock()
	p.log.logger.Info("compacted", "partition", p.String(), "segments", len(segs), "bytes_before", before, "bytes_after", after, "keys", len(latest))
	return nil
}

// compactSegment rewrites one segment and swaps it in, returning its new
// size.
func (p *Partition) compactSegment(s *segment, latest map[string]int64, horizon int64, buf *[]byte) (int64, error) {
	fsys := p.log.fs
	tmp := s.path + cleaningSuffix
	f, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return 0, err
	}
	ns := &segment{base: s.base, path: s.path, f: f, next: s.base, maxTs: -1, lastPos: -1, created: s.created}
	expired := s.maxTs >= 0 && s.maxTs < horizon
	var out []byte
	err = s.forEachBatch(buf, func(h BatchHeader, b []byte) error {
		keep := b
		if !h.Control() {
			_, recs, err := DecodeRecords(b)
			if err != nil {
				return fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
			}
			kept := recs[:0:0]
			for _, r := range recs {
				if r.Key != nil && latest[string(r.Key)] != h.BaseOffset+int64(r.OffsetDelta) {
					continue // superseded
				}
				if r.Value == nil && r.Key != nil && expired {
					continue // tombstone past delete.retention.ms
				}
				kept = append(kept, r)
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

	p.mu.Lock()
	i := slices.Index(p.segs, s)
	if i < 0 || p.closed {
		p.mu.Unlock()
		f.Close()
		fsys.Remove(tmp)
		return 0, ErrClosed
	}
	// Old indexes go first: should a crash follow the rename, the new log
	// is found without indexes and they are rebuilt, never mismatched.
	// An emptied segment goes, except the first: its base offset is where
	// the log starts, which compaction must not move.
	drop := ns.size == 0 && i > 0
	err = errors.Join(removeIfExists(fsys, s.indexPath()), removeIfExists(fsys, s.timeIndexPath()))
	if err == nil {
		if drop {
			err = fsys.Remove(s.path)
			fsys.Remove(tmp)
		} else {
			err = fsys.Rename(tmp, s.path)
		}
	}
	if err == nil {
		err = fsys.SyncDir(p.dir)
	}
	if err != nil {
		p.mu.Unlock()
		f.Close()
		return 0, fmt.Errorf("swap in %s: %w", s.path, err)
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
