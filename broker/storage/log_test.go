package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Many goroutines append to many partitions at once, with nothing but the
// log ordering their appends; every partition then reads back every batch
// at the offsets its Append returned, with contiguous offsets, each
// writer's records in the order it appended them, before and after a
// reopen.
func TestConcurrentAppendsReadBackInOrder(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	const parts, writers, perWriter = 8, 16, 150
	mustCreate(t, l, "events", parts, map[string]string{ConfigSegmentBytes: "20000"})

	type appended struct {
		part   int32
		base   int64
		values []string
	}
	// Each writer records only its own appends, so no lock is shared.
	mine := make([][]appended, writers)
	var inFlight, maxInFlight atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			<-start
			for i := range perWriter {
				pi := int32(rng.IntN(parts))
				recs := make([]Record, 1+rng.IntN(5))
				var values []string
				for j := range recs {
					v := fmt.Sprintf("w%d-i%d-j%d", w, i, j)
					recs[j] = kv(fmt.Sprintf("w%d", w), v)
					values = append(values, v)
				}
				p, err := l.Partition("events", pi)
				if err != nil {
					t.Error(err)
					return
				}
				b, err := NewBatch(CompressionNone, time.Now().UnixMilli(), recs...)
				if err != nil {
					t.Error(err)
					return
				}
				n := inFlight.Add(1)
				for {
					m := maxInFlight.Load()
					if n <= m || maxInFlight.CompareAndSwap(m, n) {
						break
					}
				}
				res, err := p.Append(b)
				inFlight.Add(-1)
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mine[w] = append(mine[w], appended{pi, res.BaseOffset, values})
				if err := p.WaitDurable(context.Background(), res.LastOffset); err != nil {
					t.Errorf("wait durable: %v", err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	if m := maxInFlight.Load(); m < 2 {
		t.Fatalf("at most %d append ran at a time: the test did not exercise concurrent appends", m)
	}
	t.Logf("up to %d appends ran at once", maxInFlight.Load())

	check := func(l *Log) {
		t.Helper()
		for pi := range int32(parts) {
			p, _ := l.Partition("events", pi)
			_, recs := readAll(t, p, 0)
			if int64(len(recs)) != p.LogEndOffset() {
				t.Fatalf("partition %d: read %d records, log end offset is %d", pi, len(recs), p.LogEndOffset())
			}
			for i, r := range recs {
				if r.offset != int64(i) {
					t.Fatalf("partition %d: record %d has offset %d (offsets must be contiguous)", pi, i, r.offset)
				}
			}
			// Every append is where its result said, and the appends
			// account for every record.
			var total int
			perWriter := map[string][]string{}
			for w, as := range mine {
				key := fmt.Sprintf("w%d", w)
				for _, a := range as {
					if a.part != pi {
						continue
					}
					total += len(a.values)
					perWriter[key] = append(perWriter[key], a.values...)
					for j, v := range a.values {
						off := a.base + int64(j)
						if off >= int64(len(recs)) || recs[off].key != key || string(recs[off].value) != v {
							t.Fatalf("partition %d: offset %d should hold (%s, %s), the append said so", pi, off, key, v)
						}
					}
				}
			}
			if total != len(recs) {
				t.Fatalf("partition %d: %d records appended, %d read", pi, total, len(recs))
			}
			// Each writer's records come back in the order it appended them.
			got := map[string][]string{}
			for _, r := range recs {
				got[r.key] = append(got[r.key], string(r.value))
			}
			for key, want := range perWriter {
				if !slices.Equal(got[key], want) {
					t.Fatalf("partition %d: writer %s's records read back as %v, appended as %v", pi, key, got[key], want)
				}
			}
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	check(openLog(t, dir, Options{}))
}

func TestAppendValidatesBatches(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	mustCreate(t, l, "t", 1, map[string]string{ConfigMaxMessageBytes: "200"})
	p, _ := l.Partition("t", 0)
	good := mustBatch(t, 1, kv("a", "1"))

	cases := map[string]struct {
		mangle func([]byte) []byte
		want   string
	}{
		"short":     {func(b []byte) []byte { return b[:30] }, "shorter than the 61-byte header"},
		"truncated": {func(b []byte) []byte { return b[:len(b)-1] }, "runs past"},
		"magic":     {func(b []byte) []byte { b[offMagic] = 1; return b }, "magic 1"},
		"crc":       {func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }, "CRC-32C mismatch"},
		"count": {func(b []byte) []byte {
			b[offRecordCount+3] = 50
			return b
		}, "record count 50"},
		"trailing garbage": {func(b []byte) []byte { return append(b, 1, 2, 3) }, "batch 1"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := p.Append(c.mangle(slices.Clone(good)))
			wantErr(t, err, ErrInvalidBatch, name)
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
			if p.LogEndOffset() != 0 {
				t.Fatalf("a rejected append moved the log end offset to %d", p.LogEndOffset())
			}
		})
	}
	big := mustBatch(t, 1, kv("a", string(make([]byte, 300))))
	_, err := p.Append(big)
	wantErr(t, err, ErrMessageTooLarge, "oversized batch")
	// Two good batches in one append get consecutive offsets.
	two := append(mustBatch(t, 1, kv("a", "1"), kv("b", "2")), mustBatch(t, 2, kv("c", "3"))...)
	res := mustAppend(t, p, two)
	if res.BaseOffset != 0 || res.LastOffset != 2 {
		t.Fatalf("append of two batches got offsets %d..%d, want 0..2", res.BaseOffset, res.LastOffset)
	}
}

func TestReadBoundsAndLimits(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{Durability: DurabilityAlways})
	mustCreate(t, l, "t", 1, map[string]string{ConfigSegmentBytes: "300"})
	p, _ := l.Partition("t", 0)
	for i := range 20 {
		mustAppend(t, p, mustBatch(t, int64(i), kv("k", fmt.Sprintf("value-%02d", i)), kv("k2", "x")))
	}
	if p.HighWatermark() != 40 {
		t.Fatalf("under DurabilityAlways the high watermark is %d after append, want 40", p.HighWatermark())
	}
	// An offset inside a batch returns that whole batch.
	r, err := p.Read(21, 1, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := r.AppendTo(nil)
	h, _ := ParseBatchHeader(b)
	if h.BaseOffset != 20 || len(b) != h.Size() {
		t.Fatalf("read at 21 with 1 byte max got batch %d of %d bytes (%d read), want the one whole batch at 20", h.BaseOffset, h.Size(), len(b))
	}
	// The limit stops before batches at or after it.
	r, _ = p.Read(0, 1<<20, 4)
	b, _ = r.AppendTo(nil)
	var last int64
	for len(b) > 0 {
		h, _ := ParseBatchHeader(b)
		last = h.LastOffset()
		b = b[h.Size():]
	}
	if last != 3 {
		t.Fatalf("read with limit 4 ended at offset %d, want 3", last)
	}
	if r, err := p.Read(40, 100, -1); err != nil || r.Len() != 0 {
		t.Fatalf("read at the log end: %d bytes, %v; want none and no error", r.Len(), err)
	}
	_, err = p.Read(41, 100, -1)
	wantErr(t, err, ErrOffsetOutOfRange, "read past the end")
	if len(p.segs) < 3 {
		t.Fatalf("segment.bytes=300 should have rolled several segments, have %d", len(p.segs))
	}
}

func TestHighWatermarkFollowsGroupCommit(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{FlushInterval: 20 * time.Millisecond})
	mustCreate(t, l, "t", 1, nil)
	p, _ := l.Partition("t", 0)
	changed := p.Changed()
	res := mustAppend(t, p, mustBatch(t, 1, kv("a", "1")))
	if p.LogEndOffset() != 1 {
		t.Fatalf("log end offset %d after one record", p.LogEndOffset())
	}
	// Nothing is readable until the group commit has synced it.
	if r, err := p.Read(0, 100, -1); err == nil && r.Len() > 0 && p.HighWatermark() == 0 {
		t.Fatal("read returned a batch that is not durable yet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitDurable(ctx, res.LastOffset); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed channel not closed when the high watermark moved")
	}
	if hw := p.HighWatermark(); hw != 1 {
		t.Fatalf("high watermark %d after the flush, want 1", hw)
	}
	short, cancel2 := context.WithCancel(context.Background())
	cancel2()
	wantErr(t, p.WaitDurable(short, 5), context.Canceled, "wait for an offset never written")
}

func TestTopicsPersistAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{})
	a := mustCreate(t, l, "alpha", 2, map[string]string{ConfigCleanupPolicy: "compact", ConfigRetentionMs: "1000"})
	mustCreate(t, l, "beta", 1, nil)
	_, err := l.CreateTopic("alpha", 1, nil)
	wantErr(t, err, ErrTopicExists, "second create")
	_, err = l.CreateTopic("bad/name", 1, nil)
	wantErr(t, err, ErrInvalidTopicName, "slash in name")
	_, err = l.CreateTopic("..", 1, nil)
	wantErr(t, err, ErrInvalidTopicName, "dot-dot")
	_, err = l.CreateTopic("c", 0, nil)
	wantErr(t, err, ErrInvalidPartitions, "zero partitions")
	_, err = l.CreateTopic("c", 1, map[string]string{"retention.ms": "soon"})
	wantErr(t, err, ErrInvalidConfig, "bad config value")
	_, err = l.CreateTopic("c", 1, map[string]string{"no.such": "1"})
	wantErr(t, err, ErrInvalidConfig, "unknown config")
	if l.Topic("c") != nil {
		t.Fatal("a failed create left a topic behind")
	}
	if err := l.CreatePartitions("alpha", 4); err != nil {
		t.Fatal(err)
	}
	wantErr(t, l.CreatePartitions("alpha", 3), ErrInvalidPartitions, "shrinking partitions")
	if err := l.SetTopicConfig("beta", map[string]string{ConfigSegmentBytes: "1024"}); err != nil {
		t.Fatal(err)
	}
	p3, _ := l.Partition("alpha", 3)
	mustAppend(t, p3, mustBatch(t, 1, kv("k", "v")))
	id := a.ID()
	if err := l.DeleteTopic("beta"); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, l, "gamma", 1, nil)
	l.Close()

	l = openLog(t, dir, Options{})
	var names []string
	for _, tp := range l.Topics() {
		names = append(names, tp.Name())
	}
	if !slices.Equal(names, []string{"alpha", "gamma"}) {
		t.Fatalf("topics after reopen: %v, want [alpha gamma]", names)
	}
	a = l.Topic("alpha")
	if a.NumPartitions() != 4 || a.ID() != id || !a.Config().Compact || a.Config().Delete || a.Config().RetentionMs != 1000 {
		t.Fatalf("alpha after reopen: %d partitions, id %x (want %x), config %+v", a.NumPartitions(), a.ID(), id, a.Config())
	}
	if p3, _ := l.Partition("alpha", 3); p3.LogEndOffset() != 1 {
		t.Fatalf("added partition lost its record: log end %d", p3.LogEndOffset())
	}
	_, err = l.Partition("beta", 0)
	wantErr(t, err, ErrUnknownTopic, "deleted topic")
}

