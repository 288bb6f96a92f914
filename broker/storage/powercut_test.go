package storage

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-io/runnel/broker/storage/internal/vfs"
)

// Power cuts: the log runs on a vfs.MemFS, which keeps only what was
// synced; the power is cut after the k-th filesystem operation of a
// workload (opening the log, creating a topic, concurrent appends across
// segment rolls, a clean close), for many k. Then the log reopens on what
// the disk holds, and:
//   - every batch the log called durable is there, byte for byte, at its
//     offset: under DurabilityAlways every batch whose Append returned,
//     under DurabilityInterval every batch below the high watermark the
//     last completed group commit set (WaitDurable returned for it, or a
//     reader could have seen it);
//   - the rest of the log is a prefix of what was written: offsets run
//     from 0 without a hole, and every batch is one that was appended,
//     there once, unchanged;
//   - a topic whose creation returned exists, and the log takes appends
//     at its log end offset.
//
// Half the runs cut the power a second time while the log recovers from
// the first cut, before the checks.
//
// The cut points and the contents are drawn from a seed that the test
// logs; -powercut.seed replays one, -powercut.every cuts after every
// operation of the workload instead of a sample.
var (
	powerCutSeed  = flag.Uint64("powercut.seed", 0, "seed for the power cut tests (0: from the clock)")
	powerCutEvery = flag.Bool("powercut.every", false, "cut the power after every operation of the workload, not a sample")
)

func TestPowerCutAlways(t *testing.T) {
	testPowerCuts(t, DurabilityAlways, false)
}

func TestPowerCutInterval(t *testing.T) {
	testPowerCuts(t, DurabilityInterval, false)
}

// After kill -9 the page cache keeps what the process wrote, and the
// restarted log serves all of it: so recovery must make it durable before
// it does. Here the process is killed at the k-th operation, the log
// recovers, and then the power goes: everything the recovered log served
// must still be there.
func TestKillThenPowerCut(t *testing.T) {
	testPowerCuts(t, DurabilityInterval, true)
}

func testPowerCuts(t *testing.T, policy Durability, kill bool) {
	seed := *powerCutSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -powercut.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, uint64(policy)))

	// A run without a cut counts the operations a run takes; cuts are drawn
	// from a little beyond that, so that some land in the clean close or
	// after it.
	full := runPowerCutWorkload(t, policy, rng.Uint64(), 0, kill)
	total := full.ops
	if full.acked == 0 {
		t.Fatal("the workload acknowledged nothing without a power cut")
	}
	cuts := 200
	if testing.Short() {
		cuts = 60
	}
	var points []int64
	if *powerCutEvery {
		for k := int64(1); k <= total+5; k++ {
			points = append(points, k)
		}
	} else {
		for range cuts {
			points = append(points, 1+rng.Int64N(total+5))
		}
	}
	var acked, survived int
	for _, k := range points {
		runSeed := rng.Uint64()
		r := runPowerCutWorkload(t, policy, runSeed, k, kill)
		acked += r.acked
		survived += r.survived
	}
	t.Logf("%s: %d cuts over about %d operations; %d durable batches checked, %d batches survived in all", policy, len(points), total, acked, survived)
}

// attempt is one Append of the workload.
type attempt struct {
	part   int32
	writer int
	seq    int
	b      []byte // as the log stored it: Append rewrites the base offset in place
	// durable is set once the log said so: Append returned under
	// DurabilityAlways, WaitDurable returned under DurabilityInterval.
	durable bool
	base    int64
	last    int64
}

type powerCutResult struct {
	ops      int64 // filesystem operations the run took (without a cut)
	acked    int   // batches the log called durable
	survived int   // batches found after the cut
}

const (
	pcPartitions = 2
	pcWriters    = 3
	pcBatches    = 25 // per writer
)

