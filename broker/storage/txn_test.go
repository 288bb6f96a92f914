package storage

import (
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnBatch builds a transactional batch of n records of producer pid at
// epoch, sequence -1, as the group coordinator writes them.
func txnBatch(t testing.TB, pid int64, epoch int16, n int) []byte {
	t.Helper()
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = kv(fmt.Sprintf("k%d", i), fmt.Sprintf("p%d e%d r%d", pid, epoch, i))
	}
	b, err := NewTxnBatch(pid, epoch, 1, recs...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seqTxnBatch builds a transactional batch as a client's transactional
// producer does: with sequence numbers.
func seqTxnBatch(t *testing.T, pid int64, epoch int16, seq int32, n int) []byte {
	t.Helper()
	b := idemBatch(t, pid, epoch, seq, n)
	h, recs, err := DecodeRecords(b)
	if err != nil {
		t.Fatal(err)
	}
	h.Attributes |= attrTransactional
	if b, err = EncodeBatch(h, recs); err != nil {
		t.Fatal(err)
	}
	return b
}

func mustMarker(t testing.TB, p *Partition, pid int64, epoch int16, commit bool) int64 {
	t.Helper()
	off, err := p.AppendMarker(pid, epoch, commit, 3)
	if err != nil {
		t.Fatalf("marker of producer %d: %v", pid, err)
	}
	return off
}

func TestNewTxnBatch(t *testing.T) {
	b, err := NewTxnBatch(42, 7, 1000, kv("a", "1"), kv("b", "2"))
	if err != nil {
		t.Fatal(err)
	}
	h, recs, err := DecodeRecords(b)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Transactional() || h.Control() || h.ProducerID != 42 || h.ProducerEpoch != 7 || h.BaseSequence != -1 || h.Compression() != CompressionNone {
		t.Fatalf("header %+v: want transactional, not control, producer 42 epoch 7, sequence -1, uncompressed", h)
	}
	if len(recs) != 2 || recs[1].OffsetDelta != 1 || string(recs[1].Value) != "2" || h.BaseTimestamp != 1000 {
		t.Fatalf("records %+v, header %+v", recs, h)
	}
}

// The marker is Kafka's control batch: key {0, type}, value {0,
// coordinator epoch}, read here with kmsg, an independent decoder.
func TestMarkerFormat(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{Durability: DurabilityAlways})
	p := mustCreate(t, l, "t", 1, nil).Partition(0)
	mustAppend(t, p, txnBatch(t, 5, 2, 1))
	off := mustMarker(t, p, 5, 2, true)
	hdrs, recs := readAll(t, p, off)
	if len(hdrs) != 1 || !hdrs[0].Control() || !hdrs[0].Transactional() || hdrs[0].ProducerID != 5 || hdrs[0].ProducerEpoch != 2 || hdrs[0].BaseSequence != -1 {
		t.Fatalf("marker header %+v", hdrs)
	}
	r, err := p.Read(off, 1<<20, -1)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := r.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, decoded, err := DecodeRecords(raw)
	if err != nil {
		t.Fatal(err)
	}
	var key kmsg.ControlRecordKey
	var val kmsg.EndTxnMarker
	if err := key.ReadFrom(decoded[0].Key); err != nil || key.Version != 0 || key.Type != kmsg.ControlRecordKeyTypeCommit {
		t.Fatalf("control key %+v: %v", key, err)
	}
	if err := val.ReadFrom(decoded[0].Value); err != nil || val.Version != 0 || val.CoordinatorEpoch != 3 {
		t.Fatalf("marker value %+v: %v", val, err)
	}
	if len(recs) != 1 {
		t.Fatalf("%d records in the marker batch", len(recs))
	}
}

func TestAppendRefusesControlBatches(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{Durability: DurabilityAlways})
	p := mustCreate(t, l, "t", 1, nil).Partition(0)
	b, err := markerBatch(1, 0, true, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Append(b)
	wantErr(t, err, ErrInvalidBatch, "a control batch through Append")
	if p.LogEndOffset() != 0 {
		t.Fatal("the control batch was written")
	}
}

func TestLastStableOffsetAndAbortedTransactions(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{Durability: DurabilityAlways})
	p := mustCreate(t, l, "t", 1, nil).Partition(0)
	lso := func(want int64, what string) {
		t.Helper()
		if got := p.LastStableOffset(); got != want {
			t.Fatalf("%s: LSO %d, want %d (HW %d)", what, got, want, p.HighWatermark())
		}
	}
	mustAppend(t, p, mustBatch(t, 1, kv("plain", "0"))) // 0
	lso(1, "no transaction")
	mustAppend(t, p, txnBatch(t, 1, 0, 2))              // 1-2: producer 1 opens at 1
	mustAppend(t, p, seqTxnBatch(t, 2, 0, 0, 1))        // 3: producer 2 opens at 3
	mustAppend(t, p, txnBatch(t, 1, 0, 1))              // 4
	mustAppend(t, p, mustBatch(t, 1, kv("plain", "5"))) // 5
	lso(1, "two open")
	if got, want := p.OngoingTransactions(), []OngoingTxn{{1, 0, 1}, {2, 0, 3}}; !slices.Equal(got, want) {
		t.Fatalf("ongoing %v, want %v", got, want)
	}
	if off := mustMarker(t, p, 1, 0, false); off != 6 { // abort 1-6
		t.Fatalf("marker at %d", off)
	}
	lso(3, "producer 1 aborted")
	mustAppend(t, p, seqTxnBatch(t, 2, 0, 1, 1)) // 7
	mustMarker(t, p, 2, 0, true)                 // 8 commits 3-8
	lso(9, "all decided")
	if len(p.OngoingTransactions()) != 0 {
		t.Fatalf("ongoing %v after both markers", p.OngoingTransactions())
	}
	mustAppend(t, p, txnBatch(t, 1, 0, 1)) // 9: producer 1 opens again
	lso(9, "producer 1 again")
	mustMarker(t, p, 1, 0, false) // 10 aborts 9-10
	mustMarker(t, p, 1, 0, false) // 11: nothing open, harmless
	lso(12, "a repeated marker")

	a1, a2 := AbortedTxn{1, 1, 6}, AbortedTxn{1, 9, 10}
	for _, c := range []struct {
		from, to int64
		want     []AbortedTxn
	}{
		{0, 12, []AbortedTxn{a1, a2}},
		{0, 1, nil},
		{0, 2, []AbortedTxn{a1}},
		{6, 7, []AbortedTxn{a1}},
		{7, 9, nil},
		{7, 10, []AbortedTxn{a2}},
		{11, 12, nil},
	} {
		if got := p.AbortedTransactions(c.from, c.to); !slices.Equal(got, c.want) {
			t.Errorf("aborted in [%d, %d): %v, want %v", c.from, c.to, got, c.want)
		}
	}
}

