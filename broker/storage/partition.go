package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/runnel-io/runnel/broker/storage/internal/vfs"
)

// Partition is one partition's log: an ordered list of segments, the last
// of which (the active segment) takes appends.
//
// Offsets: the log start offset is the first offset a reader may ask for;
// the log end offset (LEO) is the offset the next appended record gets; the
// high watermark (HW) is the end of what is durable under the flush policy.
// logStart <= HW <= LEO always. Readers are served only below the HW, so a
// consumer never sees a record that a crash could take back, and a
// committed consumer offset never points past what survives a restart.
type Partition struct {
	log   *Log
	topic *Topic
	index int32
	dir   string

	mu       sync.RWMutex
	segs     []*segment // sorted by base offset; the last is active
	logStart int64
	leo      int64
	hw       int64
	hwCh     chan struct{} // closed and replaced whenever hw moves
	closed   bool
	// failed is the disk error that took the partition offline (failLocked),
	// or nil.
	failed error

	syncMu sync.Mutex // one fdatasync at a time; later callers share its result

	// cleanerMu serialises retention and compaction of this partition with
	// each other and with DeleteRecords.
	cleanerMu sync.Mutex
	// cleanedTo is the offset below which closed segments were compacted; the
	// bytes above it are the dirty part that min.cleanable.dirty.ratio weighs.
	cleanedTo int64
	// producers is the idempotent producers' state (producerstate.go).
	producers producerState
	// txns is the transactions' state (txn.go).
	txns txnState
	// retired holds files of segments removed by the cleaner, closed at its
	// next round (see retire).
	retired []*segFile
}

// Topic returns the partition's topic name.
func (p *Partition) Topic() string { return p.topic.name }

// Index returns the partition number.
func (p *Partition) Index() int32 { return p.index }

func (p *Partition) String() string { return fmt.Sprintf("%s-%d", p.topic.name, p.index) }

// LogStartOffset returns the first offset that can be read.
func (p *Partition) LogStartOffset() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.logStart
}

// LogEndOffset returns the offset the next appended record will get.
func (p *Partition) LogEndOffset() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.leo
}

// HighWatermark returns the end of the durable, readable part of the log.
func (p *Partition) HighWatermark() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.hw
}

// Offsets returns the log start offset, high watermark and log end offset
// read together.
func (p *Partition) Offsets() (logStart, hw, leo int64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.logStart, p.hw, p.leo
}

// Offline reports whether a disk error took the partition offline: a
// write or a sync of its files failed, so every append, read and sync of
// it fails with ErrStorage until the log is reopened, which recovers it as
// after a crash.
func (p *Partition) Offline() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.failed != nil
}

// failLocked takes the partition offline after a failed write or sync of
// its files and returns the error to report, wrapping ErrStorage and
// cause. The failure is final for this process: a failed fsync may have
// dropped the dirty pages it was to write (Linux marks them clean), so a
// later sync that succeeds proves nothing about them, and the high
// watermark never moves again. Only recovery at the next open, which
// rescans and resyncs what is on disk, brings the partition back. Readers
// and waiters are woken to find it offline. Call with p.mu held.
func (p *Partition) failLocked(cause error) error {
	if p.failed == nil {
		p.failed = cause
		p.log.logger.Error("partition offline after a disk error; reopen the log to recover it",
			"partition", p.String(), "err", cause)
		if !p.closed {
			close(p.hwCh)
			p.hwCh = make(chan struct{})
		}
	}
	return p.offlineErrLocked()
}

// fail is failLocked for a caller not holding p.mu.
func (p *Partition) fail(cause error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failLocked(cause)
}

// offlineErrLocked is the error of an operation refused because the
// partition is offline.
func (p *Partition) offlineErrLocked() error {
	return fmt.Errorf("%w: %s is offline after a disk error: %w", ErrStorage, p, p.failed)
}

// Size returns the bytes the partition's segments hold.
func (p *Partition) Size() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var n int64
	for _, s := range p.segs {
		n += s.size
	}
	return n
}

// Changed returns a channel that is closed the next time the high watermark
// moves or the partition closes. Fetch long polls wait on it; a caller
// waits, so the next group commit keeps its usual cadence.
func (p *Partition) Changed() <-chan struct{} {
	p.log.hurry()
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.hwCh
}