// runPowerCutWorkload runs the workload on a fresh MemFS, cutting the power
// after cutAfter operations (0: never), then checks what a reopened log
// holds. With kill set, the process is killed at that point instead, the
// log recovers on what the page cache holds, and then the power is cut.
func runPowerCutWorkload(t *testing.T, policy Durability, seed uint64, cutAfter int64, kill bool) powerCutResult {
	t.Helper()
	where := fmt.Sprintf("cut after operation %d, run seed %d", cutAfter, seed)
	fatalf := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: %s", where, fmt.Sprintf(format, args...))
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	m := vfs.NewMemFS()
	if err := m.MkdirAll("/log", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.SyncDir("/"); err != nil {
		t.Fatal(err)
	}
	if cutAfter > 0 {
		m.CutAfter(cutAfter)
	}
	start := m.Ops()
	opts := Options{Durability: policy, FlushInterval: time.Millisecond, LazyFlushInterval: 5 * time.Millisecond, IndexIntervalBytes: 256, fs: m}

	var attempts []*attempt
	var created bool
	durableEnd := make([]int64, pcPartitions) // per partition: below this, the log said durable
	closedClean := false
	l, err := Open("/log", opts)
	if err == nil {
		_, err = l.CreateTopic("t", pcPartitions, map[string]string{ConfigSegmentBytes: "3000"})
		created = err == nil
	}
	if created {
		attempts = appendUntilCut(t, l, m, policy, rng)
		for pi := range int32(pcPartitions) {
			p, _ := l.Partition("t", pi)
			durableEnd[pi] = p.HighWatermark()
		}
	}
	if l != nil {
		closedClean = l.Close() == nil
	}
	if closedClean {
		// A clean close makes everything durable.
		for _, a := range attempts {
			if a.base >= 0 {
				durableEnd[a.part] = max(durableEnd[a.part], a.last+1)
			}
		}
	}
	res := powerCutResult{ops: m.Ops() - start}
	if cutAfter == 0 && m.Dead() {
		fatalf("the power went without a cut")
	}
	for _, a := range attempts {
		if a.durable {
			res.acked++
			if a.last >= durableEnd[a.part] {
				fatalf("partition %d: batch at %d-%d was acknowledged, yet the high watermark is %d", a.part, a.base, a.last, durableEnd[a.part])
			}
		}
	}

	var served map[int32][][]byte // with kill: what the recovered log served
	var disk *vfs.MemFS
	if kill {
		disk = m.Restart()
		opts.fs = disk
		l, err := Open("/log", opts)
		if err != nil {
			fatalf("reopen after kill -9: %v", err)
		}
		if tp := l.Topic("t"); tp != nil {
			served = map[int32][][]byte{}
			for _, p := range tp.Partitions() {
				served[p.Index()] = rawBatches(t, p)
			}
		}
		disk = disk.Crash(nil) // l is never closed: a clean close would sync
		l.Close()
	} else {
		disk = m.Crash(rng)
	}
	if !kill && rng.IntN(2) == 0 {
		// Half the time the power goes again while the log recovers:
		// recovery's own truncations and removals must be crash-safe.
		disk.CutAfter(1 + rng.Int64N(12))
		opts.fs = disk
		if l, err := Open("/log", opts); err == nil {
			l.Close()
		}
		disk = disk.Crash(rng)
	}
	opts.fs = disk
	l2, err := Open("/log", opts)
	if err != nil {
		fatalf("reopen after the cut: %v", err)
	}
	defer l2.Close()
	tp := l2.Topic("t")
	if tp == nil {
		if created {
			fatalf("topic t was created, and is gone after the cut")
		}
		return res
	}
	if n := tp.NumPartitions(); n != pcPartitions {
		fatalf("topic t has %d partitions after the cut, want %d", n, pcPartitions)
	}
	byBatch := map[[2]int]*attempt{}
	for _, a := range attempts {
		byBatch[[2]int{a.writer, a.seq}] = a
	}
	for pi := range int32(pcPartitions) {
		p := tp.Partition(pi)
		if served != nil {
			got := rawBatches(t, p)
			if len(got) < len(served[pi]) {
				fatalf("partition %d: the log recovered from kill -9 served %d batches; after the power cut %d are left", pi, len(served[pi]), len(got))
			}
			for i := range served[pi] {
				if !bytes.Equal(got[i], served[pi][i]) {
					fatalf("partition %d: batch %d differs from the one served before the power cut", pi, i)
				}
			}
		}
		found := checkSurvivors(t, where, p, byBatch, durableEnd[pi])
		res.survived += found
		leo := p.LogEndOffset()
		r, err := p.Append(mustBatch(t, 1, kv("after", "cut")))
		if err != nil || r.BaseOffset != leo {
			fatalf("partition %d: append after the cut: offset %d, log end was %d: %v", pi, r.BaseOffset, leo, err)
		}
	}
	return res
}

// appendUntilCut runs the writers until they are done or the power is cut.
func appendUntilCut(t *testing.T, l *Log, m *vfs.MemFS, policy Durability, rng *rand.Rand) []*attempt {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-m.Down():
			cancel() // nobody waits for a group commit that cannot happen
		case <-ctx.Done():
		}
	}()
	var mu sync.Mutex
	var all []*attempt
	var wg sync.WaitGroup
	for w := range pcWriters {
		wseed := rng.Uint64()
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(wseed, 2))
			for seq := range pcBatches {
				pi := int32(rng.IntN(pcPartitions))
				recs := make([]Record, 1+rng.IntN(4))
				for i := range recs {
					recs[i] = kv(fmt.Sprintf("k%d", rng.IntN(10)), fmt.Sprintf("w%d s%d r%d %s", w, seq, i, strings.Repeat("x", rng.IntN(300))))
				}
				b, err := NewBatch(CompressionNone, int64(1000*seq+w), recs...)
				if err != nil {
					t.Error(err)
					return
				}
				a := &attempt{part: pi, writer: w, seq: seq, b: b, base: -1, last: -1}
				mu.Lock()
				all = append(all, a)
				mu.Unlock()
				p, _ := l.Partition("t", pi)
				res, err := p.Append(b)
				if err != nil {
					if !errors.Is(err, vfs.ErrPowerCut) {
						t.Errorf("append failed, and not for the power: %v", err)
					}
					return
				}
				a.base, a.last = res.BaseOffset, res.LastOffset
				wait := policy == DurabilityAlways || rng.IntN(2) == 0 // else like acks=0
				if policy == DurabilityInterval && wait {
					if err := p.WaitDurable(ctx, res.LastOffset); err != nil {
						return
					}
				}
				a.durable = wait
			}
		})
	}
	wg.Wait()
	return all
}

