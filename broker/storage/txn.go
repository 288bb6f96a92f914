package storage

import (
	"cmp"
	"fmt"
	"slices"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Transactions as the log sees them (Kafka's KIP-98). A producer's
// transactional data batches (attribute bit 4) are written like any other;
// the first one on a partition opens the producer's transaction there, at
// its base offset. A control batch (bits 4 and 5: a marker), written by
// the transaction coordinator through AppendMarker, ends it: commit or
// abort. The log keeps:
//   - the ongoing transactions (producer id -> first offset), which bound
//     the last stable offset (LSO): a read_committed consumer reads only
//     below it, so it never sees data whose fate is undecided;
//   - per segment, the aborted transactions whose abort marker the segment
//     holds (producer id, first offset, marker offset): the list a fetch at
//     read_committed returns, so that the consumer drops their records.
//
// A transaction is ongoing, for the LSO, until its marker is durable (below
// the high watermark): a marker that a crash could take back must not have
// let a consumer read past the transaction's first offset. The LSO therefore
// moves only when the high watermark does, and Changed serves for both.
//
// Persistence: ongoing transactions go in the producer-state snapshot (as of
// its offset); each segment's aborted transactions go in its .txnindex file,
// written when the segment closes (see txnindex.go). Recovery rebuilds both
// from those and a scan of the batches after them (loadProducerState).

// AbortedTxn is an aborted transaction of one producer on one partition: its
// records lie in [FirstOffset, LastOffset), and LastOffset is its abort
// marker's offset.
type AbortedTxn struct{ ProducerID, FirstOffset, LastOffset int64 }

// OngoingTxn is a transaction with data on the partition and no marker yet.
type OngoingTxn struct {
	ProducerID  int64
	Epoch       int16
	FirstOffset int64
}

// closingTxn is a transaction whose marker is written but not yet durable.
type closingTxn struct{ pid, first, marker int64 }

// txnState is a partition's transaction bookkeeping; guarded by the
// partition's lock.
type txnState struct {
	open    map[int64]int64 // producer id -> first offset of its ongoing transaction
	closing []closingTxn    // in marker order
}

func newTxnState() txnState { return txnState{open: map[int64]int64{}} }

// data records a transactional data batch just appended.
func (ts *txnState) data(h BatchHeader) {
	if _, ok := ts.open[h.ProducerID]; !ok {
		ts.open[h.ProducerID] = h.BaseOffset
	}
}

// end records a marker of producer pid at offset marker, returning the first
// offset of the transaction it ends, or false if none was open (a repeated
// marker, which ends nothing).
func (ts *txnState) end(pid, marker int64) (first int64, ok bool) {
	first, ok = ts.open[pid]
	if ok {
		delete(ts.open, pid)
		ts.closing = append(ts.closing, closingTxn{pid: pid, first: first, marker: marker})
	}
	return first, ok
}

// durable forgets the closing transactions whose markers are below hw.
func (ts *txnState) durable(hw int64) {
	ts.closing = slices.DeleteFunc(ts.closing, func(c closingTxn) bool { return c.marker < hw })
}

// lso is the last stable offset under high watermark hw.
func (ts *txnState) lso(hw int64) int64 {
	lso := hw
	for _, first := range ts.open {
		lso = min(lso, first)
	}
	for _, c := range ts.closing {
		if c.marker >= hw {
			lso = min(lso, c.first)
		}
	}
	return lso
}

// markerBatch encodes the control batch Kafka writes to end a transaction:
// one record, key {version 0, type 0 abort | 1 commit}, value {version 0,
// coordinator epoch}, sequence -1.
func markerBatch(pid int64, epoch int16, commit bool, coordinatorEpoch int32, ts int64) ([]byte, error) {
	key := kmsg.NewControlRecordKey()
	key.Type = kmsg.ControlRecordKeyTypeAbort
	if commit {
		key.Type = kmsg.ControlRecordKeyTypeCommit
	}
	val := kmsg.NewEndTxnMarker()
	val.CoordinatorEpoch = coordinatorEpoch
	h := BatchHeader{
		LeaderEpoch:   -1,
		Attributes:    attrTransactional | attrControl,
		BaseTimestamp: ts,
		MaxTimestamp:  ts,
		ProducerID:    pid,
		ProducerEpoch: epoch,
		BaseSequence:  -1,
	}
	return EncodeBatch(h, []Record{{Key: key.AppendTo(nil), Value: val.AppendTo(nil)}})
}

// markerType reads a control batch (whole, as stored) and tells whether it
// is a commit marker. ok is false for control records that end no
// transaction (Kafka defines others, which the log never writes).
func markerType(b []byte) (commit, ok bool, err error) {
	_, recs, err := DecodeRecords(b)
	if err != nil {
		return false, false, err
	}
	if len(recs) == 0 {
		return false, false, nil
	}
	var key kmsg.ControlRecordKey
	if err := key.ReadFrom(recs[0].Key); err != nil {
		return false, false, fmt.Errorf("%w: control record key: %w", ErrInvalidBatch, err)
	}
	switch key.Type {
	case kmsg.ControlRecordKeyTypeCommit:
		return true, true, nil
	case kmsg.ControlRecordKeyTypeAbort:
		return false, true, nil
	}
	return false, false, nil
}

// NewTxnBatch encodes an uncompressed transactional batch of producer pid at
// epoch with sequence -1 (no idempotence check), as the group coordinator
// writes TxnOffsetCommit records to __consumer_offsets. Records are numbered
// as NewBatch numbers them.
func NewTxnBatch(pid int64, epoch int16, ts int64, recs ...Record) ([]byte, error) {
	b, err := NewBatch(CompressionNone, ts, recs...)
	if err != nil {
		return nil, fmt.Errorf("new transactional batch: %w", err)
	}
	h, err := ParseBatchHeader(b)
	if err != nil {
		return nil, fmt.Errorf("new transactional batch: %w", err)
	}
	// The numbered records are in b; re-encode them with the producer's
	// fields rather than patching bytes the CRC covers.
	_, numbered, err := DecodeRecords(b)
	if err != nil {
		return nil, fmt.Errorf("new transactional batch: %w", err)
	}
	h.Attributes |= attrTransactional
	h.ProducerID, h.ProducerEpoch, h.BaseSequence = pid, epoch, -1
	out, err := EncodeBatch(h, numbered)
	if err != nil {
		return nil, fmt.Errorf("new transactional batch: %w", err)
	}
	return out, nil
}

// AppendMarker appends one control batch (Kafka's format: key {version 0,
// type 0 abort | 1 commit}, value {version 0, coordinator epoch}) ending
// producer pid's transaction on this partition. An epoch older than the
// producer's epoch known here is refused with an error wrapping
// ErrInvalidProducerEpoch; a newer one becomes the producer's epoch, fencing
// batches of older ones. A marker for a producer with no ongoing transaction
// here is written and harmless (the coordinator's recovery may repeat
// markers). Durability is as for Append: callers WaitDurable on the returned
// offset; the LSO passes the transaction only once the marker is durable.
func (p *Partition) AppendMarker(pid int64, epoch int16, commit bool, coordinatorEpoch int32) (offset int64, err error) {
	if pid < 0 {
		return 0, fmt.Errorf("append marker to %s: %w: producer id %d", p, ErrInvalidBatch, pid)
	}
	b, err := markerBatch(pid, epoch, commit, coordinatorEpoch, p.log.now().UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("append marker to %s: %w", p, err)
	}
	h, err := ParseBatchHeader(b)
	if err != nil {
		return 0, fmt.Errorf("append marker to %s: %w", p, err)
	}
	res, err := p.append(b, []BatchHeader{h}, &marker{commit: commit})
	if err != nil {
		return 0, err
	}
	return res.BaseOffset, nil
}

// marker describes the control batch an append writes (AppendMarker).
type marker struct{ commit bool }

// LastStableOffset returns the offset below which every transaction is
// decided durably: the high watermark, or the first offset of the earliest
// transaction that is ongoing or whose marker is not yet durable, whichever
// is lower. read_committed consumers read only below it.
func (p *Partition) LastStableOffset() int64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.txns.lso(p.hw)
}

// AbortedTransactions lists the aborted transactions that overlap offsets
// [from, to), in first-offset order: what a fetch at isolation level 1
// returns as AbortedTransactions for data read from from up to to.
func (p *Partition) AbortedTransactions(from, to int64) []AbortedTxn {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []AbortedTxn
	// An entry overlaps when its marker is at or after from and its first
	// offset before to; markers at or after from are in the segments that
	// end after from.
	i := sort.Search(len(p.segs), func(i int) bool { return p.segs[i].next > from })
	for _, s := range p.segs[i:] {
		if s.minFirst >= to {
			continue
		}
		for _, a := range s.aborted {
			if a.LastOffset >= from && a.FirstOffset < to {
				out = append(out, a)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b AbortedTxn) int { return cmp.Compare(a.FirstOffset, b.FirstOffset) })
	return out
}

// OngoingTransactions lists the transactions with data on the partition and
// no marker yet, in first-offset order. (A transaction whose marker is
// written but not yet durable is not listed, though it still holds the LSO.)
func (p *Partition) OngoingTransactions() []OngoingTxn {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]OngoingTxn, 0, len(p.txns.open))
	for pid, first := range p.txns.open {
		t := OngoingTxn{ProducerID: pid, FirstOffset: first, Epoch: -1}
		if e := p.producers[pid]; e != nil {
			t.Epoch = e.Epoch
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b OngoingTxn) int { return cmp.Compare(a.FirstOffset, b.FirstOffset) })
	return out
}

// addAborted records an aborted transaction whose marker s holds.
func (s *segment) addAborted(a AbortedTxn) {
	if len(s.aborted) == 0 || a.FirstOffset < s.minFirst {
		s.minFirst = a.FirstOffset
	}
	s.aborted = append(s.aborted, a)
}