// AppendResult describes where an append put its batches.
type AppendResult struct {
	BaseOffset int64 // offset of the first record
	LastOffset int64 // offset of the last record
	// LogAppendTime is the time stamped on the batches in milliseconds when
	// the topic uses LogAppendTime, else -1.
	LogAppendTime  int64
	LogStartOffset int64
	// Duplicate is set when the batch was a retry of one already appended
	// by an idempotent producer: nothing was written, and the offsets are
	// those the first append got.
	Duplicate bool
}

// maxInlineBatches is how many batch headers an append keeps on the stack;
// producers nearly always send one batch per partition.
const maxInlineBatches = 4

// Append validates one or more v2 record batches laid back to back in b and
// appends them, assigning offsets. It rewrites the base offset and leader
// epoch in b itself (and, for LogAppendTime topics, the timestamps and CRC),
// then writes b as it is. Nothing is written unless every batch is valid,
// as Kafka validates a producer's batch: well formed (ValidateBatch, else
// ErrInvalidBatch), and with at least one record and one offset per record
// (else ErrInvalidRecord).
//
// The append is visible to readers once durable: under DurabilityAlways
// before Append returns, under DurabilityInterval at the next group commit
// (WaitDurable waits for it).
func (p *Partition) Append(b []byte) (AppendResult, error) {
	cfg := p.topic.Config()
	var inline [maxInlineBatches]BatchHeader
	hdrs := inline[:0]
	for rest := b; len(rest) > 0; {
		h, err := ValidateBatch(rest)
		if err != nil {
			return AppendResult{}, fmt.Errorf("append to %s: batch %d: %w", p, len(hdrs), err)
		}
		if h.Size() > int(cfg.MaxMessageBytes) {
			return AppendResult{}, fmt.Errorf("append to %s: %w: batch of %d bytes exceeds max.message.bytes %d", p, ErrMessageTooLarge, h.Size(), cfg.MaxMessageBytes)
		}
		if err := checkProducedBatch(h); err != nil {
			return AppendResult{}, fmt.Errorf("append to %s: batch %d: %w", p, len(hdrs), err)
		}
		if h.Control() {
			// Markers change the partition's transaction state, which
			// AppendMarker keeps; a control batch from elsewhere would
			// bypass it.
			return AppendResult{}, fmt.Errorf("append to %s: batch %d: %w: control batches are written by AppendMarker", p, len(hdrs), ErrInvalidBatch)
		}
		hdrs = append(hdrs, h)
		rest = rest[h.Size():]
	}
	if len(hdrs) == 0 {
		return AppendResult{}, fmt.Errorf("append to %s: %w: no record batch given", p, ErrInvalidBatch)
	}
	return p.append(b, hdrs, nil)
}

