package runtime

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkRebalanceGap measures what a rebalance costs the partitions
// that do not move. Three instances share 12 partitions of the bundled log
// under a steady load (about 500 records a second per partition); a
// fourth joins and takes its share. For every partition that stayed with
// its instance, it reports the largest gap between two records processed,
// from the join until a second after the newcomer processes its first
// record (gap-ms), and the same before the join (base-gap-ms), for
// comparison: the load's own spacing. moved-gap-ms is the largest gap of
// the partitions that moved: the hand-over, restore included.
//
//	go test ./runtime -run '^$' -bench RebalanceGap -benchtime 1x -count 3 -v
func BenchmarkRebalanceGap(b *testing.B) {
	for range b.N {
		gap, base, moved := rebalanceGap(b)
		b.ReportMetric(float64(gap.Microseconds())/1000, "gap-ms")
		b.ReportMetric(float64(base.Microseconds())/1000, "base-gap-ms")
		b.ReportMetric(float64(moved.Microseconds())/1000, "moved-gap-ms")
		b.Logf("staying partitions: largest gap %v through the rebalance, %v before it; moved partitions: %v", gap, base, moved)
	}
}

func rebalanceGap(b *testing.B) (gap, base, moved time.Duration) {
	ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
	defer cancel()
	addrs := startLog(ctx, b)
	const n = 12
	var rts []*Runtime
	var seens []*seen
	add := func() {
		s := newSeen()
		rt, err := New(ctx, seeingTopology(b, s), Options{Brokers: addrs, Dir: b.TempDir(), Partitions: n})
		if err != nil {
			b.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- rt.Run(rctx) }()
		b.Cleanup(func() {
			rcancel()
			if err := <-done; err != nil {
				b.Errorf("run: %v", err)
			}
			rt.Close()
		})
		rts, seens = append(rts, rt), append(seens, s)
	}
	awaitB := func(what string, cond func() bool) {
		for !cond() {
			if ctx.Err() != nil {
				b.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	shared := func(k int) bool {
		sum := 0
		for _, rt := range rts {
			m := len(tasksOf(rt))
			if m == 0 {
				return false
			}
			sum += m
		}
		return len(rts) == k && sum == n
	}
	for range 3 {
		add()
	}
	awaitB("three instances sharing the partitions", func() bool { return shared(3) })

	// The load: a record to every partition each 2ms.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.DefaultProduceTopic(input.Name()), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	lctx, stopLoad := context.WithCancel(ctx)
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; lctx.Err() == nil; i++ {
			select {
			case <-tick.C:
			case <-lctx.Done():
				return
			}
			for p := range int32(n) {
				cl.Produce(lctx, record(p, fmt.Sprintf("k%d", i%100), "x"), nil)
			}
		}
	}()
	defer func() { stopLoad(); <-loaded }()
	time.Sleep(time.Second) // the load settles
	before := make([]map[int32]*task, len(rts))
	for i, rt := range rts {
		before[i] = tasksOf(rt)
	}
	joined := time.Now()
	add()
	awaitB("four instances sharing the partitions", func() bool { return shared(4) })
	awaitB("the newcomer processing", func() bool {
		for p := range int32(n) {
			if seens[3].count(p) > 0 {
				return true
			}
		}
		return false
	})
	time.Sleep(time.Second)
	end := time.Now()
	stopLoad()
	<-loaded

	maxGap := func(ts []time.Time, from, to time.Time) time.Duration {
		var g time.Duration
		prev := from
		for _, at := range ts {
			if at.Before(from) {
				continue
			}
			if at.After(to) {
				break
			}
			g = max(g, at.Sub(prev))
			prev = at
		}
		return max(g, to.Sub(prev))
	}
	for i := range 3 {
		after := tasksOf(rts[i])
		s := seens[i]
		s.mu.Lock()
		for p, t := range before[i] {
			if after[p] == t {
				gap = max(gap, maxGap(s.at[p], joined, end))
				base = max(base, maxGap(s.at[p], joined.Add(-time.Second/2), joined))
				continue
			}
			// Moved: the gap from the last record here to the first on
			// the newcomer.
			s3 := seens[3]
			s3.mu.Lock()
			ats := append(slices.Clone(s.at[p]), s3.at[p]...)
			slices.SortFunc(ats, time.Time.Compare)
			s3.mu.Unlock()
			moved = max(moved, maxGap(ats, joined, end))
		}
		s.mu.Unlock()
	}
	return gap, base, moved
}