// rawBatches returns every readable batch of a partition, as stored.
func rawBatches(t *testing.T, p *Partition) [][]byte {
	t.Helper()
	var out [][]byte
	for next := p.LogStartOffset(); next < p.HighWatermark(); {
		r, err := p.Read(next, 1, -1)
		if err != nil {
			t.Fatalf("%s: read at %d: %v", p, next, err)
		}
		b, err := r.AppendTo(nil)
		if err != nil {
			t.Fatalf("%s: copy at %d: %v", p, next, err)
		}
		h, err := ParseBatchHeader(b)
		if err != nil {
			t.Fatalf("%s: batch at %d: %v", p, next, err)
		}
		out = append(out, b)
		next = h.LastOffset() + 1
	}
	return out
}

// checkSurvivors reads a reopened partition and checks it against what was
// appended; it returns how many batches it found.
func checkSurvivors(t *testing.T, where string, p *Partition, byBatch map[[2]int]*attempt, durableEnd int64) int {
	t.Helper()
	fatalf := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: %s", where, fmt.Sprintf(format, args...))
	}
	if start := p.LogStartOffset(); start != 0 {
		fatalf("%s: log start offset %d after the cut, want 0", p, start)
	}
	var next int64
	seen := map[*attempt]bool{}
	for next < p.HighWatermark() {
		r, err := p.Read(next, 1, -1)
		if err != nil {
			fatalf("%s: read at %d: %v", p, next, err)
		}
		b, err := r.AppendTo(nil)
		if err != nil {
			fatalf("%s: copy at %d: %v", p, next, err)
		}
		h, recs, err := DecodeRecords(b)
		if err != nil {
			fatalf("%s: batch at %d after the cut: %v", p, next, err)
		}
		if h.BaseOffset != next {
			fatalf("%s: batch at offset %d follows one ending at %d: a hole", p, h.BaseOffset, next-1)
		}
		var w, seq int
		if _, err := fmt.Sscanf(string(recs[0].Value), "w%d s%d", &w, &seq); err != nil {
			fatalf("%s: batch at %d holds %q, which nobody appended", p, next, recs[0].Value)
		}
		a := byBatch[[2]int{w, seq}]
		switch {
		case a == nil || a.part != p.Index():
			fatalf("%s: batch at %d (writer %d, batch %d) was not appended to this partition", p, next, w, seq)
		case seen[a]:
			fatalf("%s: batch of writer %d, number %d, is in the log twice", p, w, seq)
		case !bytes.Equal(b, a.b):
			fatalf("%s: batch at %d differs from the one appended (writer %d, batch %d)", p, next, w, seq)
		}
		seen[a] = true
		next = h.LastOffset() + 1
	}
	if next < durableEnd {
		fatalf("%s: the log ends at %d after the cut, but everything below %d was durable", p, next, durableEnd)
	}
	return len(seen)
}