// append writes the validated batches b, whose headers are hdrs; mk is set
// when b is one marker (AppendMarker).
func (p *Partition) append(b []byte, hdrs []BatchHeader, mk *marker) (AppendResult, error) {
	cfg := p.topic.Config()
	now := p.log.now()
	res := AppendResult{LogAppendTime: -1}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return res, fmt.Errorf("append to %s: %w", p, ErrClosed)
	}
	if p.failed != nil {
		err := p.offlineErrLocked()
		p.mu.Unlock()
		return res, fmt.Errorf("append: %w", err)
	}
	var span int64 // offsets the batches take
	for _, h := range hdrs {
		span += int64(h.LastOffsetDelta) + 1
		if h.ProducerID >= 0 && h.BaseSequence < 0 && h.Transactional() {
			// Markers and sequence-less transactional batches (the group
			// coordinator's) have no sequence to check, only the epoch.
			if err := p.producers.checkEpoch(h); err != nil {
				p.mu.Unlock()
				return res, fmt.Errorf("append to %s: %w", p, err)
			}
			continue
		}
		if h.ProducerID < 0 || h.BaseSequence < 0 {
			continue
		}
		dup, err := p.producers.check(h)
		if err == nil && dup != nil && len(hdrs) > 1 {
			err = fmt.Errorf("%w: a retried batch of producer %d came with other batches", ErrOutOfOrderSequence, h.ProducerID)
		}
		if err != nil {
			p.mu.Unlock()
			return res, fmt.Errorf("append to %s: %w", p, err)
		}
		if dup != nil {
			p.mu.Unlock()
			return AppendResult{BaseOffset: dup.FirstOff, LastOffset: dup.LastOff, LogAppendTime: -1, LogStartOffset: p.LogStartOffset(), Duplicate: true}, nil
		}
	}
	seg := p.segs[len(p.segs)-1]
	if seg.size > 0 && (seg.size+int64(len(b)) > cfg.SegmentBytes ||
		now.Sub(seg.created) >= time.Duration(cfg.SegmentMs)*time.Millisecond ||
		p.leo+span-seg.base > math.MaxUint32 ||
		seg.size+int64(len(b)) > math.MaxUint32) {
		if err := p.rollLocked(now); err != nil {
			p.mu.Unlock()
			return res, fmt.Errorf("append to %s: %w", p, err)
		}
		seg = p.segs[len(p.segs)-1]
	}

	off, pos := p.leo, 0
	for i := range hdrs {
		h := &hdrs[i]
		batch := b[pos : pos+h.Size()]
		setBaseOffset(batch, off)
		setLeaderEpoch(batch, 0)
		h.BaseOffset, h.LeaderEpoch = off, 0
		if cfg.LogAppendTime {
			ms := now.UnixMilli()
			setLogAppendTime(batch, *h, ms)
			h.MaxTimestamp = ms
			res.LogAppendTime = ms
		}
		off = h.LastOffset() + 1
		pos += h.Size()
	}
	if _, err := seg.f.WriteAt(b, seg.size); err != nil {
		// A short write may have left part of b in the file; cut it so the
		// segment stays a clean sequence of batches (recovery would cut it
		// too).
		terr := seg.f.Truncate(seg.size)
		err = p.failLocked(fmt.Errorf("write %s: %w", seg.path, errors.Join(err, terr)))
		p.mu.Unlock()
		return res, fmt.Errorf("append: %w", err)
	}
	start := seg.size
	for _, h := range hdrs {
		seg.indexBatch(h, start, p.log.indexInterval)
		p.producers.update(h)
		switch {
		case mk != nil:
			if first, ok := p.txns.end(h.ProducerID, h.BaseOffset); ok && !mk.commit {
				seg.addAborted(AbortedTxn{ProducerID: h.ProducerID, FirstOffset: first, LastOffset: h.BaseOffset})
			}
		case h.Transactional() && h.ProducerID >= 0:
			p.txns.data(h)
		}
		start += int64(h.Size())
	}
	seg.size = start
	res.BaseOffset, res.LastOffset = p.leo, off-1
	p.leo = off
	res.LogStartOffset = p.logStart
	p.mu.Unlock()

	if p.log.opts.Durability == DurabilityAlways {
		if err := p.syncTo(off); err != nil {
			return res, fmt.Errorf("append to %s: %w", p, err)
		}
	} else {
		p.log.markDirty(p, int64(len(b)))
	}
	return res, nil
}

// rollLocked closes the active segment (making it and its indexes durable)
// and starts a new one at the log end offset.
func (p *Partition) rollLocked(now time.Time) error {
	fsys := p.log.fs
	old := p.segs[len(p.segs)-1]
	// Order matters: the old segment's data is durable before the new
	// segment can be, so that after a power cut a segment with a successor
	// is whole (recovery checks it all the same).
	// A failed sync or write takes the partition offline (failLocked);
	// failing to create the next segment (out of descriptors, say) does
	// not, as nothing is lost and the next append tries again.
	if err := old.f.SyncData(); err != nil {
		return fmt.Errorf("roll segment: %w", p.failLocked(fmt.Errorf("sync %s: %w", old.path, err)))
	}
	if err := old.writeIndexes(fsys); err != nil {
		return fmt.Errorf("roll segment: %w", p.failLocked(err))
	}
	if err := old.writeTxnIndex(fsys); err != nil {
		return fmt.Errorf("roll segment: %w", p.failLocked(err))
	}
	seg, err := createSegment(p.log.files, p.dir, p.leo, now)
	if err != nil {
		return fmt.Errorf("roll segment: %w", err)
	}
	// One directory sync makes the new segment and the old one's indexes
	// durable.
	if err := fsys.SyncDir(p.dir); err != nil {
		seg.remove(fsys)
		return fmt.Errorf("roll segment: %w", p.failLocked(fmt.Errorf("sync directory %s: %w", p.dir, err)))
	}
	p.segs = append(p.segs, seg)
	if err := p.writeProducerSnapshotLocked(); err != nil {
		// Not fatal: the state is rebuilt from an older snapshot and more
		// headers.
		p.log.logger.Warn("producer state snapshot failed", "partition", p.String(), "err", err)
	}
	// Everything before the new segment was just synced.
	p.setHWLocked(p.leo)
	return nil
}

func (p *Partition) setHWLocked(hw int64) {
	if hw > p.hw && !p.closed && p.failed == nil {
		p.hw = hw
		p.txns.durable(hw)
		close(p.hwCh)
		p.hwCh = make(chan struct{})
	}
}

