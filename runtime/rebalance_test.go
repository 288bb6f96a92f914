package runtime

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/runnel-io/runnel/broker"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/state"
	"github.com/runnel-io/runnel/topology"
)

// seen counts, per partition, the records an instance's handler processed.
type seen struct {
	mu sync.Mutex
	n  map[int32]int
	at map[int32][]time.Time
}

func newSeen() *seen { return &seen{n: map[int32]int{}, at: map[int32][]time.Time{}} }

func (s *seen) count(p int32) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[p]
}

// seeingTopology keeps rows like rowKeeper and counts each record in s.
func seeingTopology(t testing.TB, s *seen) *topology.Topology {
	return rowKeeper(t, func(*topology.Group[string, string]) handler {
		return func(ctx processor.Context[string, string], _, _ string) error {
			s.mu.Lock()
			s.n[ctx.Partition()]++
			s.at[ctx.Partition()] = append(s.at[ctx.Partition()], time.Now())
			s.mu.Unlock()
			return nil
		}
	})
}

// runInstance runs rt until the test ends.
func runInstance(t *testing.T, rt *Runtime) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

// tasksOf returns the tasks an instance's group g owns now.
func tasksOf(rt *Runtime) map[int32]*task {
	h := rt.handler("g")
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.tasks)
}

func awaitTrue(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond) // what is awaited is counters; nothing to wait on
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// An instance joining a running group takes its share without
// interrupting the partitions that stay where they are: the first
// instance never revokes, closes or reopens them (their tasks are the same
// objects throughout), and it goes on processing their records while the
// newcomer is still opening the partitions it took.
func TestJoiningInstanceDoesNotInterruptPartitionsThatStay(t *testing.T) {
	for _, log := range []string{"runnel", "kfake"} {
		t.Run(log, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			var addrs []string
			if log == "runnel" {
				addrs = startLog(ctx, t)
			} else {
				c, err := kfake.NewCluster(kfake.NumBrokers(3))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(c.Close)
				addrs = c.ListenAddrs()
			}
			const n = 6
			seenA, seenB := newSeen(), newSeen()
			a := newRuntime(ctx, t, seeingTopology(t, seenA), Options{Brokers: addrs, Dir: t.TempDir(), Partitions: n}, nil)
			runInstance(t, a)
			awaitTrue(t, "the first instance owning every partition", func() bool { return len(tasksOf(a)) == n })
			_, produce := producer(ctx, t, addrs)
			round := func(parts []int32, i int) {
				for _, p := range parts {
					produce(record(p, fmt.Sprintf("k%d", p), fmt.Sprint(i)))
				}
			}
			all := []int32{0, 1, 2, 3, 4, 5}
			round(all, 0)
			awaitTrue(t, "the first records processed", func() bool {
				return !slices.ContainsFunc(all, func(p int32) bool { return seenA.count(p) < 1 })
			})
			before := tasksOf(a)

			// The newcomer's stores open only when the test says so: until
			// then the partitions it took are in its hands, unopened.
			release := make(chan struct{})
			opening := make(chan struct{}, n)
			leveldb := state.LevelDBOpener(state.LevelDBOptions{})
			blocked := func(dir string) (state.Store, error) {
				opening <- struct{}{}
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return leveldb(dir)
			}
			b := newRuntime(ctx, t, seeingTopology(t, seenB), Options{Brokers: addrs, Dir: t.TempDir(), Partitions: n, Stores: blocked}, nil)
			runInstance(t, b)
			<-opening
			stay := tasksOf(a)
			if len(stay) != n/2 {
				t.Fatalf("the first instance has %d partitions while the newcomer opens its share, want %d", len(stay), n/2)
			}
			staying := slices.Sorted(maps.Keys(stay))
			for _, p := range staying {
				if stay[p] != before[p] || stay[p].ctx.Err() != nil {
					t.Fatalf("partition %d stayed, but its task was replaced or ended", p)
				}
			}
			// Mid-rebalance: the staying partitions are processed.
			round(staying, 1)
			awaitTrue(t, "records of the staying partitions processed while the newcomer restores", func() bool {
				return !slices.ContainsFunc(staying, func(p int32) bool { return seenA.count(p) < 2 })
			})
			close(release)
			awaitTrue(t, "the newcomer owning its share", func() bool { return len(tasksOf(b)) == n/2 })
			round(all, 2)
			awaitTrue(t, "every partition's records processed", func() bool {
				return !slices.ContainsFunc(all, func(p int32) bool {
					if slices.Contains(staying, p) {
						return seenA.count(p) < 3
					}
					return seenB.count(p) < 1
				})
			})
			after := tasksOf(a)
			if !slices.Equal(slices.Sorted(maps.Keys(after)), staying) {
				t.Fatalf("after the rebalance the first instance owns %v, want the %v it kept", slices.Sorted(maps.Keys(after)), staying)
			}
			for _, p := range staying {
				if after[p] != before[p] {
					t.Fatalf("partition %d stayed, but its task was replaced", p)
				}
				if got := seenA.count(p); got != 3 {
					t.Errorf("partition %d stayed with the first instance, which processed %d of its 3 records", p, got)
				}
				if got := seenB.count(p); got != 0 {
					t.Errorf("partition %d stayed with the first instance, but the newcomer processed %d of its records", p, got)
				}
			}
		})
	}
}

