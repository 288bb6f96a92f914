package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestScaleOutAndIn is scenario 3 of issue 5: while an independent
// producer keeps sending, the group grows from one counter instance to
// three, then shrinks back to one as two of them are stopped.
//
// Both are stopped with SIGTERM, one after the other, because scaling in is
// an orchestrated stop, and because then no record may be processed twice:
// a revoked partition's writes are acknowledged and its offsets committed
// before its next owner starts, so every key's count must equal its true
// count exactly, which is the strongest statement the runtime makes.
// (SIGKILL, after which counts may only be at least the true ones, is
// scenario 1's.)
//
// Each time, the test checks that partitions moved, as the instances logged
// them and as the broker describes the group, and that each partition an
// instance gained was restored from the table's changelog (records > 0
// restored by that instance for that partition).
func TestScaleOutAndIn(t *testing.T) {
	// records is how many records each of the four group shapes (1, 3, 2
	// and 1 instances) must see committed before the next change.
	sz := scenarioSize(size{records: 20_000, keys: 5_000}, size{records: 5_000, keys: 1_000})
	const perSecond = 4_000
	rng := newRand(t)
	began := time.Now()
	_, addr := startBroker(t, t.TempDir(), "127.0.0.1:0")
	c := connect(t, addr)
	dir := t.TempDir()
	start := func(name string) *process {
		return c.watch(startCounter(t, name, addr, filepath.Join(dir, name)))
	}
	// phase lets the group commit another sz.records input records in its
	// current shape, so that every shape processes under load.
	phase := func(shape string) {
		t.Helper()
		c.awaitCommitted(c.committed()+int64(sz.records), 2*time.Minute)
		t.Logf("%s: %d records committed (%v)", shape, c.committed(), time.Since(began).Round(time.Millisecond))
	}

	c0 := start("counter-0")
	awaitAssigned(c0, partitions, 0, time.Minute)
	c.awaitGroup(map[*process]int{c0: partitions}, time.Minute)
	stopLoad := c.startLoad(rng.Uint64(), sz.keys, perSecond)
	defer stopLoad()
	phase("counter-0 alone")

	// Scale out: two new instances, on empty state directories, take 4
	// partitions each from counter-0 and restore them from the changelog.
	from0 := c0.mark()
	c1, c2 := start("counter-1"), start("counter-2")
	awaitAssigned(c0, 4, from0, 2*time.Minute)
	awaitAssigned(c1, 4, 0, 2*time.Minute)
	awaitAssigned(c2, 4, 0, 2*time.Minute)
	three := c.awaitGroup(map[*process]int{c0: 4, c1: 4, c2: 4}, time.Minute)
	checkRestored(t, c1, 0, three[c1])
	checkRestored(t, c2, 0, three[c2])
	phase("counter-0, -1 and -2")

	// Scale in, first step: counter-1's partitions go to the two others,
	// who keep theirs. counter-0 had state for them from the first shape,
	// and restores only what counter-1 wrote since; counter-2 restores
	// them from the changelog's start.
	from0, from2 := c0.mark(), c2.mark()
	stopInstance(c1)
	awaitAssigned(c0, 6, from0, 2*time.Minute)
	awaitAssigned(c2, 6, from2, 2*time.Minute)
	two := c.awaitGroup(map[*process]int{c0: 6, c2: 6}, time.Minute)
	gained0 := checkKept(t, c0, three[c0], two[c0])
	gained2 := checkKept(t, c2, three[c2], two[c2])
	if got := slices.Sorted(slices.Values(append(slices.Clone(gained0), gained2...))); !slices.Equal(got, three[c1]) {
		t.Errorf("after counter-1 stopped, the others gained partitions %v, want counter-1's %v", got, three[c1])
	}
	checkRestored(t, c0, from0, gained0)
	checkRestored(t, c2, from2, gained2)
	phase("counter-0 and -2")

	// Second step: counter-0 is alone again and gets counter-2's
	// partitions back, restoring what counter-1 and counter-2 wrote.
	from0 = c0.mark()
	stopInstance(c2)
	awaitAssigned(c0, partitions, from0, 2*time.Minute)
	back := c.awaitGroup(map[*process]int{c0: partitions}, time.Minute)
	if gained := checkKept(t, c0, two[c0], back[c0]); !slices.Equal(gained, two[c2]) {
		t.Errorf("after counter-2 stopped, counter-0 gained partitions %v, want counter-2's %v", gained, two[c2])
	}
	checkRestored(t, c0, from0, two[c2])
	phase("counter-0 alone again")

	stopLoad()
	c.flush(time.Minute)
	c.awaitCommitted(-1, 2*time.Minute)
	consumed := time.Since(began)
	stopInstance(c0)
	c.checkExact(c.readTable(addr), "every instance was stopped with SIGTERM, and a partition moves only once its offsets are committed")
	c.mu.Lock()
	acked := c.acked
	c.mu.Unlock()
	t.Logf("%d records over %d keys, 1→3→2→1 instances: input consumed after %v", acked, sz.keys, consumed.Round(time.Millisecond))
}

// startLoad produces records with keys drawn uniformly from keys keys, about
// perSecond of them a second, from a goroutine of its own with a random
// source seeded by seed, until the returned stop is called (stop may be
// called more than once).
func (c *cluster) startLoad(seed uint64, keys, perSecond int) (stop func()) {
	rng := rand.New(rand.NewPCG(seed, seed))
	const tick = 10 * time.Millisecond
	perTick := max(1, perSecond*int(tick)/int(time.Second))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		// A steady pace, not a burst: the instances join and leave while
		// records keep arriving.
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				c.produce(rng, perTick, keys)
			case <-done:
				return
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// committed returns the group's committed offsets on the input, summed.
func (c *cluster) committed() int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, _, _, err := c.progress(ctx)
	if err != nil {
		c.t.Fatalf("committed offsets of group %s: %v", group, err)
	}
	return n
}

