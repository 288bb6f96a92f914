package storage

import (
	"fmt"
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
