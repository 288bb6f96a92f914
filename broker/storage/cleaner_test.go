package storage

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// roll forces the active segment closed, as segment.bytes or segment.ms
// would, so that the cleaner may work on what it holds.
func roll(t *testing.T, p *Partition) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.rollLocked(p.log.now()); err != nil {
		t.Fatal(err)
	}
}

func TestCompactionKeepsLatestPerKey(t *testing.T) {
	clk := newClock(time.UnixMilli(1_000_000))
	dir := t.TempDir()
	opts := Options{Durability: DurabilityAlways, Now: clk.Now}
	l := openLog(t, dir, opts)
	mustCreate(t, l, "changelog", 1, map[string]string{
		ConfigCleanupPolicy:          "compact",
		ConfigSegmentBytes:           "600",
		ConfigDeleteRetentionMs:      "60000",
		ConfigMinCleanableDirtyRatio: "0.01",
	})
	p, _ := l.Partition("changelog", 0)

	// 10 keys, each written 6 times across many segments, some batches
	// compressed; keys 0-2 end in a tombstone.
	want := map[string]string{}
	wantOff := map[string]int64{}
	ts := clk.Now().UnixMilli()
	for round := range 6 {
		for k := range 10 {
			key := fmt.Sprintf("key-%d", k)
			v := fmt.Sprintf("v%d", round)
			if round == 5 && k < 3 {
				v = tombstone
			}
			b, err := NewBatch(Compression(k%5), ts, kv(key, v), kv("other-"+key, v))
			if err != nil {
				t.Fatal(err)
			}
			res := mustAppend(t, p, b)
			want[key], wantOff[key] = v, res.BaseOffset
			want["other-"+key], wantOff["other-"+key] = v, res.BaseOffset+1
		}
	}
	roll(t, p)
	// Fresh writes after the roll stay in the active segment, untouched.
	fresh := mustAppend(t, p, mustBatch(t, ts, kv("key-9", "fresh"), kv("key-9", "fresher")))
	leo := p.LogEndOffset()
	before := p.Size()

	if err := p.clean(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p.Size() >= before {
		t.Fatalf("compaction did not shrink the log: %d bytes before, %d after", before, p.Size())
	}
	check := func(p *Partition, tombstones bool) {
		t.Helper()
		_, recs := readAll(t, p, 0)
		got := map[string]offsetRecord{}
		var active []offsetRecord
		for _, r := range recs {
			if r.offset >= fresh.BaseOffset {
				active = append(active, r)
				continue
			}
			if prev, dup := got[r.key]; dup {
				t.Fatalf("key %s kept twice, at offsets %d and %d", r.key, prev.offset, r.offset)
			}
			got[r.key] = r
		}
		for key, v := range want {
			r, ok := got[key]
			if v == tombstone {
				if tombstones && (!ok || r.value != nil || r.offset != wantOff[key]) {
					t.Fatalf("tombstone of %s: got %+v, want a null value at offset %d", key, r, wantOff[key])
				}
				if !tombstones && ok {
					t.Fatalf("tombstone of %s survived past delete.retention.ms: %+v", key, r)
				}
				continue
			}
			if !ok || string(r.value) != v || r.offset != wantOff[key] {
				t.Fatalf("key %s: got %+v, want value %s at its original offset %d", key, r, v, wantOff[key])
			}
		}
		if len(active) != 2 || string(active[0].value) != "fresh" || string(active[1].value) != "fresher" {
			t.Fatalf("active segment records changed: %+v", active)
		}
		if p.LogEndOffset() != leo {
			t.Fatalf("log end offset moved from %d to %d", leo, p.LogEndOffset())
		}
	}
	check(p, true)

	// Reopen: the compacted segments and their indexes load as they are.
	l.Close()
	l = openLog(t, dir, opts)
	p, _ = l.Partition("changelog", 0)
	check(p, true)

	// Past delete.retention.ms the next compaction drops the tombstones.
	// New writes make the log dirty enough to be compacted again.
	clk.Advance(2 * time.Minute)
	for range 3 {
		mustAppend(t, p, mustBatch(t, clk.Now().UnixMilli(), kv("key-9", "fresh"), kv("key-9", "fresher")))
	}
	roll(t, p)
	mustAppend(t, p, mustBatch(t, clk.Now().UnixMilli(), kv("key-9", "fresh"), kv("key-9", "fresher")))
	delete(want, "key-9")
	if err := p.clean(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, recs := readAll(t, p, 0)
	for _, r := range recs {
		if r.value == nil {
			t.Fatalf("tombstone for %s at %d kept after delete.retention.ms", r.key, r.offset)
		}
	}
	keys := map[string]int{}
	for _, r := range recs {
		keys[r.key]++
	}
	// The cleaner sees only closed segments: they keep key-9's latest
	// record among them, and the active segment keeps its own two.
	if keys["key-9"] != 3 {
		t.Fatalf("key-9 appears %d times, want 3 (latest of the closed segments, 2 in the active one)", keys["key-9"])
	}
}

func TestCompactionWaitsForDirtyRatio(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{Durability: DurabilityAlways})
	mustCreate(t, l, "c", 1, map[string]string{ConfigCleanupPolicy: "compact", ConfigMinCleanableDirtyRatio: "0.9"})
	p, _ := l.Partition("c", 0)
	for i := range 20 {
		mustAppend(t, p, mustBatch(t, 1, kv("k", fmt.Sprint(i))))
	}
	roll(t, p)
	p.clean(context.Background())
	after1 := p.Size()
	// The whole closed part is dirty (ratio 1), so it was compacted.
	if _, recs := readAll(t, p, 0); len(recs) != 1 {
		t.Fatalf("first compaction kept %d records, want 1", len(recs))
	}
	// A small new dirty segment is below the 0.9 ratio: nothing happens.
	mustAppend(t, p, mustBatch(t, 1, kv("k", "x")))
	roll(t, p)
	p.clean(context.Background())
	if _, recs := readAll(t, p, 0); len(recs) != 2 {
		t.Fatalf("compaction ran below min.cleanable.dirty.ratio: %d records, want 2 (size %d→%d)", len(recs), after1, p.Size())
	}
}

func TestRetentionByTimeAndSize(t *testing.T) {
	clk := newClock(time.UnixMilli(10_000_000))
	l := openLog(t, t.TempDir(), Options{Durability: DurabilityAlways, Now: clk.Now})
	mustCreate(t, l, "bytime", 1, map[string]string{ConfigRetentionMs: "60000", ConfigSegmentBytes: "300"})
	mustCreate(t, l, "bysize", 1, map[string]string{ConfigRetentionBytes: "1000", ConfigSegmentBytes: "300"})
	pt, _ := l.Partition("bytime", 0)
	ps, _ := l.Partition("bysize", 0)
	now := clk.Now().UnixMilli()
	for i := range 30 {
		ts := now - 120_000 // old
		if i >= 20 {
			ts = now // recent
		}
		mustAppend(t, pt, mustBatch(t, ts, kv("k", fmt.Sprintf("%03d", i))))
		mustAppend(t, ps, mustBatch(t, now, kv("k", fmt.Sprintf("%03d", i))))
	}
	l.clean(context.Background())

	start := pt.LogStartOffset()
	if start == 0 || start > 20 {
		t.Fatalf("time retention: log start offset %d, want old records gone and the recent ones (from 20) kept", start)
	}
	_, recs := readAll(t, pt, start)
	if recs[len(recs)-1].offset != 29 || recs[0].offset > 20 {
		t.Fatalf("time retention kept offsets %d..%d", recs[0].offset, recs[len(recs)-1].offset)
	}
	_, err := pt.Read(0, 100, -1)
	wantErr(t, err, ErrOffsetOutOfRange, "read below the log start offset")

	// As in Kafka, a segment goes only if the partition stays at or above
	// retention.bytes without it: so at most one segment's worth over.
	first := ps.segs[0].size
	if ps.Size()-first >= 1000 || ps.Size() > 1000+300 {
		t.Fatalf("size retention: partition holds %d bytes (first segment %d), retention.bytes is 1000", ps.Size(), first)
	}
	if ps.LogStartOffset() == 0 {
		t.Fatal("size retention deleted nothing")
	}
	if ps.LogEndOffset() != 30 {
		t.Fatalf("size retention moved the log end offset to %d", ps.LogEndOffset())
	}
}

func TestDeleteRecordsPersists(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{Durability: DurabilityAlways})
	mustCreate(t, l, "t", 1, map[string]string{ConfigSegmentBytes: "300"})
	p, _ := l.Partition("t", 0)
	for i := range 30 {
		mustAppend(t, p, mustBatch(t, 1, kv("k", fmt.Sprintf("%03d", i))))
	}
	segsBefore := len(p.segs)
	_, err := p.DeleteRecords(31)
	wantErr(t, err, ErrOffsetOutOfRange, "delete past the high watermark")
	start, err := p.DeleteRecords(17)
	if err != nil || start != 17 {
		t.Fatalf("delete records before 17: start %d, %v", start, err)
	}
	if len(p.segs) >= segsBefore {
		t.Fatalf("no segment deleted (%d before, %d after)", segsBefore, len(p.segs))
	}
	_, recs := readAll(t, p, 17)
	if recs[0].offset != 17 || len(recs) != 13 {
		t.Fatalf("after delete records, read from 17 gives %d records from %d", len(recs), recs[0].offset)
	}
	l.Close()
	l = openLog(t, dir, Options{})
	p, _ = l.Partition("t", 0)
	if p.LogStartOffset() != 17 {
		t.Fatalf("log start offset %d after reopen, want 17", p.LogStartOffset())
	}
}
