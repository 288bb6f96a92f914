package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var (
	flagRecords = flag.Int("e2e.records", 0, "input records of the crash scenarios (0: the scenario's default for -short or not)")
	flagKeys    = flag.Int("e2e.keys", 0, "distinct keys of the crash scenarios (0: the scenario's default)")
	flagRounds  = flag.Int("e2e.rounds", 0, "kill rounds of the crash scenarios (0: the scenario's default)")
	flagSeed    = flag.Uint64("e2e.seed", 0, "seed of keys and kill moments (0: a new one per test, logged)")
)

// bin holds the paths of the binaries TestMain builds.
var bin struct{ runnel, counter, picky, copier string }

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "runnel-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	bin.runnel = filepath.Join(dir, "runnel")
	bin.counter = filepath.Join(dir, "counter")
	bin.picky = filepath.Join(dir, "picky")
	bin.copier = filepath.Join(dir, "copier")
	for out, pkg := range map[string]string{
		bin.runnel:  "github.com/runnel-io/runnel/cmd/runnel",
		bin.counter: "github.com/runnel-io/runnel/e2e/internal/counter",
		bin.picky:   "github.com/runnel-io/runnel/e2e/internal/picky",
		bin.copier:  "github.com/runnel-io/runnel/e2e/internal/copier",
	} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build %s: %v\n%s", pkg, err, b)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	// inputTopic and group are what internal/counter uses by default.
	inputTopic = "e2e-input"
	group      = "e2e-count"
	tableTopic = group + "-table"
	partitions = 12
)

// size is how much load a scenario drives.
type size struct{ records, keys, rounds int }

// scenarioSize returns full unless -short, then short; -e2e.* flags
// override either.
func scenarioSize(full, short size) size {
	s := full
	if testing.Short() {
		s = short
	}
	if *flagRecords > 0 {
		s.records = *flagRecords
	}
	if *flagKeys > 0 {
		s.keys = *flagKeys
	}
	if *flagRounds > 0 {
		s.rounds = *flagRounds
	}
	return s
}

func newRand(t *testing.T) *rand.Rand {
	seed := *flagSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with -e2e.seed=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed))
}

// process is a running binary whose stdout and stderr lines are kept, so
// that a test can wait for a line, and dumped if the test fails.
type process struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	// monitor is the address of a counter's monitor, once status read it
	// from the log.
	monitor string

	// ending is set when the test kills or stops the process: an exit
	// without it is a failure of the process.
	ending atomic.Bool

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced at every line
	done    chan struct{} // closed once the process has exited
	exitErr error         // cmd.Wait's result, set before done is closed
}

func startProcess(t *testing.T, name, path string, args ...string) *process {
	t.Helper()
	p := &process{t: t, name: name, changed: make(chan struct{}), done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	out, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = p.cmd.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		// Wait only after the pipe is drained, as os/exec requires.
		err := p.cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			p.mu.Lock()
			tail := p.lines[max(0, len(p.lines)-40):]
			p.mu.Unlock()
			t.Logf("last %d lines of %s:", len(tail), p.name)
			for _, l := range tail {
				t.Logf("  %s: %s", p.name, l)
			}
		}
	})
	return p
}

// await returns the first line from index from on that matches re, with
// its submatches and the index after it; it fails the test if the process
// exits or timeout passes first.
func (p *process) await(re *regexp.Regexp, from int, timeout time.Duration) ([]string, int) {
	p.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		for i := from; i < len(p.lines); i++ {
			if m := re.FindStringSubmatch(p.lines[i]); m != nil {
				p.mu.Unlock()
				return m, i + 1
			}
		}
		from = len(p.lines)
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-p.done:
			// Lines are all in before done is closed: look once more.
			if m, i := p.find(re, from); m != nil {
				return m, i
			}
			p.t.Fatalf("%s exited (%v) before logging a line matching %q", p.name, p.exitErr, re)
		case <-deadline.C:
			p.t.Fatalf("%s logged no line matching %q within %v", p.name, re, timeout)
		}
	}
}

func (p *process) find(re *regexp.Regexp, from int) ([]string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := from; i < len(p.lines); i++ {
		if m := re.FindStringSubmatch(p.lines[i]); m != nil {
			return m, i + 1
		}
	}
	return nil, from
}

// mark returns the index of the next line, for await to look only at what
// comes after now.
func (p *process) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// exitedByItself returns the exit error of a process that has exited
// without the test asking it to.
func (p *process) exitedByItself() (bool, error) {
	select {
	case <-p.done:
		if !p.ending.Load() {
			return true, p.exitErr
		}
	default:
	}
	return false, nil
}

