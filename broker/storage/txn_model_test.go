package storage

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnModel is what the transaction rules say a partition holds, kept
// independently of the log: fed by the operations a test makes, or by a
// scan of the batches a log holds.
type txnModel struct {
	epoch   map[int64]int16
	open    map[int64]int64
	aborted []AbortedTxn // in marker order
}

func newTxnModel() *txnModel {
	return &txnModel{epoch: map[int64]int16{}, open: map[int64]int64{}}
}

// batch applies an appended batch's header (and, for a marker, whether it
// commits).
func (m *txnModel) batch(h BatchHeader, commit bool) {
	if h.ProducerID < 0 || (!h.Transactional() && h.BaseSequence < 0) {
		return
	}
	if e, ok := m.epoch[h.ProducerID]; !ok || h.ProducerEpoch > e {
		m.epoch[h.ProducerID] = h.ProducerEpoch
	}
	if !h.Transactional() {
		return
	}
	first, open := m.open[h.ProducerID]
	switch {
	case h.Control() && open:
		delete(m.open, h.ProducerID)
		if !commit {
			m.aborted = append(m.aborted, AbortedTxn{h.ProducerID, first, h.BaseOffset})
		}
	case !h.Control() && !open:
		m.open[h.ProducerID] = h.BaseOffset
	}
}

// fenced says whether a batch at epoch of pid is refused.
func (m *txnModel) fenced(pid int64, epoch int16) bool {
	e, ok := m.epoch[pid]
	return ok && epoch < e
}

func (m *txnModel) lso(hw int64) int64 {
	lso := hw
	for _, f := range m.open {
		lso = min(lso, f)
	}
	return lso
}

func (m *txnModel) ongoing() []OngoingTxn {
	var out []OngoingTxn
	for pid, f := range m.open {
		out = append(out, OngoingTxn{pid, m.epoch[pid], f})
	}
	slices.SortFunc(out, func(a, b OngoingTxn) int { return cmp.Compare(a.FirstOffset, b.FirstOffset) })
	return out
}

func (m *txnModel) abortedIn(from, to int64) []AbortedTxn {
	var out []AbortedTxn
	for _, a := range m.aborted {
		if a.LastOffset >= from && a.FirstOffset < to {
			out = append(out, a)
		}
	}
	slices.SortStableFunc(out, func(a, b AbortedTxn) int { return cmp.Compare(a.FirstOffset, b.FirstOffset) })
	return out
}

// scanTxnModel builds the model from every batch the partition serves,
// decoding markers with kmsg.
func scanTxnModel(t testing.TB, p *Partition) *txnModel {
	t.Helper()
	m := newTxnModel()
	for next := p.LogStartOffset(); next < p.HighWatermark(); {
		r, err := p.Read(next, 1, -1)
		if err != nil {
			t.Fatalf("%s: read at %d: %v", p, next, err)
		}
		b, err := r.AppendTo(nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			break
		}
		h, recs, err := DecodeRecords(b)
		if err != nil {
			t.Fatalf("%s: batch at %d: %v", p, next, err)
		}
		commit := false
		if h.Control() {
			var key kmsg.ControlRecordKey
			if err := key.ReadFrom(recs[0].Key); err != nil {
				t.Fatalf("marker at %d: %v", h.BaseOffset, err)
			}
			commit = key.Type == kmsg.ControlRecordKeyTypeCommit
		}
		m.batch(h, commit)
		next = h.LastOffset() + 1
	}
	return m
}

// checkTxnState compares the partition with the model.
func checkTxnState(t testing.TB, what string, p *Partition, m *txnModel) {
	t.Helper()
	hw, leo := p.HighWatermark(), p.LogEndOffset()
	if got, want := p.LastStableOffset(), m.lso(hw); got != want {
		t.Fatalf("%s: LSO %d, want %d", what, got, want)
	}
	if got, want := p.OngoingTransactions(), m.ongoing(); !slices.Equal(got, want) {
		t.Fatalf("%s: ongoing %v, want %v", what, got, want)
	}
	if got, want := p.AbortedTransactions(0, leo+1), m.abortedIn(0, leo+1); !slices.Equal(got, want) {
		t.Fatalf("%s: aborted %v, want %v", what, got, want)
	}
	for from := int64(0); from <= leo; from += max(1, leo/7) {
		for _, to := range []int64{from + 1, from + 5, leo} {
			if got, want := p.AbortedTransactions(from, to), m.abortedIn(from, to); !slices.Equal(got, want) {
				t.Fatalf("%s: aborted in [%d, %d) %v, want %v", what, from, to, got, want)
			}
		}
	}
}

