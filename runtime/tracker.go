package runtime

import (
	"sync"
	"sync/atomic"
	"time"
)

// tracker decides which input offset of one topic-partition may be
// committed: a record's offset is done once every write it caused (table
// changelog, emits, loopbacks, dead letter) is acknowledged, and the
// committable offset is the first record not yet done. Records are added in
// offset order by the processing goroutine; acknowledgements arrive from
// the producer's goroutines in any order.
//
// No lock is taken per record. Each record has a slot in a ring of
// fixed-size chunks holding its count of writes not yet acknowledged: add
// (one goroutine) fills slots at the tail and publishes them through next;
// an acknowledgement decrements its slot atomically. The front of the ring
// is moved past done records in batches, under mu, only when someone asks
// for the committable offset (the commits and the watchdog), and chunks
// left behind are dropped.
type tracker struct {
	// tail is the chunk add writes to; only add touches it.
	tail *trackerChunk
	// next is the offset after the last record added, stored after its
	// slot is written.
	next atomic.Int64

	mu sync.Mutex // guards head, base, movedAt and lastBase
	// head is the chunk holding base.
	head *trackerChunk
	base int64 // the first record not known to be done
	// movedAt is when stalled last saw base move, or nothing pending.
	movedAt  time.Time
	lastBase int64

	failMu sync.Mutex
	failed error // first write that failed; nothing past it is committed
	// onFail, if not nil, is told of every failed write at once, so that
	// processing stops without waiting for the next commit.
	onFail func(error)
}

// trackerChunkSize is the number of records per chunk of the ring.
const trackerChunkSize = 4096

// trackerChunk holds the counts of writes in flight of trackerChunkSize
// consecutive offsets from base. A slot not written (an offset gap, or
// past the last record added) is zero: done.
type trackerChunk struct {
	base    int64
	pending [trackerChunkSize]atomic.Int32
	next    atomic.Pointer[trackerChunk]
}

func newTracker(from int64, onFail func(error)) *tracker {
	c := &trackerChunk{base: from}
	t := &tracker{tail: c, head: c, base: from, movedAt: time.Now(), lastBase: from, onFail: onFail}
	t.next.Store(from)
	return t
}

// add registers the record at offset with n writes in flight and returns
// the function to call once per write with its result. Offsets may skip
// (compacted or transactional inputs); the gap counts as done.
func (t *tracker) add(offset int64, n int) func(error) {
	for offset >= t.tail.base+trackerChunkSize {
		c := &trackerChunk{base: t.tail.base + trackerChunkSize}
		t.tail.next.Store(c)
		t.tail = c
	}
	slot := &t.tail.pending[offset-t.tail.base]
	slot.Store(int32(n))
	t.next.Store(offset + 1)
	return func(err error) {
		if err != nil {
			t.fail(err)
			return
		}
		slot.Add(-1)
	}
}

// fail records a failed write.
func (t *tracker) fail(err error) {
	t.failMu.Lock()
	if t.failed == nil {
		t.failed = err
	}
	t.failMu.Unlock()
	if t.onFail != nil {
		t.onFail(err)
	}
}

// trimLocked moves base past the done records. It reports whether every
// added record is done.
func (t *tracker) trimLocked() bool {
	next := t.next.Load()
	for t.base < next {
		i := t.base - t.head.base
		if i == trackerChunkSize {
			// next is past this chunk, so add has linked the next one.
			t.head = t.head.next.Load()
			continue
		}
		if t.head.pending[i].Load() > 0 {
			return false
		}
		t.base++
	}
	return true
}

// committable returns the offset to commit (the next record to process
// after a restart) and the first write error, if any: after a failed write
// the offset stops moving, so the record is processed again.
func (t *tracker) committable() (int64, error) {
	t.mu.Lock()
	t.trimLocked()
	base := t.base
	t.mu.Unlock()
	t.failMu.Lock()
	defer t.failMu.Unlock()
	return base, t.failed
}

// stalled returns the offset to commit and how long the first record not
// done has kept it from moving (0 with nothing pending), as seen by the
// calls to stalled: the producer retries an unanswered write for as long
// as the log is away, and this is what bounds the wait.
func (t *tracker) stalled(now time.Time) (int64, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.trimLocked() || t.base != t.lastBase {
		t.movedAt, t.lastBase = now, t.base
	}
	return t.base, now.Sub(t.movedAt)
}

// idle reports whether every added record is done.
func (t *tracker) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.trimLocked()
}