// kill sends SIGKILL and waits for the exit; it does nothing to a process
// that has exited.
func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.ending.Store(true)
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and fails the test unless the process exits 0 within
// timeout.
func (p *process) stop(timeout time.Duration) {
	p.t.Helper()
	p.terminate()
	if err := p.awaitEnd(timeout); err != nil {
		p.t.Fatalf("%s exited with %v after SIGTERM, want exit status 0", p.name, err)
	}
}

// terminate sends SIGTERM to a process that has not exited, without
// waiting; an exit from now on is expected.
func (p *process) terminate() {
	p.t.Helper()
	p.ending.Store(true)
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
}

// awaitEnd waits until the process has exited and returns its exit error
// (nil for status 0); it fails the test if timeout passes first.
func (p *process) awaitEnd(timeout time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.exitErr
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v", p.name, timeout)
		return nil
	}
}

var listenRE = regexp.MustCompile(`runnel serve listening.* addr=(\S+)`)

// startBroker runs `runnel serve` on dir at addr ("127.0.0.1:0" for a free
// port) and returns it with the address it logged.
func startBroker(t *testing.T, dir, addr string) (*process, string) {
	t.Helper()
	// A new group's first rebalance waits this long for more members, so
	// that instances started together share the first generation instead
	// of restoring partitions they lose a moment later.
	p := startProcess(t, "runnel-serve", bin.runnel, "serve", "--addr", addr, "--data", dir, "--group-initial-rebalance-delay", "1s")
	m, _ := p.await(listenRE, 0, 30*time.Second)
	return p, m[1]
}

// startCounter runs an instance of internal/counter with its state in dir,
// and more flags of counter's, if any.
func startCounter(t *testing.T, id, addr, dir string, more ...string) *process {
	t.Helper()
	args := append([]string{"-id", id, "-brokers", addr, "-dir", dir, "-partitions", strconv.Itoa(partitions)}, more...)
	return startProcess(t, id, bin.counter, args...)
}

var (
	assignedRE = regexp.MustCompile(`msg=assigned .*partitions=(\d+) restored=(\d+) processed=(\d+)`)
	stoppedRE  = regexp.MustCompile(`msg=stopped .*restored=(\d+) processed=(\d+) skipped=(\d+) dead_lettered=(\d+)`)
)

// awaitAssigned waits, from line index from, until the instance owns n
// partitions with their tables restored, and returns how many changelog
// records it has restored since it started.
func awaitAssigned(p *process, n, from int, timeout time.Duration) int64 {
	p.t.Helper()
	re := regexp.MustCompile(`msg=assigned .*partitions=` + strconv.Itoa(n) + ` restored=(\d+)`)
	m, _ := p.await(re, from, timeout)
	r, _ := strconv.ParseInt(m[1], 10, 64)
	return r
}

// instanceStats are the counters of its group an instance reports when it
// stops cleanly.
type instanceStats struct{ restored, processed, skipped, deadLettered int64 }

// stopInstance stops a counter or picky instance cleanly and returns the
// counters it reported.
func stopInstance(p *process) instanceStats {
	p.t.Helper()
	// The first assigned line comes after the signal handler is installed:
	// a SIGTERM before it would kill the process by default.
	p.await(assignedRE, 0, 60*time.Second)
	from := p.mark()
	p.stop(60 * time.Second)
	m, _ := p.find(stoppedRE, from)
	if m == nil {
		p.t.Fatalf("%s exited 0 without logging its counters (msg=stopped)", p.name)
	}
	var n [4]int64
	for i := range n {
		n[i], _ = strconv.ParseInt(m[i+1], 10, 64)
	}
	return instanceStats{restored: n[0], processed: n[1], skipped: n[2], deadLettered: n[3]}
}

// cluster is the test's own connection to the broker: the producer of the
// input, with the true count of every key, and an admin client.
type cluster struct {
	t   *testing.T
	cl  *kgo.Client
	adm *kadm.Client

	// procs are the processes the test runs, and others the in-process
	// ones, which return an error once they failed; waits on the group fail
	// as soon as one exits by itself or fails.
	procs  []*process
	others []func() error

	// stamps numbers the records produce sends: the record's timestamp is
	// firstStamp plus its number in milliseconds, so that each is unique.
	// A record a processor writes carries the timestamp of the input
	// record that caused it, which says what it was written for.
	stamps     atomic.Int64
	firstStamp time.Time

	mu     sync.Mutex
	counts map[string]int64 // acknowledged records per key
	acked  int64
	err    error // first failed produce
	// inputs are the acknowledged records of produce, by timestamp in
	// Unix milliseconds.
	inputs map[int64]inputRecord
}

