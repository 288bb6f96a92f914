package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/runnel-io/runnel/broker/storage/internal/vfs"
)

// Power cuts under transactional traffic (see powercut_test.go for how
// they are made): after the cut, and after a second cut during recovery
// half the time, the reopened partition's transaction state is exactly
// what the surviving batches say (an independent scan), every marker the
// log called durable is there, and the LSO is not below one a reader was
// shown: read_committed never saw data that a cut made undecided again.
func TestPowerCutTransactions(t *testing.T) {
	for _, policy := range []Durability{DurabilityAlways, DurabilityInterval} {
		t.Run(policy.String(), func(t *testing.T) {
			seed := *powerCutSeed
			if seed == 0 {
				seed = uint64(time.Now().UnixNano())
			}
			t.Logf("seed %d (replay with -powercut.seed=%d)", seed, seed)
			rng := rand.New(rand.NewPCG(seed, 99))
			total := runTxnPowerCut(t, policy, rng.Uint64(), 0)
			cuts := 60
			if testing.Short() {
				cuts = 20
			}
			for range cuts {
				runTxnPowerCut(t, policy, rng.Uint64(), 1+rng.Int64N(total+5))
			}
		})
	}
}

// runTxnPowerCut runs the workload on a fresh MemFS, cutting the power
// after cutAfter operations (0: never), checks the reopened log, and
// returns how many operations the run took.
func runTxnPowerCut(t *testing.T, policy Durability, seed uint64, cutAfter int64) int64 {
	t.Helper()
	where := fmt.Sprintf("%s, cut after operation %d, run seed %d", policy, cutAfter, seed)
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
	opts := Options{Durability: policy, FlushInterval: time.Millisecond, LazyFlushInterval: 5 * time.Millisecond, IndexIntervalBytes: 128, fs: m}

	var durableAborts []AbortedTxn // aborts whose marker the log called durable
	var durableEnd, shownLSO int64
	created := false
	l, err := Open("/log", opts)
	if err == nil {
		_, err = l.CreateTopic("t", 1, map[string]string{ConfigSegmentBytes: "700"})
		created = err == nil
	}
	if created {
		p, _ := l.Partition("t", 0)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-m.Down():
				cancel()
			case <-ctx.Done():
			}
		}()
		open := map[int64]int64{}
	work:
		for range 60 {
			pid := int64(rng.IntN(3))
			var last int64
			if rng.IntN(3) > 0 {
				res, err := p.Append(txnBatch(t, pid, 0, 1+rng.IntN(3)))
				if err != nil {
					break work
				}
				if _, ok := open[pid]; !ok {
					open[pid] = res.BaseOffset
				}
				last = res.LastOffset
			} else {
				commit := rng.IntN(2) == 0
				off, err := p.AppendMarker(pid, 0, commit, 0)
				if err != nil {
					break work
				}
				last = off
				// What a reader is shown before the marker is durable counts
				// too.
				shownLSO = max(shownLSO, p.LastStableOffset())
				first, ok := open[pid]
				delete(open, pid)
				if policy == DurabilityInterval {
					if err := p.WaitDurable(ctx, off); err != nil {
						break work
					}
				}
				if ok && !commit {
					durableAborts = append(durableAborts, AbortedTxn{pid, first, off})
				}
			}
			if policy == DurabilityAlways {
				durableEnd = last + 1
			} else {
				durableEnd = p.HighWatermark()
			}
			shownLSO = max(shownLSO, p.LastStableOffset())
		}
		cancel()
	}
	if l != nil {
		l.Close()
	}
	ops := m.Ops() - start
	if cutAfter == 0 && m.Dead() {
		t.Fatalf("%s: the power went without a cut", where)
	}
	disk := m.Crash(rng)
	if rng.IntN(2) == 0 {
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
		t.Fatalf("%s: reopen: %v", where, err)
	}
	defer l2.Close()
	tp := l2.Topic("t")
	if tp == nil {
		if created {
			t.Fatalf("%s: topic lost", where)
		}
		return ops
	}
	p := tp.Partition(0)
	if leo := p.LogEndOffset(); leo < durableEnd {
		t.Fatalf("%s: log end %d after the cut, but everything below %d was durable", where, leo, durableEnd)
	}
	checkTxnState(t, where, p, scanTxnModel(t, p))
	if lso := p.LastStableOffset(); lso < shownLSO {
		t.Fatalf("%s: LSO %d after the cut, but %d was shown before it", where, lso, shownLSO)
	}
	got := p.AbortedTransactions(0, p.LogEndOffset())
	for _, a := range durableAborts {
		if !slices.Contains(got, a) {
			t.Fatalf("%s: durable abort %+v missing after the cut; aborted: %v", where, a, got)
		}
	}
	// The log takes transactional appends and markers after the cut.
	if _, err := p.Append(txnBatch(t, 7, 0, 1)); err != nil {
		t.Fatalf("%s: append after the cut: %v", where, err)
	}
	if _, err := p.AppendMarker(7, 0, false, 0); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("%s: marker after the cut: %v", where, err)
	}
	return ops
}
