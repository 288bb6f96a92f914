package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// monitorFlags make a counter serve the runtime's monitor on a free port,
// so that the tests can ask it how far it has processed.
var monitorFlags = []string{"-http", "127.0.0.1:0"}

// brokerKillFlags are the counter flags of the scenarios that kill the
// broker: the monitor, and 2 ms of work per record, so that a burst (see
// awaitInFlight) leaves the counters a backlog, some of it already fetched,
// to process while the broker is down, and changelog records to write.
// That caps a partition at 500 records a second: the scenarios' steady
// load, brokerKillLoad, is a quarter of what the 12 partitions can take.
var brokerKillFlags = append([]string{"-work", "2ms"}, monitorFlags...)

// brokerKillLoad is the steady load, in records a second, of the scenarios
// that kill the broker.
const brokerKillLoad = 1_500

var monitorRE = regexp.MustCompile(`msg=monitor .*addr=(\S+)`)

// groupStatus is what a counter's monitor (/api/groups) says of its group:
// the part of runtime's JSON the tests read.
type groupStatus struct {
	Name  string `json:"name"`
	State string `json:"state"`
	Error string `json:"error"`
	Owned []struct {
		Partition int32  `json:"partition"`
		State     string `json:"state"`
		Inputs    []struct {
			Topic string `json:"topic"`
			// Offset is the next offset to process, -1 while unknown.
			Offset        int64 `json:"offset"`
			HighWatermark int64 `json:"high_watermark"`
		} `json:"inputs"`
	} `json:"owned"`
}

// status asks an instance started with monitorFlags for the status of the
// counting group.
func (p *process) status(ctx context.Context) (groupStatus, error) {
	p.t.Helper()
	if p.monitor == "" {
		m, _ := p.await(monitorRE, 0, time.Minute)
		p.monitor = m[1]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.monitor+"/api/groups", nil)
	if err != nil {
		return groupStatus{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return groupStatus{}, fmt.Errorf("status of %s: %w", p.name, err)
	}
	defer resp.Body.Close()
	var st struct {
		Groups []groupStatus `json:"groups"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return groupStatus{}, fmt.Errorf("status of %s: %w", p.name, err)
	}
	for _, g := range st.Groups {
		if g.Name == group {
			return g, nil
		}
	}
	return groupStatus{}, fmt.Errorf("status of %s: no group %s", p.name, group)
}

// processing is an instance's progress on the partitions it processes, as
// its monitor tells and the broker's committed offsets, read after it.
type processing struct {
	instance string
	// next is the next input offset to process, hw the high watermark the
	// instance last heard of, committed the group's committed offset, per
	// partition the instance owns and processes.
	next, hw, committed map[int32]int64
}

// parts returns the partitions, in order.
func (s processing) parts() []int32 {
	var ps []int32
	for p := range s.next {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// inFlight returns how many records the instance had processed and not
// committed.
func (s processing) inFlight() int64 {
	var n int64
	for p, next := range s.next {
		n += max(0, next-s.committed[p])
	}
	return n
}

// backlog returns how many records of its partitions the instance knew of
// and had not processed.
func (s processing) backlog() int64 {
	var n int64
	for p, next := range s.next {
		n += max(0, s.hw[p]-next)
	}
	return n
}

func (s processing) String() string {
	var b strings.Builder
	for _, p := range s.parts() {
		fmt.Fprintf(&b, " %d:%d-%d-%d", p, s.committed[p], s.next[p], s.hw[p])
	}
	return fmt.Sprintf("%s processed %d records past the commits, %d more to process (partition:committed-processed-high watermark%s)", s.instance, s.inFlight(), s.backlog(), b.String())
}

// processing reads how far an instance started with monitorFlags has
// processed its running partitions, then the group's committed offsets.
// The commits are read second, so that a record counted as processed and not
// committed was so at that moment.
func (c *cluster) processing(ctx context.Context, p *process) (processing, error) {
	st, err := p.status(ctx)
	if err != nil {
		return processing{}, err
	}
	s := processing{instance: p.name, next: map[int32]int64{}, hw: map[int32]int64{}, committed: map[int32]int64{}}
	if st.State != "running" {
		return s, nil
	}
	for _, o := range st.Owned {
		for _, in := range o.Inputs {
			if o.State == "running" && in.Topic == inputTopic && in.Offset >= 0 {
				s.next[o.Partition], s.hw[o.Partition] = in.Offset, in.HighWatermark
			}
		}
	}
	offs, err := c.adm.FetchOffsets(ctx, group)
	if err != nil {
		return processing{}, fmt.Errorf("committed offsets of %s: %w", group, err)
	}
	for part := range s.next {
		// No commit yet: the instance began at the log start, 0 here.
		if o, ok := offs.Lookup(inputTopic, part); ok && o.Err == nil && o.At >= 0 {
			s.committed[part] = o.At
		}
	}
	return s, nil
}

// burst is how many records the scenarios that kill the broker send at
// once just before a kill, so that the instances have records to process,
// and changelog records to write, while the broker is down.
const burst = 5_000

// awaitInFlight waits until one of procs, all started with monitorFlags,
// has processed records it has not committed, and at least backlog more
// records to process, and returns its processing. The caller kills a
// process right after, so that the kill finds work in flight rather than
// an idle group; with a backlog, the instances go on processing, and
// writing, if the broker is gone.
func (c *cluster) awaitInFlight(procs []*process, backlog int64, timeout time.Duration) processing {
	c.t.Helper()
	var found processing
	c.poll(fmt.Sprintf("an instance with records processed and not committed, and %d more to process", backlog), timeout, 5*time.Millisecond, true,
		func(ctx context.Context) (bool, string) {
			var last string
			for _, p := range procs {
				s, err := c.processing(ctx, p)
				if err != nil {
					last = err.Error()
					continue
				}
				if s.inFlight() > 0 && s.backlog() >= backlog {
					found = s
					return true, ""
				}
				last = s.String()
			}
			return false, last
		})
	return found
}

// awaitRunning waits until procs, all started with monitorFlags, together
// process every partition of the input, each its own: the group is stable,
// with every member restored and processing.
func (c *cluster) awaitRunning(procs []*process, timeout time.Duration) {
	c.t.Helper()
	c.poll(fmt.Sprintf("the instances to process every partition of %s once", inputTopic), timeout, 50*time.Millisecond, true, func(ctx context.Context) (bool, string) {
		owners := map[int32][]string{}
		var err error
		for _, p := range procs {
			var st groupStatus
			if st, err = p.status(ctx); err != nil {
				break
			}
			for _, o := range st.Owned {
				if st.State == "running" && o.State == "running" {
					owners[o.Partition] = append(owners[o.Partition], p.name)
				}
			}
		}
		ok := err == nil && len(owners) == partitions
		for _, names := range owners {
			ok = ok && len(names) == 1
		}
		switch {
		case ok:
			return true, ""
		case err != nil:
			return false, err.Error()
		default:
			return false, fmt.Sprintf("running partitions and their owners: %v", owners)
		}
	})
}

// partitionEnds returns the end offset of every partition of topic.
func (c *cluster) partitionEnds(topic string) map[int32]int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := c.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		c.t.Fatalf("end offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// commits returns the group's committed offset of every partition of the
// input it has committed.
func (c *cluster) commits() map[int32]int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offs, err := c.adm.FetchOffsets(ctx, group)
	if err != nil {
		c.t.Fatalf("committed offsets of %s: %v", group, err)
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == inputTopic && o.Err == nil && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out
}