// SyncTo makes every batch below offset end durable now, without waiting
// for the group commit under DurabilityInterval, and moves the high
// watermark past it. It is for the broker's own small writes whose latency
// someone waits on in series (a transaction's state and markers): one
// fdatasync of a partition costs a fraction of the group commit's period.
// Data appends should keep waiting with WaitDurable, which shares a sync
// among every writer of the period.
func (p *Partition) SyncTo(end int64) error {
	if err := p.syncTo(end); err != nil {
		return fmt.Errorf("sync %s: %w", p, err)
	}
	return nil
}

// syncTo makes every batch below offset end durable and moves the high
// watermark past it. Concurrent callers share one fdatasync: whoever holds
// syncMu syncs everything written so far, and those queued behind find
// their offsets already covered.
func (p *Partition) syncTo(end int64) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	p.mu.RLock()
	hw, closed := p.hw, p.closed
	if p.failed != nil && hw < end {
		err := p.offlineErrLocked()
		p.mu.RUnlock()
		return err
	}
	if hw >= end || closed {
		p.mu.RUnlock()
		if hw >= end {
			return nil
		}
		// Closed before this sync: only a clean close's sync (which moves
		// the high watermark) may answer for the data.
		return ErrClosed
	}
	seg, leo := p.segs[len(p.segs)-1], p.leo
	p.mu.RUnlock()
	// Older segments were synced when they rolled, so syncing the active one
	// covers every offset below leo.
	if err := seg.f.SyncData(); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return ErrClosed
		}
		// Never retried: see failLocked.
		return p.fail(fmt.Errorf("sync %s: %w", seg.path, err))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed != nil {
		// Another write failed meanwhile; the high watermark stays, and so
		// the appends waiting on this sync are not acknowledged.
		return p.offlineErrLocked()
	}
	p.setHWLocked(leo)
	return nil
}

// WaitDurable blocks until the record at offset is durable (the high
// watermark is past it), the context ends, or the partition closes.
func (p *Partition) WaitDurable(ctx context.Context, offset int64) error {
	for {
		p.mu.RLock()
		hw, ch, closed := p.hw, p.hwCh, p.closed
		var offline error
		if p.failed != nil {
			offline = p.offlineErrLocked()
		}
		p.mu.RUnlock()
		if hw > offset {
			return nil
		}
		if offline != nil {
			return fmt.Errorf("wait for offset %d: %w", offset, offline)
		}
		if closed {
			return fmt.Errorf("wait for offset %d of %s: %w", offset, p, ErrClosed)
		}
		p.log.hurry()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for offset %d of %s: %w", offset, p, ctx.Err())
		}
	}
}

// segView is a segment as a reader saw it under the lock: the reader uses
// the size and index from that moment, so appends racing with the read are
// not half-seen.
type segView struct {
	s    *segment
	size int64
	ix   offsetIndex
	tix  timeIndex
}

// viewsFrom returns views of the segments that may hold offset and after.
// The caller holds p.mu.
func (p *Partition) viewsFromLocked(offset int64) []segView {
	i := sort.Search(len(p.segs), func(i int) bool { return p.segs[i].base > offset })
	if i > 0 {
		i--
	}
	views := make([]segView, 0, len(p.segs)-i)
	for _, s := range p.segs[i:] {
		views = append(views, segView{s: s, size: s.size, ix: s.offsetIx, tix: s.timeIx})
	}
	return views
}

// Read returns whole batches from the one containing offset, up to maxBytes
// (but at least one batch, however large, so that a consumer always makes
// progress), stopping before the first batch at or past limit or the high
// watermark, whichever is lower; a negative limit means the high watermark.
// Batches come from one segment. Reading at or past that bound returns no
// batches; reading below the log start offset or past the log end offset is
// ErrOffsetOutOfRange.
func (p *Partition) Read(offset int64, maxBytes int, limit int64) (Records, error) {
	for attempt := 0; ; attempt++ {
		r, err := p.read(offset, maxBytes, limit)
		if err != nil && attempt < 3 && errors.Is(err, fs.ErrClosed) {
			// A segment the read found was removed (retention,
			// compaction) and its file closed before the read reached it;
			// the segments there are now have the offsets. (If the
			// partition closed, the next try says so.)
			continue
		}
		return r, err
	}
}