// A marker at a newer epoch fences the producer's older epoch, for
// transactional batches and markers alike; an older marker is refused.
func TestMarkerFencesEpoch(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{Durability: DurabilityAlways})
	p := mustCreate(t, l, "t", 1, nil).Partition(0)
	mustAppend(t, p, txnBatch(t, 9, 3, 1))
	_, err := p.Append(txnBatch(t, 9, 2, 1))
	wantErr(t, err, ErrInvalidProducerEpoch, "transactional batch at an older epoch")
	mustMarker(t, p, 9, 4, false) // the coordinator aborts with a bumped epoch
	leo := p.LogEndOffset()
	_, err = p.Append(txnBatch(t, 9, 3, 1))
	wantErr(t, err, ErrInvalidProducerEpoch, "transactional batch of the fenced epoch")
	_, err = p.Append(seqTxnBatch(t, 9, 3, 1, 1))
	wantErr(t, err, ErrInvalidProducerEpoch, "sequenced batch of the fenced epoch")
	_, err = p.AppendMarker(9, 3, true, 0)
	wantErr(t, err, ErrInvalidProducerEpoch, "marker of the fenced epoch")
	if p.LogEndOffset() != leo {
		t.Fatal("a fenced batch was written")
	}
	mustAppend(t, p, seqTxnBatch(t, 9, 4, 0, 1))
	mustMarker(t, p, 9, 4, true)
	if lso, hw := p.LastStableOffset(), p.HighWatermark(); lso != hw {
		t.Fatalf("LSO %d, HW %d", lso, hw)
	}
}

// The LSO passes a transaction only once its marker is durable.
func TestLSOMovesOnlyWhenMarkerDurable(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{Durability: DurabilityAlways})
	p := mustCreate(t, l, "t", 1, nil).Partition(0)
	mustAppend(t, p, mustBatch(t, 1, kv("a", "b")))
	mustAppend(t, p, txnBatch(t, 1, 0, 2))
	if lso := p.LastStableOffset(); lso != 1 {
		t.Fatalf("LSO %d, want 1", lso)
	}
	changed := p.Changed()
	// Holding syncMu stops the marker's append between its write and its
	// sync.
	p.syncMu.Lock()
	done := make(chan error, 1)
	go func() { _, err := p.AppendMarker(1, 0, true, 0); done <- err }()
	waitUntil(t, "the marker is written", func() bool { return p.LogEndOffset() == 4 })
	if lso := p.LastStableOffset(); lso != 1 {
		p.syncMu.Unlock()
		t.Fatalf("LSO %d before the marker is durable, want 1", lso)
	}
	p.syncMu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-changed // the LSO moved with the high watermark
	if lso := p.LastStableOffset(); lso != 4 {
		t.Fatalf("LSO %d after the marker is durable, want 4", lso)
	}
}