var (
	generationRE = regexp.MustCompile(`msg="group generation" .*generation=(\d+) member=(\S+) partitions="?\[([\d ]*)\]"?`)
	restoredRE   = regexp.MustCompile(`msg="restored table partition" .*topic=` + regexp.QuoteMeta(tableTopic) + ` partition=(\d+) records=(\d+)`)
)

// lastGeneration returns the member id and the partitions of the last
// group generation an instance logged.
func lastGeneration(p *process) (member string, parts []int32) {
	p.t.Helper()
	var m []string
	for i := 0; ; {
		next, j := p.find(generationRE, i)
		if next == nil {
			break
		}
		m, i = next, j
	}
	if m == nil {
		p.t.Fatalf("%s logged no group generation", p.name)
	}
	for f := range strings.FieldsSeq(m[3]) {
		n, err := strconv.ParseInt(f, 10, 32)
		if err != nil {
			p.t.Fatalf("%s: partition %q in %q: %v", p.name, f, m[0], err)
		}
		parts = append(parts, int32(n))
	}
	slices.Sort(parts)
	return m[2], parts
}

// awaitGroup waits until the broker describes the group as stable with
// exactly the instances of want as members, each assigned the input
// partitions of the generation it logged last, want[p] of them; then it
// checks that together they own every partition once, and returns each
// instance's partitions. The instances must have logged that they own
// their share (awaitAssigned) first.
func (c *cluster) awaitGroup(want map[*process]int, timeout time.Duration) map[*process][]int32 {
	c.t.Helper()
	logged := map[string][]int32{}
	owners := map[string]*process{}
	out := map[*process][]int32{}
	for p, n := range want {
		member, parts := lastGeneration(p)
		if len(parts) != n {
			c.t.Fatalf("%s's last generation gave it partitions %v, want %d of them", p.name, parts, n)
		}
		logged[member], owners[member], out[p] = parts, p, parts
	}
	c.poll(fmt.Sprintf("group %s stable with the instances' assignment", group), timeout, 50*time.Millisecond, true, func(ctx context.Context) (bool, string) {
		described, err := c.describeGroup(ctx)
		if err != nil {
			return false, err.Error()
		}
		return maps.EqualFunc(described, logged, slices.Equal), fmt.Sprintf("the broker describes members %v, the instances logged %v", described, logged)
	})
	var all []int32
	for _, parts := range logged {
		all = append(all, parts...)
	}
	slices.Sort(all)
	for i, p := range all {
		if p != int32(i) {
			c.t.Fatalf("group %s's members own partitions %v together, want each of 0..%d once: %v", group, all, partitions-1, logged)
		}
	}
	if len(all) != partitions {
		c.t.Fatalf("group %s's members own %d partitions together, want %d: %v", group, len(all), partitions, logged)
	}
	return out
}

// describeGroup returns the input partitions of every member of the group,
// as the broker's DescribeGroups tells, or an error if the group is not
// stable.
func (c *cluster) describeGroup(ctx context.Context) (map[string][]int32, error) {
	ds, err := c.adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", group, err)
	}
	d, ok := ds[group]
	if !ok || d.Err != nil {
		return nil, fmt.Errorf("describe group %s: %v", group, d.Err)
	}
	if d.State != "Stable" {
		return nil, fmt.Errorf("group %s is %s", group, d.State)
	}
	out := map[string][]int32{}
	for _, m := range d.Members {
		a, ok := m.Assigned.AsConsumer()
		if !ok {
			return nil, fmt.Errorf("group %s: member %s's assignment is not a consumer protocol assignment", group, m.MemberID)
		}
		var parts []int32
		for _, tp := range a.Topics {
			if tp.Topic != inputTopic {
				return nil, fmt.Errorf("group %s: member %s is assigned topic %s, want only %s", group, m.MemberID, tp.Topic, inputTopic)
			}
			parts = append(parts, tp.Partitions...)
		}
		slices.Sort(parts)
		out[m.MemberID] = parts
	}
	return out, nil
}

// checkKept fails the test unless an instance still owns every partition
// it owned before (the assignment is sticky: only the partitions of the
// members that come or go move), and returns the ones it gained.
func checkKept(t *testing.T, p *process, before, after []int32) (gained []int32) {
	t.Helper()
	for _, q := range before {
		if !slices.Contains(after, q) && len(after) >= len(before) {
			t.Errorf("%s lost partition %d (owned %v, now %v), though its share did not shrink", p.name, q, before, after)
		}
	}
	for _, q := range after {
		if !slices.Contains(before, q) {
			gained = append(gained, q)
		}
	}
	return gained
}

// checkRestored fails the test unless, from line index from on, an
// instance logged the restore of each partition in parts from the table's
// changelog with at least one record.
func checkRestored(t *testing.T, p *process, from int, parts []int32) {
	t.Helper()
	restored := map[int32]int64{}
	for i := from; ; {
		m, j := p.find(restoredRE, i)
		if m == nil {
			break
		}
		i = j
		q, _ := strconv.ParseInt(m[1], 10, 32)
		n, _ := strconv.ParseInt(m[2], 10, 64)
		restored[int32(q)] += n
	}
	for _, q := range parts {
		if restored[q] == 0 {
			t.Errorf("%s owns partition %d, newly, but restored no record of %s-%d (restored per partition: %v)", p.name, q, tableTopic, q, restored)
		}
	}
}