// Random transactional traffic from several producers, across segment
// rolls and reopens of every kind, checked after every step against the
// model fed by the same operations, and after every reopen against a
// model built from the batches alone.
func TestTxnStateProperty(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 12))
	rounds := 6
	if testing.Short() {
		rounds = 3
	}
	for round := range rounds {
		dir := t.TempDir()
		l := openLog(t, dir, Options{Durability: DurabilityAlways})
		mustCreate(t, l, "t", 1, map[string]string{ConfigSegmentBytes: fmt.Sprint(300 + rng.IntN(700))})
		p, _ := l.Partition("t", 0)
		m := newTxnModel()
		const producers = 4
		epochs := make([]int16, producers)
		seqs := make([]int32, producers)
		for step := range 300 {
			what := fmt.Sprintf("round %d step %d", round, step)
			pid := int64(rng.IntN(producers))
			epoch := epochs[pid]
			if rng.IntN(10) == 0 && epoch > 0 {
				epoch-- // a zombie
			}
			var b []byte
			var isMarker, commit bool
			switch op := rng.IntN(10); {
			case op < 4:
				b = txnBatch(t, pid, epoch, 1+rng.IntN(3))
			case op < 6:
				if epoch != epochs[pid] {
					continue // a stale sequenced batch is refused by the sequence checks' own tests
				}
				n := 1 + rng.IntN(3)
				b = seqTxnBatch(t, pid, epoch, seqs[pid], n)
				seqs[pid] += int32(n)
			case op < 7:
				b = mustBatch(t, 1, kv("plain", "x"))
			default:
				isMarker, commit = true, rng.IntN(2) == 0
				if rng.IntN(4) == 0 {
					epoch = epochs[pid] + 1 // the coordinator bumps the epoch
				}
			}
			if isMarker {
				leo := p.LogEndOffset()
				off, err := p.AppendMarker(pid, epoch, commit, 0)
				if m.fenced(pid, epoch) {
					wantErr(t, err, ErrInvalidProducerEpoch, what+": stale marker")
					continue
				}
				if err != nil || off != leo {
					t.Fatalf("%s: marker at %d (log end %d): %v", what, off, leo, err)
				}
				if epoch > epochs[pid] {
					epochs[pid], seqs[pid] = epoch, 0
				}
				m.batch(BatchHeader{BaseOffset: off, Attributes: attrTransactional | attrControl, ProducerID: pid, ProducerEpoch: epoch, BaseSequence: -1}, commit)
			} else {
				h, _ := ParseBatchHeader(b)
				res, err := p.Append(b)
				if h.ProducerID >= 0 && m.fenced(h.ProducerID, h.ProducerEpoch) {
					wantErr(t, err, ErrInvalidProducerEpoch, what+": zombie batch")
					continue
				}
				if err != nil {
					t.Fatalf("%s: append: %v", what, err)
				}
				h.BaseOffset = res.BaseOffset
				m.batch(h, false)
			}
			checkTxnState(t, what, p, m)
			if rng.IntN(40) == 0 {
				l = reopenTxnLog(t, l, rng)
				p, _ = l.Partition("t", 0)
				checkTxnState(t, what+" after reopen", p, m)
				checkTxnState(t, what+" after reopen, against a scan", p, scanTxnModel(t, p))
			}
		}
	}
}

// reopenTxnLog closes l and opens it again in one of the ways a restart
// finds it: clean, after a crash, after a crash that lost the producer
// snapshot, or the txn indexes too.
func reopenTxnLog(t *testing.T, l *Log, rng *rand.Rand) *Log {
	t.Helper()
	dir := l.Dir()
	switch rng.IntN(4) {
	case 0:
		l.Close()
	case 1:
		crashCopy(t, l)
	case 2:
		crashCopy(t, l)
		removeSnapshot(t, dir)
	case 3:
		crashCopy(t, l)
		if rng.IntN(2) == 0 {
			removeSnapshot(t, dir)
		}
		files, _ := filepath.Glob(filepath.Join(dir, "topics", "t", "0", "*"+txnIndexSuffix))
		for _, f := range files {
			if rng.IntN(2) == 0 {
				os.Remove(f)
			}
		}
	}
	return openLog(t, dir, Options{Durability: DurabilityAlways})
}