func (p *Partition) read(offset int64, maxBytes int, limit int64) (Records, error) {
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return Records{}, fmt.Errorf("read %s: %w", p, ErrClosed)
	}
	if p.failed != nil {
		err := p.offlineErrLocked()
		p.mu.RUnlock()
		return Records{}, fmt.Errorf("read: %w", err)
	}
	if offset < p.logStart || offset > p.leo {
		start, leo := p.logStart, p.leo
		p.mu.RUnlock()
		return Records{}, fmt.Errorf("read %s at offset %d: %w (log start %d, log end %d)", p, offset, ErrOffsetOutOfRange, start, leo)
	}
	if limit < 0 || limit > p.hw {
		limit = p.hw
	}
	if offset >= limit {
		p.mu.RUnlock()
		return Records{}, nil
	}
	views := p.viewsFromLocked(offset)
	p.mu.RUnlock()

	for _, v := range views {
		sc := newBatchScanner(v.s.f, v.ix.lookup(offset), v.size)
		var r Records
		for sc.next() {
			h := sc.h
			if h.BaseOffset >= limit {
				break
			}
			if h.LastOffset() < offset {
				sc.advance()
				continue
			}
			if r.n == 0 {
				r = Records{f: v.s.f, pos: sc.pos}
			} else if r.n+int64(h.Size()) > int64(maxBytes) {
				break
			}
			r.n += int64(h.Size())
			sc.advance()
			// Index entries mark batch starts, so everything between here and
			// an entry's position is whole batches: take them without reading
			// their headers.
			if pos := v.ix.lastStartWithin(sc.pos, r.pos+int64(maxBytes), limit); pos > sc.pos {
				r.n += pos - sc.pos
				sc.pos = pos
			}
		}
		if sc.err != nil {
			return Records{}, fmt.Errorf("read %s at offset %d: %w", p, offset, sc.err)
		}
		if r.n > 0 {
			return r, nil
		}
		if v.s.next > limit {
			break
		}
	}
	return Records{}, nil
}

// OffsetForTimestamp returns the offset and timestamp of the first batch
// whose largest timestamp is at least ts, or -1, -1 if there is none (as
// ListOffsets answers).
func (p *Partition) OffsetForTimestamp(ts int64) (offset, timestamp int64, err error) {
	p.mu.RLock()
	if p.failed != nil {
		err := p.offlineErrLocked()
		p.mu.RUnlock()
		return -1, -1, fmt.Errorf("offset for timestamp: %w", err)
	}
	start, hw := p.logStart, p.hw
	views := p.viewsFromLocked(start)
	p.mu.RUnlock()
	for _, v := range views {
		if v.s.maxTs < ts && v.s != views[len(views)-1].s {
			continue
		}
		sc := newBatchScanner(v.s.f, v.tix.lookup(ts), v.size)
		for sc.next() {
			h := sc.h
			if h.BaseOffset >= hw {
				return -1, -1, nil
			}
			if h.MaxTimestamp >= ts && h.LastOffset() >= start && !h.Control() {
				off, rts, found, err := firstRecordAt(v.s.f, sc.pos, h, ts, start)
				if err != nil {
					return -1, -1, fmt.Errorf("offset for timestamp %d in %s: %w", ts, p, err)
				}
				if found {
					return off, rts, nil
				}
			}
			sc.advance()
		}
		if sc.err != nil {
			return -1, -1, fmt.Errorf("offset for timestamp %d in %s: %w", ts, p, sc.err)
		}
	}
	return -1, -1, nil
}

// firstRecordAt returns the offset and timestamp of the first record of
// the batch at pos, with header h, whose timestamp is at least ts and
// whose offset at least start, as ListOffsets by timestamp answers: the
// first record, not the first of its batch. found is false if none is
// (records below start can hold the batch's maximum).
func firstRecordAt(f io.ReaderAt, pos int64, h BatchHeader, ts, start int64) (offset, timestamp int64, found bool, err error) {
	if h.LogAppendTime() {
		// Every record has the batch's time.
		return max(h.BaseOffset, start), h.MaxTimestamp, true, nil
	}
	b := make([]byte, h.Size())
	if _, err := f.ReadAt(b, pos); err != nil {
		return 0, 0, false, fmt.Errorf("read batch at position %d: %w", pos, err)
	}
	_, recs, err := DecodeRecords(b)
	if err != nil {
		return 0, 0, false, fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
	}
	for _, r := range recs {
		off, rts := h.BaseOffset+int64(r.OffsetDelta), h.BaseTimestamp+r.TimestampDelta
		if off >= start && rts >= ts {
			return off, rts, true, nil
		}
	}
	return 0, 0, false, nil
}