// An append under DurabilityAlways that is still waiting for its sync when
// the partition closes is acknowledged only if the close made it durable.
func TestAppendWaitingForSyncWhenPartitionCloses(t *testing.T) {
	for _, c := range []struct {
		name     string
		diskDies bool
	}{{"close syncs", false}, {"close cannot sync", true}} {
		t.Run(c.name, func(t *testing.T) {
			m := vfs.NewMemFS()
			l, err := Open("/log", Options{Durability: DurabilityAlways, fs: m})
			if err != nil {
				t.Fatal(err)
			}
			p := mustCreate(t, l, "t", 1, nil).Partition(0)
			// Holding syncMu stops the append between its write and its
			// sync, as a slow fdatasync of another append would.
			p.syncMu.Lock()
			appended := make(chan error, 1)
			go func() {
				_, err := p.Append(mustBatch(t, 1, kv("k", "v")))
				appended <- err
			}()
			waitUntil(t, "the append wrote its batch", func() bool { return p.LogEndOffset() == 1 })
			if c.diskDies {
				m.CutAfter(0)
			}
			closed := make(chan error, 1)
			go func() { closed <- l.Close() }()
			waitUntil(t, "the partition closed", func() bool {
				p.mu.RLock()
				defer p.mu.RUnlock()
				return p.closed
			})
			p.syncMu.Unlock()
			err = <-appended
			closeErr := <-closed
			if c.diskDies {
				if err == nil {
					t.Fatal("append acknowledged, but nothing synced it: the close's sync failed")
				}
				if closeErr == nil {
					t.Fatal("close succeeded on a dead disk")
				}
				return
			}
			if err != nil || closeErr != nil {
				t.Fatalf("append: %v; close: %v; want both to succeed, the close synced the batch", err, closeErr)
			}
			l2, err := Open("/log", Options{fs: m.Crash(nil)})
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			if leo := l2.Topic("t").Partition(0).LogEndOffset(); leo != 1 {
				t.Fatalf("after a power cut the acknowledged batch is gone: log end offset %d", leo)
			}
		})
	}
}

// waitUntil polls cond until it holds, failing the test after 10s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