// Aborted transactions land in the segment of their marker, across rolls;
// each closed segment's .txnindex holds its list, and a clean reopen
// serves the same state without scanning.
func TestAbortedIndexAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{Durability: DurabilityAlways})
	mustCreate(t, l, "t", 1, map[string]string{ConfigSegmentBytes: "400"})
	p, _ := l.Partition("t", 0)
	m := newTxnModel()
	app := func(b []byte) {
		h, _ := ParseBatchHeader(b)
		h.BaseOffset = mustAppend(t, p, b).BaseOffset
		m.batch(h, false)
	}
	mark := func(pid int64, commit bool) {
		off := mustMarker(t, p, pid, 0, commit)
		m.batch(BatchHeader{BaseOffset: off, Attributes: attrTransactional | attrControl, ProducerID: pid, BaseSequence: -1}, commit)
	}
	// Producer 1's transactions span segments; producer 2 interleaves.
	for i := range 12 {
		app(txnBatch(t, 1, 0, 2))
		app(txnBatch(t, 2, 0, 1))
		app(txnBatch(t, 1, 0, 2))
		mark(1, i%3 != 0)
		if i%2 == 1 {
			mark(2, i%4 == 1)
		}
	}
	app(txnBatch(t, 3, 0, 1)) // left open
	p.mu.RLock()
	nsegs := len(p.segs)
	var perSeg [][]AbortedTxn
	for _, s := range p.segs[:len(p.segs)-1] {
		perSeg = append(perSeg, slices.Clone(s.aborted))
		b, err := os.ReadFile(s.txnIndexPath())
		if err != nil {
			p.mu.RUnlock()
			t.Fatalf("closed segment %s has no txn index: %v", s.path, err)
		}
		covered, entries, err := decodeTxnIndex(b)
		if err != nil || covered != s.next || !slices.Equal(entries, s.aborted) {
			p.mu.RUnlock()
			t.Fatalf("txn index of %s: covered %d entries %v (%v), want %d and %v", s.path, covered, entries, err, s.next, s.aborted)
		}
	}
	p.mu.RUnlock()
	if nsegs < 4 || len(m.aborted) < 6 {
		t.Fatalf("%d segments, %d aborted transactions: the test wants several of each", nsegs, len(m.aborted))
	}
	spanning := false
	for _, a := range m.aborted {
		s1, s2 := segIndexOf(p, a.FirstOffset), segIndexOf(p, a.LastOffset)
		spanning = spanning || s1 != s2
	}
	if !spanning {
		t.Fatal("no aborted transaction spans a segment roll")
	}
	checkTxnState(t, "before reopen", p, m)
	l.Close()
	l = openLog(t, dir, Options{Durability: DurabilityAlways})
	p, _ = l.Partition("t", 0)
	checkTxnState(t, "after a clean reopen", p, m)
	p.mu.RLock()
	for i, s := range p.segs[:len(perSeg)] {
		if !slices.Equal(s.aborted, perSeg[i]) {
			t.Errorf("segment %d after reopen: %v, want %v", i, s.aborted, perSeg[i])
		}
	}
	p.mu.RUnlock()
}

func segIndexOf(p *Partition, off int64) int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for i, s := range p.segs {
		if off < s.next {
			return i
		}
	}
	return len(p.segs)
}

// A torn tail that loses a marker reopens its transaction: recovery gives
// the state of the log that survived, exactly.
func TestRecoveryAfterLosingMarker(t *testing.T) {
	for _, c := range tailDamages {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, Options{Durability: DurabilityAlways})
			mustCreate(t, l, "t", 1, map[string]string{ConfigSegmentBytes: "500"})
			p, _ := l.Partition("t", 0)
			for range 5 {
				mustAppend(t, p, txnBatch(t, 1, 0, 3))
				mustAppend(t, p, txnBatch(t, 2, 0, 1))
				mustMarker(t, p, 2, 0, false)
				mustMarker(t, p, 1, 0, true)
			}
			first := mustAppend(t, p, txnBatch(t, 1, 0, 2)).BaseOffset
			mustAppend(t, p, txnBatch(t, 2, 0, 2))
			mustMarker(t, p, 2, 0, true)
			abort := mustMarker(t, p, 1, 0, false) // the batch the damage hits
			if got := p.AbortedTransactions(first, abort); len(got) != 1 || got[0] != (AbortedTxn{1, first, abort}) {
				t.Fatalf("aborted before the damage: %v", got)
			}
			p.mu.RLock()
			active := p.segs[len(p.segs)-1]
			path, lastPos, size := active.path, active.lastPos, active.size
			p.mu.RUnlock()
			crashCopy(t, l)
			c.damage(t, path, lastPos, size)
			l = openLog(t, dir, Options{Durability: DurabilityAlways})
			p, _ = l.Partition("t", 0)
			if p.LogEndOffset() != abort {
				t.Fatalf("log end %d after the damage, want %d", p.LogEndOffset(), abort)
			}
			checkTxnState(t, "after the damage", p, scanTxnModel(t, p))
			if lso := p.LastStableOffset(); lso != first {
				t.Fatalf("LSO %d, want %d: producer 1's transaction is open again", lso, first)
			}
			if got := p.OngoingTransactions(); len(got) != 1 || got[0].ProducerID != 1 || got[0].FirstOffset != first {
				t.Fatalf("ongoing %v", got)
			}
			// The coordinator's recovery repeats the marker.
			again := mustMarker(t, p, 1, 0, false)
			if got := p.AbortedTransactions(first, again); len(got) != 1 || got[0] != (AbortedTxn{1, first, again}) {
				t.Fatalf("aborted after the repeated marker: %v", got)
			}
		})
	}
}
