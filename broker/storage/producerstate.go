package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"

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
// Offset (every batch below it applied), with the transactions ongoing
// there.
type producerSnapshot struct {
	Offset       int64            `json:"offset"`
	Producers    []*producerEntry `json:"producers"`
	Transactions []snapshotTxn    `json:"transactions,omitempty"`
}

// snapshotTxn is an ongoing transaction in the snapshot.
type snapshotTxn struct {
	ProducerID  int64 `json:"producer_id"`
	FirstOffset int64 `json:"first_offset"`
}

const producerSnapshotFile = "producer-state"

// writeProducerSnapshot persists the state as of the log end offset. Call
// with p.mu held, so the state and the offset agree, and with everything
// below the log end durable: markers not yet durable are taken as decided.
func (p *Partition) writeProducerSnapshotLocked() error {
	snap := producerSnapshot{Offset: p.leo}
	for _, e := range p.producers {
		snap.Producers = append(snap.Producers, e)
	}
	for pid, first := range p.txns.open {
		snap.Transactions = append(snap.Transactions, snapshotTxn{ProducerID: pid, FirstOffset: first})
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

// loadProducerState rebuilds the producers' and transactions' state after
// open, and the segments' aborted-transaction lists:
//   - the producers' state from the snapshot if it is usable (not past the
//     log end after a truncated tail), then from the headers of every batch
//     after it;
//   - the aborted-transaction lists from the segments' txn indexes up to
//     the first offset they do not cover (gap), and from the markers the
//     scan finds from there;
//   - the ongoing transactions from the snapshot's and the scan's.
//
// The scan starts at the snapshot when the snapshot is at or below gap.
// Otherwise it starts at the first segment with no transaction known open
// and takes the snapshot's ongoing transactions when it reaches the
// snapshot's offset. Starting blind is sound for the aborted lists:
// a transaction open at the start shows itself by its first transactional
// batch in the log, and an abort entry from that batch on covers all of
// its records the log still holds.
func (p *Partition) loadProducerState() error {
	p.producers = producerState{}
	p.txns = newTxnState()
	from := int64(-1)
	var snapTxns map[int64]int64
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
		snapTxns = map[int64]int64{}
		for _, t := range snap.Transactions {
			snapTxns[t.ProducerID] = t.FirstOffset
		}
		from = snap.Offset
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("read producer state snapshot: %w", err)
	}
	gap := p.loadTxnIndexes()
	start := p.segs[0].base
	if snapTxns != nil && from <= gap {
		start, p.txns.open, snapTxns = from, snapTxns, nil
	}
	var body []byte
	for _, v := range p.viewsFromLocked(start) {
		sc := newBatchScanner(v.s.f, v.ix.lookup(start), v.size)
		for sc.next() {
			h := sc.h
			if h.BaseOffset < start {
				sc.advance()
				continue
			}
			if snapTxns != nil && h.BaseOffset >= from {
				p.txns.open, snapTxns = snapTxns, nil
			}
			if h.BaseOffset >= from {
				p.producers.update(h)
			}
			switch {
			case h.ProducerID < 0 || !h.Transactional():
			case h.Control():
				body = slices.Grow(body[:0], h.Size())[:h.Size()]
				_, rerr := v.s.f.ReadAt(body, sc.pos)
				commit, isMarker, err := false, false, rerr
				if err == nil {
					commit, isMarker, err = markerType(body)
				}
				if err != nil {
					// A closed segment's batches before its last index entry
					// are not checked at open; a damaged marker ends nothing.
					p.log.logger.Warn("unreadable control batch", "partition", p.String(), "offset", h.BaseOffset, "err", err)
					break
				}
				if !isMarker {
					break
				}
				if first, ok := p.txns.end(h.ProducerID, h.BaseOffset); ok && !commit && h.BaseOffset >= gap {
					v.s.addAborted(AbortedTxn{ProducerID: h.ProducerID, FirstOffset: first, LastOffset: h.BaseOffset})
				}
			default:
				p.txns.data(h)
			}
			sc.advance()
		}
		if sc.err != nil {
			return fmt.Errorf("rebuild producer state: %w", sc.err)
		}
	}
	if snapTxns != nil {
		p.txns.open = snapTxns
	}
	// Everything is durable after open.
	p.txns.closing = nil
	// Closed segments whose lists were rebuilt get their index back, so that
	// the next open need not scan them.
	var written bool
	for _, s := range p.segs[:len(p.segs)-1] {
		if s.next > gap {
			if err := s.writeTxnIndex(p.log.fs); err != nil {
				return err
			}
			written = true
		}
	}
	if written {
		if err := p.log.fs.SyncDir(p.dir); err != nil {
			return fmt.Errorf("sync directory: %w", err)
		}
	}
	return nil
}
