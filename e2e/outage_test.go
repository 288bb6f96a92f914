package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

var flagLong = flag.Bool("e2e.long", false, "run the long variants of the scenarios that have one (also RUNNEL_E2E_LONG=1)")

// long reports whether the long variants run: -e2e.long or
// RUNNEL_E2E_LONG=1.
func long() bool {
	return *flagLong || os.Getenv("RUNNEL_E2E_LONG") == "1"
}

// TestBrokerOutage is the end-to-end test of issue 11, item 2: processors
// ride out a broker outage. While three counter instances count a steady
// input, `runnel serve` is killed with SIGKILL once an instance has work in
// flight, kept down, and restarted on the same data directory and address,
// several times: with -e2e.long (or RUNNEL_E2E_LONG=1), 5 outages of 10 s,
// else 2 of 3 s. No counter may exit: each is checked alive after every
// outage, once the group has caught up with the input sent before the
// restart, and at the end, before it is stopped cleanly. Nothing is lost and
// nothing counted twice: checkChangelog accounts for each changelog record
// with no duplicate allowed, and every key's count is the number of its
// records the producer had acknowledged.
func TestBrokerOutage(t *testing.T) {
	outages, down := 2, 3*time.Second
	if long() {
		outages, down = 5, 10*time.Second
	}
	const (
		instances = 3
		keys      = 2_000
		perSecond = brokerKillLoad
	)
	rng := newRand(t)
	began := time.Now()
	dataDir := t.TempDir()
	srv, addr := startBroker(t, dataDir, "127.0.0.1:0")
	c := connect(t, addr)
	c.watch(srv)
	procs := make([]*process, instances)
	for i := range procs {
		procs[i] = c.watch(startCounter(t, fmt.Sprintf("counter-%d", i), addr, filepath.Join(t.TempDir(), fmt.Sprint(i)), brokerKillFlags...))
	}
	stopLoad := c.startLoad(rng.Uint64(), keys, perSecond)
	defer stopLoad()
	c.awaitRunning(procs, 2*time.Minute)

	for i := range outages {
		// A random moment: up to a second of input more is committed.
		c.awaitCommitted(c.committed()+rng.Int64N(perSecond), 2*time.Minute)
		c.produce(rng, burst, keys)
		s := c.awaitInFlight(procs, burst/4, 2*time.Minute)
		srv.kill()
		during := c.processedFor(procs, down)
		c.checkAlive()
		srv, _ = startBroker(t, dataDir, addr)
		c.watch(srv)
		restarted := time.Now()
		c.awaitCaughtUp(c.awaitEnds(time.Minute), 3*time.Minute)
		c.checkAlive()
		t.Logf("outage %d: runnel serve killed with SIGKILL and down for %v; just before, %s; meanwhile the counters processed %v records; the group committed every partition up to its end at the restart %v after it (%v)",
			i, down, s, during, time.Since(restarted).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	}

	stopLoad()
	c.flush(2 * time.Minute)
	c.awaitCommitted(-1, 3*time.Minute)
	c.checkAlive()
	for _, p := range procs {
		stopInstance(p)
	}
	l := c.checkChangelog(addr, nil)
	t.Logf("%d records over %d keys, %d outages of %v: no counter exited; changelog of %d records, none counted twice",
		c.ackedRecords(), keys, outages, down, l.records)
}

// awaitEnds returns the input's end offsets once the broker answers: right
// after a restart it may not yet.
func (c *cluster) awaitEnds(timeout time.Duration) map[int32]int64 {
	c.t.Helper()
	out := map[int32]int64{}
	c.poll(fmt.Sprintf("end offsets of %s", inputTopic), timeout, 50*time.Millisecond, false, func(ctx context.Context) (bool, string) {
		ends, err := c.adm.ListEndOffsets(ctx, inputTopic)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return false, err.Error()
		}
		ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
		return true, ""
	})
	return out
}

// awaitCaughtUp waits until the group's committed offset of every input
// partition has reached ends', failing the test if a watched process exits
// or timeout passes first.
func (c *cluster) awaitCaughtUp(ends map[int32]int64, timeout time.Duration) {
	c.t.Helper()
	c.poll(fmt.Sprintf("group %s to commit up to %v", group, ends), timeout, 50*time.Millisecond, true, func(ctx context.Context) (bool, string) {
		offs, err := c.adm.FetchOffsets(ctx, group)
		if err == nil {
			err = offs.Error()
		}
		if err != nil {
			return false, err.Error()
		}
		var behind []string
		for p, end := range ends {
			if o, _ := offs.Lookup(inputTopic, p); o.At < end {
				behind = append(behind, fmt.Sprintf("%d:%d<%d", p, o.At, end))
			}
		}
		slices.Sort(behind)
		return len(behind) == 0, "partition:committed<end " + strings.Join(behind, " ")
	})
}

// processedFor watches procs, all started with monitorFlags, for d, and
// returns how many records each processed meanwhile (by their monitors,
// which answer while the broker is down).
func (c *cluster) processedFor(procs []*process, d time.Duration) map[string]int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	first, last := map[string]int64{}, map[string]int64{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, p := range procs {
			st, err := p.status(ctx)
			if err != nil {
				continue
			}
			var n int64
			for _, o := range st.Owned {
				for _, in := range o.Inputs {
					n += max(0, in.Offset)
				}
			}
			if _, ok := first[p.name]; !ok {
				first[p.name] = n
			}
			last[p.name] = n
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			out := map[string]int64{}
			for name, n := range last {
				out[name] = n - first[name]
			}
			return out
		}
	}
}
