package runtime

import (
	"sync"
	"time"
)

// tracker decides which input offset of one topic-partition may be
// committed: a record's offset is done once every write it caused (table
// changelog, emits, loopbacks, dead letter) is acknowledged, and the
// committable offset is the first record not yet done. Records are added in
// offset order by the processing goroutine; acknowledgements arrive from
// the producer's goroutines in any order.
type tracker struct {
	mu      sync.Mutex
	base    int64   // offset of pending[0]
	pending []int32 // per record from base: writes not yet acknowledged; -1 for an offset gap
	next    int64   // offset after the last record added
	failed  error   // first write that failed; nothing past it is committed
	// onFail, if not nil, is told of every failed write at once, so that
	// processing stops without waiting for the next commit.
	onFail func(error)
	// movedAt is when stalled last saw base move, or nothing pending.
	movedAt  time.Time
	lastBase int64
}

func newTracker(from int64, onFail func(error)) *tracker {
	return &tracker{base: from, next: from, movedAt: time.Now(), lastBase: from, onFail: onFail}
}

// add registers the record at offset with n writes in flight and returns
// the function to call once per write with its result. Offsets may skip
// (compacted or transactional inputs); the gap counts as done.
func (t *tracker) add(offset int64, n int) func(error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.next < offset {
		t.pending = append(t.pending, 0)
		t.next++
	}
	t.pending = append(t.pending, int32(n))
	t.next = offset + 1
	t.trimLocked()
	return func(err error) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if err != nil {
			if t.failed == nil {
				t.failed = err
			}
			if t.onFail != nil {
				t.onFail(err)
			}
			return
		}
		if i := offset - t.base; i >= 0 && i < int64(len(t.pending)) {
			t.pending[i]--
		}
		t.trimLocked()
	}
}

// trimLocked drops the done records at the front.
func (t *tracker) trimLocked() {
	n := 0
	for n < len(t.pending) && t.pending[n] <= 0 {
		n++
	}
	if n > 0 {
		t.pending = append(t.pending[:0], t.pending[n:]...)
		t.base += int64(n)
	}
}

// committable returns the offset to commit (the next record to process
// after a restart) and the first write error, if any: after a failed write
// the offset stops moving, so the record is processed again.
func (t *tracker) committable() (int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.base, t.failed
}

// stalled returns the offset to commit and how long the first record not
// done has kept it from moving (0 with nothing pending), as seen by the
// calls to stalled: the producer retries an unanswered write for as long
// as the log is away, and this is what bounds the wait.
func (t *tracker) stalled(now time.Time) (int64, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending) == 0 || t.base != t.lastBase {
		t.movedAt, t.lastBase = now, t.base
	}
	return t.base, now.Sub(t.movedAt)
}

// idle reports whether every added record is done.
func (t *tracker) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending) == 0
}