// inputRecord is an acknowledged input record.
type inputRecord struct {
	key       string
	partition int32
	offset    int64
}

// connect connects to the broker at addr and creates the input topic.
func connect(t *testing.T, addr string) *cluster {
	t.Helper()
	// An hour back: the timestamps stay in the past however many records
	// a test sends, and far inside the topics' retention.
	c := &cluster{t: t, counts: map[string]int64{}, inputs: map[int64]inputRecord{}, firstStamp: time.Now().Add(-time.Hour).Truncate(time.Millisecond)}
	var err error
	// murmur2 on the key, as Kafka's default partitioner and the runtime's
	// emitters: a key's records land in the partition of its table row.
	c.cl, err = kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(inputTopic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.cl.Close)
	c.adm = kadm.NewClient(c.cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.adm.CreateTopic(ctx, partitions, 1, nil, inputTopic)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", inputTopic, err)
	}
	return c
}

// watch makes the cluster's waits fail if p exits by itself.
func (c *cluster) watch(p *process) *process {
	c.procs = append(c.procs, p)
	return p
}

// checkAlive fails the test if a watched process exited by itself or a
// watched in-process one failed.
func (c *cluster) checkAlive() {
	c.t.Helper()
	for _, p := range c.procs {
		if ok, err := p.exitedByItself(); ok {
			c.t.Fatalf("%s exited by itself: %v", p.name, err)
		}
	}
	for _, failed := range c.others {
		if err := failed(); err != nil {
			c.t.Fatal(err)
		}
	}
}

// produce queues n records with keys drawn uniformly from keys keys, each
// with a timestamp of its own; each is counted, and kept among c.inputs,
// once acknowledged. It returns without waiting for the acks.
func (c *cluster) produce(rng *rand.Rand, n, keys int) {
	for range n {
		key := fmt.Sprintf("key-%06d", rng.IntN(keys))
		v := binary.BigEndian.AppendUint64(nil, rng.Uint64())
		ts := c.firstStamp.Add(time.Duration(c.stamps.Add(1)) * time.Millisecond)
		c.send(&kgo.Record{Key: []byte(key), Value: v, Timestamp: ts}, true, c.keep)
	}
}

// keep adds an acknowledged record of produce to c.inputs.
func (c *cluster) keep(r *kgo.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inputs[r.Timestamp.UnixMilli()] = inputRecord{key: string(r.Key), partition: r.Partition, offset: r.Offset}
}

// send queues r (to the input topic unless r names another); once it is
// acknowledged, it is counted among its key's true count if counted, and
// acked, if not nil, is called with it, its partition and offset set. It
// returns without waiting for the ack.
func (c *cluster) send(r *kgo.Record, counted bool, acked func(*kgo.Record)) {
	c.cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
		if err == nil && acked != nil {
			acked(r)
		}
		if counted || err != nil {
			c.record(string(r.Key), err)
		}
	})
}

// record counts an acknowledged record of key among the true counts, or
// keeps err, the failure of a record's produce, for flush to report. It is
// the callback of every producer a test uses for the input.
func (c *cluster) record(key string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.err == nil {
			c.err = fmt.Errorf("produce key %s: %w", key, err)
		}
		return
	}
	c.counts[key]++
	c.acked++
}

// ackedRecords returns how many records have been acknowledged and counted.
func (c *cluster) ackedRecords() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked
}

// flush waits until every queued record is acknowledged, and fails the
// test if one failed.
func (c *cluster) flush(timeout time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.cl.Flush(ctx); err != nil {
		c.t.Fatalf("flush the input: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		c.t.Fatal(c.err)
	}
}

// progress returns the group's committed offsets on the input and the
// input's end offsets, summed over the partitions, and whether every
// partition's commit has reached its end.
func (c *cluster) progress(ctx context.Context) (committed, end int64, done bool, err error) {
	ends, err := c.adm.ListEndOffsets(ctx, inputTopic)
	if err != nil {
		return 0, 0, false, err
	}
	offs, err := c.adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, 0, false, err
	}
	done = true
	for p := range int32(partitions) {
		e, ok := ends.Lookup(inputTopic, p)
		if !ok || e.Err != nil {
			return 0, 0, false, fmt.Errorf("end offset of %s-%d: %v", inputTopic, p, e.Err)
		}
		end += e.Offset
		o, ok := offs.Lookup(inputTopic, p)
		if ok && o.Err == nil && o.At >= 0 {
			committed += o.At
			done = done && o.At >= e.Offset
		} else {
			done = done && e.Offset == 0
		}
	}
	return committed, end, done, nil
}

