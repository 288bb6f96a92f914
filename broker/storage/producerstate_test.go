package storage

import (
	"fmt"
	"testing"

	"github.com/runnel-io/runnel/broker/storage/internal/vfs"
)

func idemBatch(t *testing.T, pid int64, epoch int16, seq int32, n int) []byte {
	t.Helper()
	var recs []Record
	for i := range n {
		recs = append(recs, Record{OffsetDelta: int32(i), Key: []byte("k"), Value: fmt.Appendf(nil, "p%d e%d s%d", pid, epoch, int(seq)+i)})
	}
	b, err := NewBatch(CompressionNone, 1, recs...)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := DecodeRecords(b)
	if err != nil {
		t.Fatal(err)
	}
	h.ProducerID, h.ProducerEpoch, h.BaseSequence = pid, epoch, seq
	if b, err = EncodeBatch(h, recs); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIdempotentAppends(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{Durability: DurabilityAlways})
	mustCreate(t, l, "t", 1, map[string]string{ConfigSegmentBytes: "400"})
	p, _ := l.Partition("t", 0)

	first := mustAppend(t, p, idemBatch(t, 7, 0, 0, 3)) // offsets 0-2, seq 0-2
	mustAppend(t, p, idemBatch(t, 7, 0, 3, 2))          // offsets 3-4, seq 3-4
	mustAppend(t, p, idemBatch(t, 8, 0, 0, 1))          // another producer: offset 5

	dup := mustAppend(t, p, idemBatch(t, 7, 0, 0, 3))
	if !dup.Duplicate || dup.BaseOffset != first.BaseOffset || dup.LastOffset != first.LastOffset {
		t.Fatalf("retry of the first batch: %+v, want a duplicate answered with offsets %d..%d", dup, first.BaseOffset, first.LastOffset)
	}
	if p.LogEndOffset() != 6 {
		t.Fatalf("a duplicate was written: log end offset %d, want 6", p.LogEndOffset())
	}
	_, err := p.Append(idemBatch(t, 7, 0, 9, 1))
	wantErr(t, err, ErrOutOfOrderSequence, "sequence gap")
	_, err = p.Append(idemBatch(t, 7, 0, 1, 1))
	wantErr(t, err, ErrOutOfOrderSequence, "sequence overlapping but not a whole earlier batch")

	// A new epoch must start at 0, and fences the old one.
	_, err = p.Append(idemBatch(t, 7, 1, 5, 1))
	wantErr(t, err, ErrOutOfOrderSequence, "new epoch not at sequence 0")
	mustAppend(t, p, idemBatch(t, 7, 1, 0, 1))
	_, err = p.Append(idemBatch(t, 7, 0, 5, 1))
	wantErr(t, err, ErrInvalidProducerEpoch, "fenced epoch")

	// The state survives a clean reopen and an unclean one (both from the
	// snapshot written at close), and a lost snapshot (rebuilt from the
	// batch headers alone).
	checkAfter := func(how string) {
		t.Helper()
		p, _ := l.Partition("t", 0)
		res := mustAppend(t, p, idemBatch(t, 8, 0, 0, 1))
		if !res.Duplicate || res.BaseOffset != 5 {
			t.Fatalf("%s: retry of producer 8's batch: %+v, want duplicate of offset 5", how, res)
		}
		_, err := p.Append(idemBatch(t, 7, 1, 7, 1))
		wantErr(t, err, ErrOutOfOrderSequence, how+": gap for producer 7")
		_, err = p.Append(idemBatch(t, 7, 0, 5, 1))
		wantErr(t, err, ErrInvalidProducerEpoch, how+": fenced epoch")
	}
	l.Close()
	l = openLog(t, dir, Options{})
	checkAfter("clean reopen")
	crashCopy(t, l)
	l = openLog(t, dir, Options{})
	checkAfter("unclean reopen")
	crashCopy(t, l)
	removeSnapshot(t, dir)
	l = openLog(t, dir, Options{})
	checkAfter("reopen without a snapshot")
}

func removeSnapshot(t *testing.T, dir string) {
	t.Helper()
	if err := removeIfExists(vfs.OS{}, dir+"/topics/t/0/"+producerSnapshotFile); err != nil {
		t.Fatal(err)
	}
}