// DeleteRecords moves the log start offset to offset (-1 means the high
// watermark), as the Kafka DeleteRecords API does, and deletes the segments
// wholly below it. It returns the new log start offset.
func (p *Partition) DeleteRecords(offset int64) (int64, error) {
	p.cleanerMu.Lock()
	defer p.cleanerMu.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, fmt.Errorf("delete records of %s: %w", p, ErrClosed)
	}
	if p.failed != nil {
		err := p.offlineErrLocked()
		p.mu.Unlock()
		return 0, fmt.Errorf("delete records: %w", err)
	}
	if offset == -1 {
		offset = p.hw
	}
	if offset < 0 || offset > p.hw {
		hw := p.hw
		p.mu.Unlock()
		return 0, fmt.Errorf("delete records of %s before %d: %w (high watermark %d)", p, offset, ErrOffsetOutOfRange, hw)
	}
	if offset <= p.logStart {
		start := p.logStart
		p.mu.Unlock()
		return start, nil
	}
	p.logStart = offset
	p.mu.Unlock()
	// The new start is persisted before segments go, so a crash in between
	// leaves a start offset that still hides the deleted records.
	err := vfs.WriteFileAtomic(p.log.fs, filepath.Join(p.dir, logStartFile), []byte(strconv.FormatInt(offset, 10)))
	if err == nil {
		err = p.log.fs.SyncDir(p.dir)
	}
	if err != nil {
		return 0, fmt.Errorf("delete records: persist log start offset: %w", p.fail(err))
	}
	if err := p.deleteSegmentsBelow(offset); err != nil {
		return 0, fmt.Errorf("delete records of %s: %w", p, err)
	}
	return offset, nil
}

// deleteSegmentsBelow removes closed segments whose every offset is below
// offset. Call with cleanerMu held.
func (p *Partition) deleteSegmentsBelow(offset int64) error {
	p.mu.Lock()
	n := 0
	for n < len(p.segs)-1 && p.segs[n+1].base <= offset {
		n++
	}
	gone := slices.Clone(p.segs[:n])
	p.segs = slices.Delete(p.segs, 0, n)
	p.mu.Unlock()
	var errs []error
	for _, s := range gone {
		p.retire(s)
		errs = append(errs, s.removeFiles(p.log.fs))
	}
	return errors.Join(errs...)
}

const (
	logStartFile  = "log-start-offset"
	cleanedToFile = "cleaner-offset"
)