func TestLogAppendTime(t *testing.T) {
	clk := newClock(time.UnixMilli(1_700_000_000_000))
	l := openLog(t, t.TempDir(), Options{Now: clk.Now, Durability: DurabilityAlways})
	mustCreate(t, l, "t", 1, map[string]string{ConfigMessageTimestampType: "LogAppendTime"})
	p, _ := l.Partition("t", 0)
	res := mustAppend(t, p, mustBatch(t, 5, kv("a", "1")))
	if res.LogAppendTime != 1_700_000_000_000 {
		t.Fatalf("append result log append time %d", res.LogAppendTime)
	}
	hdrs, _ := readAll(t, p, 0)
	if !hdrs[0].LogAppendTime() || hdrs[0].MaxTimestamp != 1_700_000_000_000 {
		t.Fatalf("stored batch: log append time flag %v, max timestamp %d", hdrs[0].LogAppendTime(), hdrs[0].MaxTimestamp)
	}
}

func TestOffsetForTimestamp(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{Durability: DurabilityAlways, IndexIntervalBytes: 100})
	mustCreate(t, l, "t", 1, map[string]string{ConfigSegmentBytes: "1000"})
	p, _ := l.Partition("t", 0)
	for i := range 50 {
		mustAppend(t, p, mustBatch(t, int64(1000+i*10), kv("k", "v")))
	}
	check := func(p *Partition) {
		t.Helper()
		for _, c := range []struct{ ts, off, got int64 }{
			{0, 0, 1000}, {1000, 0, 1000}, {1001, 1, 1010}, {1250, 25, 1250}, {1490, 49, 1490}, {1491, -1, -1},
		} {
			off, ts, err := p.OffsetForTimestamp(c.ts)
			if err != nil || off != c.off || ts != c.got {
				t.Fatalf("offset for timestamp %d: (%d, %d, %v), want (%d, %d)", c.ts, off, ts, err, c.off, c.got)
			}
		}
	}
	check(p)
	l.Close()
	l = openLog(t, dir, Options{})
	p, _ = l.Partition("t", 0)
	check(p)
}

