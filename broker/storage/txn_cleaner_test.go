package storage

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"
)

func mustTxnBatch(t *testing.T, pid int64, recs ...Record) []byte {
	t.Helper()
	b, err := NewTxnBatch(pid, 0, 1_000_000, recs...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Compaction of transactional data: aborted records go and supersede
// nothing; markers stay while their transaction has records, then get a
// delete horizon and go after delete.retention.ms; nothing at or past the
// LSO is touched.
func TestCompactionOfTransactions(t *testing.T) {
	clk := newClock(time.UnixMilli(1_000_000))
	dir := t.TempDir()
	l := openLog(t, dir, Options{Durability: DurabilityAlways, Now: clk.Now})
	mustCreate(t, l, "c", 1, map[string]string{
		ConfigCleanupPolicy:          "compact",
		ConfigDeleteRetentionMs:      "60000",
		ConfigMinCleanableDirtyRatio: "0.01",
	})
	p, _ := l.Partition("c", 0)
	ctx := context.Background()

	mustAppend(t, p, mustBatch(t, 1_000_000, kv("a", "v1"))) // 0
	mustAppend(t, p, mustTxnBatch(t, 1, kv("a", "aborted"))) // 1
	mustMarker(t, p, 1, 0, false)                            // 2
	roll(t, p)
	mustAppend(t, p, mustTxnBatch(t, 2, kv("b", "committed"))) // 3
	mustMarker(t, p, 2, 0, true)                               // 4
	mustAppend(t, p, mustBatch(t, 1_000_000, kv("b", "v2")))   // 5
	roll(t, p)
	mustAppend(t, p, mustTxnBatch(t, 3, kv("c", "open"), kv("b", "open"))) // 6-7
	roll(t, p)
	mustAppend(t, p, mustBatch(t, 1_000_000, kv("d", "v1"))) // 8
	if lso := p.LastStableOffset(); lso != 6 {
		t.Fatalf("LSO %d, want 6", lso)
	}
	before, _ := readAll(t, p, 6)

	if err := p.clean(ctx); err != nil {
		t.Fatal(err)
	}
	hdrs, recs := readAll(t, p, 0)
	if got, want := offsetsOf(hdrs), []int64{0, 2, 4, 5, 6, 8}; !slices.Equal(got, want) {
		t.Fatalf("batches at %v after compaction, want %v", got, want)
	}
	if string(recs[0].value) != "v1" {
		t.Fatalf("offset 0 holds %q: the aborted write superseded it", recs[0].value)
	}
	horizon := clk.Now().UnixMilli() + 60000
	for _, h := range hdrs[1:3] {
		if !h.Control() || h.Attributes&attrDeleteHorizon == 0 || h.BaseTimestamp != horizon {
			t.Fatalf("marker at %d: %+v, want it kept with delete horizon %d", h.BaseOffset, h, horizon)
		}
	}
	after, _ := readAll(t, p, 6)
	if !slices.Equal(after, before) {
		t.Fatalf("compaction touched batches at or past the LSO: %v, were %v", after, before)
	}
	if got := p.AbortedTransactions(0, 9); !slices.Equal(got, []AbortedTxn{{1, 1, 2}}) {
		t.Fatalf("aborted %v while the abort marker remains", got)
	}
	if p.cleanedTo > 6 {
		t.Fatalf("cleaned to %d, past the LSO", p.cleanedTo)
	}

	// Producer 3 commits; past delete.retention.ms the markers whose
	// transactions left no records go, and producer 3's stays.
	m3 := mustMarker(t, p, 3, 0, true) // 9
	roll(t, p)
	mustAppend(t, p, mustBatch(t, 1_000_000, kv("e", "v1")))
	clk.Advance(30 * time.Second)
	if err := p.clean(ctx); err != nil {
		t.Fatal(err)
	}
	if hdrs, _ := readAll(t, p, 0); !slices.Contains(offsetsOf(hdrs), 2) {
		t.Fatal("a marker went before its delete horizon")
	}
	clk.Advance(31 * time.Second)
	mustAppend(t, p, mustBatch(t, 1_000_000, kv("f", "v1")))
	roll(t, p)
	if err := p.clean(ctx); err != nil {
		t.Fatal(err)
	}
	hdrs, _ = readAll(t, p, 0)
	if got := offsetsOf(hdrs); slices.Contains(got, 2) || slices.Contains(got, 4) || !slices.Contains(got, m3) || !slices.Contains(got, 6) {
		t.Fatalf("batches at %v: want markers 2 and 4 gone, 6 and its marker %d kept", got, m3)
	}
	for _, h := range hdrs {
		if h.BaseOffset == m3 && h.Attributes&attrDeleteHorizon != 0 {
			t.Fatalf("marker %d stamped for deletion while its transaction has records", m3)
		}
	}
	if got := p.AbortedTransactions(0, p.LogEndOffset()); len(got) != 0 {
		t.Fatalf("aborted %v after the abort marker went", got)
	}
	// The index written by compaction serves a reopen.
	l.Close()
	l = openLog(t, dir, Options{Durability: DurabilityAlways, Now: clk.Now})
	p, _ = l.Partition("c", 0)
	if got := p.AbortedTransactions(0, p.LogEndOffset()); len(got) != 0 {
		t.Fatalf("aborted %v after reopen", got)
	}
	if lso, hw := p.LastStableOffset(), p.HighWatermark(); lso != hw {
		t.Fatalf("LSO %d, HW %d after reopen", lso, hw)
	}
}

func offsetsOf(hdrs []BatchHeader) []int64 {
	var out []int64
	for _, h := range hdrs {
		out = append(out, h.BaseOffset)
	}
	return out
}

// Retention trims the aborted-transaction index with the segments that
// held the markers, files included.
func TestRetentionTrimsAbortedIndex(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{Durability: DurabilityAlways})
	mustCreate(t, l, "t", 1, map[string]string{ConfigRetentionBytes: "1"})
	p, _ := l.Partition("t", 0)
	var aborts []AbortedTxn
	for range 3 {
		first := mustAppend(t, p, mustTxnBatch(t, 1, kv("k", "v"))).BaseOffset
		aborts = append(aborts, AbortedTxn{1, first, mustMarker(t, p, 1, 0, false)})
		roll(t, p)
	}
	p.mu.RLock()
	gonePaths := []string{p.segs[0].txnIndexPath(), p.segs[1].txnIndexPath()}
	p.mu.RUnlock()
	if got := p.AbortedTransactions(0, p.LogEndOffset()); !slices.Equal(got, aborts) {
		t.Fatalf("aborted %v, want %v", got, aborts)
	}
	if err := p.clean(context.Background()); err != nil {
		t.Fatal(err)
	}
	// retention.bytes=1 keeps the last closed segment only.
	if got := p.AbortedTransactions(0, p.LogEndOffset()); !slices.Equal(got, aborts[2:]) {
		t.Fatalf("aborted %v after retention removed two segments, want %v", got, aborts[2:])
	}
	for _, path := range gonePaths {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("%s survived its segment: %v", path, err)
		}
	}
}