// poll calls cond every period until it reports done, failing the test
// with what and cond's last word once timeout passes, or as soon as a
// watched process exits (unless alive is false: a wait that begins while
// processes may be restarting). cond's context ends at the timeout.
// For state that is observable only remotely (the broker, the processes'
// monitors): there is nothing to wait on.
func (c *cluster) poll(what string, timeout, period time.Duration, alive bool, cond func(ctx context.Context) (done bool, last string)) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		if alive {
			c.checkAlive()
		}
		done, last := cond(ctx)
		if done {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			c.t.Fatalf("%s: not within %v; last: %s", what, timeout, last)
		}
	}
}

// awaitCommitted waits until the group's committed offsets add up to at
// least target, or, with target < 0, until they reach the input's end
// offsets in every partition. It polls the broker: the offsets are only
// observable there.
func (c *cluster) awaitCommitted(target int64, timeout time.Duration) {
	c.t.Helper()
	what := fmt.Sprintf("group %s to commit %d records", group, target)
	if target < 0 {
		what = fmt.Sprintf("group %s to consume the input", group)
	}
	c.poll(what, timeout, 50*time.Millisecond, true, func(ctx context.Context) (bool, string) {
		committed, end, done, err := c.progress(ctx)
		last := fmt.Sprintf("committed %d of %d records (error %v)", committed, end, err)
		return err == nil && (target < 0 && done || target >= 0 && committed >= target), last
	})
}

// endOffsets returns the sum of a topic's end offsets.
func (c *cluster) endOffsets(topic string) int64 {
	c.t.Helper()
	var n int64
	for _, end := range c.partitionEnds(topic) {
		n += end
	}
	return n
}

// readTable reads the group table's changelog from the start to its end
// offsets, the last value of a key winning, as a restore would.
func (c *cluster) readTable(addr string) map[string]int64 {
	c.t.Helper()
	table := map[string]int64{}
	for _, r := range c.readAll(addr, tableTopic) {
		if r.Value == nil {
			delete(table, string(r.Key))
		} else if len(r.Value) != 8 {
			c.t.Fatalf("%s-%d offset %d: key %q has a %d-byte value, want an 8-byte int64", tableTopic, r.Partition, r.Offset, r.Key, len(r.Value))
		} else {
			table[string(r.Key)] = int64(binary.BigEndian.Uint64(r.Value))
		}
	}
	return table
}

// readAll returns the records of topic from the start to its end offsets
// at the time of the call, in offset order within each partition.
func (c *cluster) readAll(addr, topic string) []*kgo.Record {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ends, err := c.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		c.t.Fatalf("end offsets of %s: %v", topic, err)
	}
	left := map[int32]int64{} // partition -> end offset still to reach
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: startOffsets(left)}))
	if err != nil {
		c.t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			c.t.Fatalf("read %s: %v (partitions left: %v)", topic, err, left)
		}
		fs.EachError(func(topic string, p int32, err error) {
			c.t.Fatalf("read %s-%d: %v", topic, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := left[r.Partition]
			if !ok || r.Offset >= end {
				// Past the end offsets listed at the start: not ours.
				return
			}
			out = append(out, r)
			if r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		})
	}
	return out
}

func startOffsets(parts map[int32]int64) map[int32]kgo.Offset {
	m := map[int32]kgo.Offset{}
	for p := range parts {
		m[p] = kgo.NewOffset().AtStart()
	}
	return m
}

// checkExact fails the test for every key whose count in table is not its
// true count, or that was never produced; why, which says why the counts
// must be exact, ends the message of a key counted too often.
func (c *cluster) checkExact(table map[string]int64, why string) {
	c.t.Helper()
	c.mu.Lock()
	want := maps.Clone(c.counts)
	c.mu.Unlock()
	checkCounts(c.t, table, want, why)
}

// checkCounts fails t for every key whose count in table is not want's, or
// that want lacks; why ends the message of a key counted too often.
func checkCounts(t *testing.T, table, want map[string]int64, why string) {
	t.Helper()
	bad := 0
	report := func(format string, args ...any) {
		bad++
		if bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	for k, w := range want {
		switch got := table[k]; {
		case got < w:
			report("key %q: count %d, want exactly %d (%d lost)", k, got, w, w-got)
		case got > w:
			report("key %q: count %d, want exactly %d (%d too many): %s", k, got, w, got-w, why)
		}
	}
	for k, got := range table {
		if _, ok := want[k]; !ok {
			report("key %q: count %d, but it was never produced", k, got)
		}
	}
	if bad > 20 {
		t.Errorf("... and %d more keys are wrong", bad-20)
	}
}