// openPartition loads a partition directory. After an unclean stop (clean
// false: a crash, kill -9 or a power cut) it recovers what the stop may
// have left, in any segment, not only the active one:
//   - the last segment is scanned whole, each batch validated (CRC
//     included), and cut at the first torn or corrupt batch;
//   - every other segment's indexes are checked against it, and the
//     batches after its last offset index entry validated, which finds a
//     torn tail without reading the whole segment; a segment that fails is
//     rescanned whole and cut like the last;
//   - when a segment other than the last is cut, the segments after it are
//     removed: the log is one sequence of offsets, and nothing after a hole
//     can have been durable while the hole was not (rollLocked syncs a
//     segment before its successor exists), so it was never acknowledged
//     under either flush policy. (After a clean stop a bad batch in a
//     closed segment is corruption, not a torn write; that segment is cut
//     and the ones after it are kept.)
//
// What survives is synced before it is called durable (the high watermark
// is set to the log end).
func openPartition(l *Log, t *Topic, index int32, clean bool) (*Partition, error) {
	fsys := l.fs
	dir := filepath.Join(t.dir, strconv.Itoa(int(index)))
	p := &Partition{log: l, topic: t, index: index, dir: dir, hwCh: make(chan struct{})}
	if err := vfs.MkdirAllSync(fsys, dir, 0o755); err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	var bases []int64
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, cleaningSuffix):
			// Left by a crash mid-write; the file it was to replace is intact.
			fsys.Remove(filepath.Join(dir, name))
		default:
			if base, ok := parseSegmentName(name); ok {
				bases = append(bases, base)
			}
		}
	}
	slices.Sort(bases)
	if p.logStart, err = readOffsetFile(fsys, filepath.Join(dir, logStartFile)); err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	if p.cleanedTo, err = readOffsetFile(fsys, filepath.Join(dir, cleanedToFile)); err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	now := l.now()
	dirChanged := !clean
	for i, base := range bases {
		last := i == len(bases)-1
		s, cut, err := p.openSegment(base, !clean, last, now, &dirChanged)
		if err != nil {
			p.closeSegments()
			return nil, fmt.Errorf("open %s: %w", p, err)
		}
		if n := len(p.segs); n > 0 && p.segs[n-1].next > s.base {
			s.f.Close()
			p.closeSegments()
			return nil, fmt.Errorf("open %s: segment %s overlaps the one before it (which ends at offset %d)", p, s.path, p.segs[n-1].next)
		}
		p.segs = append(p.segs, s)
		if cut && !last && !clean {
			later := bases[i+1:]
			l.logger.Warn("removed the segments after a torn segment",
				slog.String("partition", p.String()), slog.String("segment", s.path),
				slog.Int64("log_end_offset", s.next), slog.Int("segments_removed", len(later)))
			for _, b := range later {
				gone := &segment{base: b, path: filepath.Join(dir, segmentName(b)+segmentSuffix)}
				if err := gone.removeFiles(fsys); err != nil {
					p.closeSegments()
					return nil, fmt.Errorf("open %s: %w", p, err)
				}
			}
			dirChanged = true
			break
		}
	}
	if len(p.segs) == 0 {
		s, err := createSegment(l.files, dir, p.logStart, now)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", p, err)
		}
		p.segs = append(p.segs, s)
		dirChanged = true
	}
	p.logStart = max(p.logStart, p.segs[0].base)
	p.leo = p.segs[len(p.segs)-1].next
	p.logStart = min(p.logStart, p.leo)
	if !clean {
		// What survived a crash is all there is: make it durable before
		// calling it readable. Older segments were synced when they rolled,
		// or when recovery cut them.
		if err := p.segs[len(p.segs)-1].f.SyncData(); err != nil {
			p.closeSegments()
			return nil, fmt.Errorf("open %s: sync: %w", p, err)
		}
	}
	if dirChanged {
		// New, removed or rewritten files: a first segment, rebuilt
		// indexes, segments dropped after a torn one.
		if err := fsys.SyncDir(dir); err != nil {
			p.closeSegments()
			return nil, fmt.Errorf("open %s: sync directory: %w", p, err)
		}
	}
	p.hw = p.leo
	if err := p.loadProducerState(); err != nil {
		p.closeSegments()
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	return p, nil
}

// openSegment opens one segment file. A segment whose indexes are missing
// or fail their checks is rescanned; so is the last segment after an
// unclean stop (recover), whose indexes are stale by nature. A rescan
// validates every batch and cuts the segment at the first bad one, which
// cut reports. Rewritten index files set *dirChanged.
func (p *Partition) openSegment(base int64, recover, last bool, now time.Time, dirChanged *bool) (s *segment, cut bool, err error) {
	fsys := p.log.fs
	path := filepath.Join(p.dir, segmentName(base)+segmentSuffix)
	of, err := fsys.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, false, fmt.Errorf("open segment: %w", err)
	}
	f := p.log.files.adopt(path, of)
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("open segment: %w", err)
	}
	s = &segment{base: base, path: path, f: f, size: st.Size(), lastPos: -1, created: now}
	active := recover && last
	if !active {
		// After an unclean stop, validate the tail: a closed segment's
		// indexes were written after its data was synced, so what they
		// cover is intact unless the disk lost synced writes, but a torn
		// tail must not pass as data.
		err := s.loadIndexes(fsys, p.log.indexInterval, recover)
		if err == nil {
			return s, false, nil
		}
		p.log.logger.Warn("rebuilding segment indexes", "partition", p.String(), "segment", path, "reason", err)
	}
	// The offset index, written after the data was synced, ends with the
	// segment's last batch (writeIndexes): a batch it marks that the scan
	// does not find was lost, even if the segment now ends cleanly.
	claimed := int64(-1)
	if ib, err := vfs.ReadFile(fsys, s.indexPath()); err == nil {
		if ix, err := decodeOffsetIndex(base, ib, math.MaxInt64); err == nil && len(ix) > 0 {
			claimed = ix[len(ix)-1].offset
		}
	}
	goodEnd, why := s.scan(s.size, p.log.indexInterval, true)
	if goodEnd < s.size {
		p.log.logger.Warn("truncated partition log at a torn or corrupt batch",
			slog.String("partition", p.String()), slog.String("segment", path),
			slog.Int64("offset", s.next), slog.Int64("position", goodEnd),
			slog.Int64("bytes", s.size-goodEnd), slog.Any("reason", why))
		err := f.Truncate(goodEnd)
		if err == nil {
			err = f.SyncData()
		}
		if err != nil {
			f.Close()
			return nil, false, fmt.Errorf("truncate %s at %d: %w", path, goodEnd, err)
		}
		s.size = goodEnd
		cut = true
	}
	if claimed >= s.next {
		p.log.logger.Warn("segment lost batches its index records",
			slog.String("partition", p.String()), slog.String("segment", path),
			slog.Int64("log_end_offset", s.next), slog.Int64("indexed_offset", claimed))
		cut = true
	}
	if !active {
		if err := s.writeIndexes(fsys); err != nil {
			f.Close()
			return nil, false, err
		}
		*dirChanged = true
	}
	return s, cut, nil
}