// A whole group stopped and started again, with new member ids, gets its
// partitions back where their stores are: no instance restores a record.
// The bundled log waits a moment for the members of an empty group to
// join (as Kafka's group.initial.rebalance.delay.ms does), so that the
// restarted instances join one rebalance together.
func TestRestartedGroupRestoresNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	br, err := broker.Start(ctx, broker.Config{Addr: "127.0.0.1:0", Dir: t.TempDir(), GroupInitialRebalanceDelay: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Close() })
	addrs := []string{br.Addr()}
	const n = 6
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	_, produce := producer(ctx, t, addrs)
	start := func() ([]*Runtime, []*seen, func()) {
		var rts []*Runtime
		var seens []*seen
		var stops []func() error
		for _, dir := range dirs {
			s := newSeen()
			rt := newRuntime(ctx, t, seeingTopology(t, s), Options{Brokers: addrs, Dir: dir, Partitions: n}, nil)
			rts, seens = append(rts, rt), append(seens, s)
		}
		for _, rt := range rts {
			rctx, rcancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- rt.Run(rctx) }()
			stops = append(stops, func() error { rcancel(); return <-done })
		}
		// Every instance stops at once, as in a restart of the whole
		// group: none takes over another's partitions on the way out.
		return rts, seens, func() {
			var wg sync.WaitGroup
			for _, stop := range stops {
				wg.Go(func() {
					if err := stop(); err != nil {
						t.Errorf("run: %v", err)
					}
				})
			}
			wg.Wait()
		}
	}
	shared := func(rts []*Runtime) bool {
		for _, rt := range rts {
			if len(tasksOf(rt)) != n/len(rts) {
				return false
			}
		}
		return true
	}
	processed := func(seens []*seen, want int) bool {
		total := 0
		for _, s := range seens {
			for p := range int32(n) {
				total += s.count(p)
			}
		}
		return total == want
	}

	rts, seens, stop := start()
	awaitTrue(t, "three instances sharing the partitions", func() bool { return shared(rts) })
	for i := range 300 {
		p := int32(i % n)
		produce(record(p, fmt.Sprintf("k%d", i%50), fmt.Sprint(i)))
	}
	awaitTrue(t, "300 records processed", func() bool { return processed(seens, 300) })
	owners := map[int32]int{}
	for i, rt := range rts {
		for p := range tasksOf(rt) {
			owners[p] = i
		}
	}
	stop()

	rts, seens, stop = start()
	defer stop()
	awaitTrue(t, "the restarted instances sharing the partitions", func() bool { return shared(rts) })
	for i, rt := range rts {
		for p := range tasksOf(rt) {
			if owners[p] != i {
				t.Errorf("partition %d went to instance %d, but instance %d has its store", p, i, owners[p])
			}
		}
		if got := rt.Stats("g").Restored.Load(); got != 0 {
			t.Errorf("restarted instance %d restored %d changelog records, want 0", i, got)
		}
	}
	for i := range 60 {
		produce(record(int32(i%n), fmt.Sprintf("k%d", i%50), "after"))
	}
	awaitTrue(t, "60 more records processed", func() bool { return processed(seens, 60) })
}