// Lookup by timestamp answers with the first record at or after the time,
// inside a batch too, compressed or not, and not below the log start.
func TestOffsetForTimestampFindsTheRecordInItsBatch(t *testing.T) {
	for _, c := range []Compression{CompressionNone, CompressionZstd} {
		t.Run(c.String(), func(t *testing.T) {
			l := openLog(t, t.TempDir(), Options{Durability: DurabilityAlways})
			mustCreate(t, l, "t", 1, nil)
			p, _ := l.Partition("t", 0)
			var recs []Record
			for i := range 4 {
				recs = append(recs, Record{OffsetDelta: int32(i), TimestampDelta: int64(i * 100), Key: []byte("k"), Value: []byte("v")})
			}
			b, err := NewBatch(c, 5000, recs...)
			if err != nil {
				t.Fatal(err)
			}
			mustAppend(t, p, b)
			for _, q := range []struct{ ts, off, got int64 }{
				{5000, 0, 5000}, {5001, 1, 5100}, {5150, 2, 5200}, {5300, 3, 5300}, {5301, -1, -1},
			} {
				off, ts, err := p.OffsetForTimestamp(q.ts)
				if err != nil || off != q.off || ts != q.got {
					t.Fatalf("offset for timestamp %d: (%d, %d, %v), want (%d, %d)", q.ts, off, ts, err, q.off, q.got)
				}
			}
			if _, err := p.DeleteRecords(2); err != nil {
				t.Fatal(err)
			}
			if off, ts, err := p.OffsetForTimestamp(5000); err != nil || off != 2 || ts != 5200 {
				t.Fatalf("after deleting below 2: offset for timestamp 5000: (%d, %d, %v), want (2, 5200)", off, ts, err)
			}
		})
	}
}