// loadIndexes reads a closed segment's index files, checks them against the
// log and finds the segment's end offset by reading the headers after the
// last index entry; with validate set it also checks those batches' CRCs.
func (s *segment) loadIndexes(fsys vfs.FS, interval int64, validate bool) error {
	ib, err := vfs.ReadFile(fsys, s.indexPath())
	if err != nil {
		return err
	}
	if s.offsetIx, err = decodeOffsetIndex(s.base, ib, s.size); err != nil {
		return err
	}
	tb, err := vfs.ReadFile(fsys, s.timeIndexPath())
	if err != nil {
		return err
	}
	if s.timeIx, err = decodeTimeIndex(s.base, tb, s.size); err != nil {
		return err
	}
	s.next, s.maxTs = s.base, -1
	if n := len(s.timeIx); n > 0 {
		s.maxTs = s.timeIx[n-1].ts
		s.maxTsOffset, s.maxTsPos = s.timeIx[n-1].offset, s.timeIx[n-1].pos
	}
	var pos, want int64 = 0, -1
	if n := len(s.offsetIx); n > 0 {
		pos, want = s.offsetIx[n-1].pos, s.offsetIx[n-1].offset
	}
	sc := newBatchScanner(s.f, pos, s.size)
	var body []byte
	for first := true; sc.next(); first = false {
		if first && want >= 0 && sc.h.BaseOffset != want {
			return fmt.Errorf("offset index: last entry says offset %d at position %d, the log has %d", want, pos, sc.h.BaseOffset)
		}
		s.lastOffset, s.lastPos = sc.h.BaseOffset, sc.pos
		if sc.h.MaxTimestamp > s.maxTs {
			return fmt.Errorf("time index: batch at %d has timestamp %d above the index's largest %d", sc.pos, sc.h.MaxTimestamp, s.maxTs)
		}
		if validate {
			body = slices.Grow(body[:0], sc.h.Size())[:sc.h.Size()]
			if _, err := s.f.ReadAt(body, sc.pos); err != nil {
				return fmt.Errorf("read batch at %d: %w", sc.pos, err)
			}
			if _, err := ValidateBatch(body); err != nil {
				return fmt.Errorf("batch at position %d: %w", sc.pos, err)
			}
		}
		s.next = sc.h.LastOffset() + 1
		sc.advance()
	}
	if sc.err != nil {
		return sc.err
	}
	s.sinceIndex, s.sinceTime = interval, interval
	return nil
}

func readOffsetFile(fsys vfs.FS, path string) (int64, error) {
	b, err := vfs.ReadFile(fsys, path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// close syncs and closes the partition. With clean set the active
// segment's indexes are written so that the next open can trust them.
func (p *Partition) close(clean bool) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	var err error
	if clean && p.failed != nil {
		// Nothing may be called durable: the log is closed uncleanly, so
		// that the next open recovers this partition as after a crash.
		err = p.offlineErrLocked()
	} else if clean {
		active := p.segs[len(p.segs)-1]
		if err = active.f.SyncData(); err == nil {
			// Everything is durable: appends waiting for a sync of their
			// own (syncTo) find themselves covered.
			p.setHWLocked(p.leo)
			err = active.writeIndexes(p.log.fs)
		}
		if err == nil {
			err = active.writeTxnIndex(p.log.fs)
		}
		if err == nil {
			err = p.writeProducerSnapshotLocked()
		}
		if err == nil {
			err = p.log.fs.SyncDir(p.dir)
		}
	}
	p.closed = true
	close(p.hwCh)
	p.mu.Unlock()
	p.syncMu.Lock() // wait out a sync in flight before closing its file
	p.closeSegments()
	p.syncMu.Unlock()
	p.closeRetired()
	if err != nil {
		return fmt.Errorf("close %s: %w", p, err)
	}
	return nil
}

func (p *Partition) closeSegments() {
	for _, s := range p.segs {
		s.f.Close()
	}
}
