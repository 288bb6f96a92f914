package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/runnel-io/runnel/broker/storage/internal/vfs"
)

// Idempotent producers number their batches per partition; the log
// remembers, per producer id, its epoch and its last few batches, so that
// a retried batch is recognised and answered with the offsets it already
// got, and a gap in the sequence is refused. The state is rebuilt on open
// from a snapshot (written when a segment rolls and at a clean close) and
// the batch headers appended after it.

// Errors of idempotent appends.
var (
	// ErrOutOfOrderSequence: a batch's first sequence does not follow the
	// producer's last one.
	ErrOutOfOrderSequence = errors.New("out of order sequence number")
	// ErrInvalidProducerEpoch: a batch carries an epoch older than the
	// producer's current one (it is fenced).
	ErrInvalidProducerEpoch = errors.New("invalid producer epoch")
)

// producerBatches is how many recent batches per producer are remembered
// for duplicate detection: Kafka producers keep at most five requests in
// flight per connection when idempotent.
const producerBatches = 5

type batchMeta struct {
	FirstSeq int32 `json:"first_seq"`
	LastSeq  int32 `json:"last_seq"`
	FirstOff int64 `json:"first_offset"`
	LastOff  int64 `json:"last_offset"`
}

type producerEntry struct {
	ID      int64       `json:"id"`
	Epoch   int16       `json:"epoch"`
	Batches []batchMeta `json:"batches"` // oldest first, at most producerBatches
}

// producerState is a partition's idempotence bookkeeping; guarded by the
// partition's lock.
type producerState map[int64]*producerEntry

func nextSeq(seq int32) int32 {
	if seq == math.MaxInt32 {
		return 0
	}
	return seq + 1
}

func lastSeqOf(h BatchHeader) int32 {
	// Sequences wrap at MaxInt32, like offsets deltas added to them.
	return int32((int64(h.BaseSequence) + int64(h.LastOffsetDelta)) % (math.MaxInt32 + 1))
}

// check decides what to do with an idempotent batch: append it (nil, nil),
// answer it as a duplicate of an earlier one (meta, nil), or refuse it.
func (ps producerState) check(h BatchHeader) (*batchMeta, error) {
	e, ok := ps[h.ProducerID]
	if !ok {
		// An unknown producer (new, or one whose state expired) may start
		// at any sequence, as in Kafka since KIP-360.
		return nil, nil
	}
	switch {
	case h.ProducerEpoch < e.Epoch:
		return nil, fmt.Errorf("%w: producer %d sent epoch %d, current is %d", ErrInvalidProducerEpoch, h.ProducerID, h.ProducerEpoch, e.Epoch)
	case h.ProducerEpoch > e.Epoch:
		if h.BaseSequence != 0 {
			return nil, fmt.Errorf("%w: producer %d began epoch %d at sequence %d, not 0", ErrOutOfOrderSequence, h.ProducerID, h.ProducerEpoch, h.BaseSequence)
		}
		return nil, nil
	}
	last := lastSeqOf(h)
	for i := range e.Batches {
		if b := &e.Batches[i]; b.FirstSeq == h.BaseSequence && b.LastSeq == last {
			return b, nil
		}
	}
	if n := len(e.Batches); n > 0 && h.BaseSequence != nextSeq(e.Batches[n-1].LastSeq) {
		return nil, fmt.Errorf("%w: producer %d epoch %d sent sequence %d, expected %d", ErrOutOfOrderSequence, h.ProducerID, h.ProducerEpoch, h.BaseSequence, nextSeq(e.Batches[n-1].LastSeq))
	}
	return nil, nil
}

// checkEpoch refuses a batch without a sequence (a marker, or a
// transactional batch of the group coordinator) whose epoch is older than
// the producer's.
func (ps producerState) checkEpoch(h BatchHeader) error {
	if e, ok := ps[h.ProducerID]; ok && h.ProducerEpoch < e.Epoch {
		return fmt.Errorf("%w: producer %d sent epoch %d, current is %d", ErrInvalidProducerEpoch, h.ProducerID, h.ProducerEpoch, e.Epoch)
	}
	return nil
}

// update records an appended batch (its header carries its offsets). A
// transactional batch without a sequence, or a marker, records only the
// epoch: a newer one fences the older, as a new epoch of an idempotent
// producer does.
func (ps producerState) update(h BatchHeader) {
	if h.ProducerID < 0 || (h.BaseSequence < 0 && !h.Transactional()) {
		return
	}
	e, ok := ps[h.ProducerID]
	if !ok || h.ProducerEpoch > e.Epoch {
		e = &producerEntry{ID: h.ProducerID, Epoch: h.ProducerEpoch}
		ps[h.ProducerID] = e
	}
	if h.BaseSequence < 0 {
		return
	}
	if len(e.Batches) == producerBatches {
		e.Batches = append(e.Batches[:0], e.Batches[1:]...)
	}
	e.Batches = append(e.Batches, batchMeta{FirstSeq: h.BaseSequence, LastSeq: lastSeqOf(h), FirstOff: h.BaseOffset, LastOff: h.LastOffset()})
}

// producerSnapshot is the file <partition>/producer-state: the state as of
// Offset (every batch below it applied).
type producerSnapshot struct {
	Offset    int64            `json:"offset"`
	Producers []*producerEntry `json:"producers"`
}

const producerSnapshotFile = "producer-state"

// writeProducerSnapshot persists the state as of offset. Call with p.mu
// held, so the state and the offset agree.
func (p *Partition) writeProducerSnapshotLocked() error {
	snap := producerSnapshot{Offset: p.leo}
	for _, e := range p.producers {
		snap.Producers = append(snap.Producers, e)
	}
	b, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	if err := vfs.WriteFileAtomic(p.log.fs, filepath.Join(p.dir, producerSnapshotFile), b); err != nil {
		return fmt.Errorf("write producer state snapshot: %w", err)
	}
	return nil
}

// loadProducerState rebuilds the state after open: from the snapshot if
// it is usable (not past the log end after a truncated tail), then from
// the headers of every batch after it.
func (p *Partition) loadProducerState() error {
	p.producers = producerState{}
	p.txns = newTxnState()
	from := int64(-1)
	b, err := vfs.ReadFile(p.log.fs, filepath.Join(p.dir, producerSnapshotFile))
	switch {
	case err == nil:
		var snap producerSnapshot
		if jerr := json.Unmarshal(b, &snap); jerr != nil || snap.Offset > p.leo {
			p.log.logger.Warn("ignoring producer state snapshot", "partition", p.String(), "snapshot_offset", snap.Offset, "log_end_offset", p.leo, "err", jerr)
			break
		}
		for _, e := range snap.Producers {
			p.producers[e.ID] = e
		}
		from = snap.Offset
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("read producer state snapshot: %w", err)
	}
	for _, v := range p.viewsFromLocked(max(from, 0)) {
		sc := newBatchScanner(v.s.f, v.ix.lookup(from), v.size)
		for sc.next() {
			if sc.h.BaseOffset >= from {
				p.producers.update(sc.h)
			}
			sc.advance()
		}
		if sc.err != nil {
			return fmt.Errorf("rebuild producer state: %w", sc.err)
		}
	}
	return nil
}