// Writes nobody waits for may stay unsynced for LazyFlushInterval, but a
// waiter (WaitDurable, or a fetch long poll through Changed) gets the
// usual group commit: with an hour of laziness both still return.
func TestWaitersAreNotKeptWaitingByLazyFlushes(t *testing.T) {
	for _, how := range []string{"WaitDurable", "Changed"} {
		t.Run(how, func(t *testing.T) {
			l := openLog(t, t.TempDir(), Options{LazyFlushInterval: time.Hour})
			mustCreate(t, l, "t", 1, nil)
			p, _ := l.Partition("t", 0)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// The first flush after opening is prompt even with no one
			// waiting; those after it are lazy. Spin until it is done, so
			// that nothing here asks for a flush.
			mustAppend(t, p, mustBatch(t, 1, kv("a", "0")))
			for p.HighWatermark() < p.LogEndOffset() {
				runtime.Gosched()
			}
			res := mustAppend(t, p, mustBatch(t, 1, kv("a", "1")))
			if how == "WaitDurable" {
				if err := p.WaitDurable(ctx, res.LastOffset); err != nil {
					t.Fatalf("WaitDurable behind a lazy flush: %v", err)
				}
				return
			}
			for p.HighWatermark() <= res.LastOffset {
				select {
				case <-p.Changed():
				case <-ctx.Done():
					t.Fatal("a fetch waiting on Changed was kept waiting by a lazy flush")
				}
			}
		})
	}
}
