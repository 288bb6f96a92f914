package countbykey

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/broker"
)

var (
	flagN    = flag.Int("countbykey.n", 1_000_000, "records in the input topic of BenchmarkCountByKey")
	flagKeys = flag.Int("countbykey.keys", 10_000, "distinct keys among the input records")
	flagProf = flag.String("countbykey.cpuprofile", "", "write a CPU profile of the measured part of each run (broker included) to `prefix`.<group>.pprof")
)

// partitions is the partition count of every topic of the benchmark: inputs
// and changelogs are co-partitioned.
const partitions = 8

// env is what every run in the test binary shares: one broker, started on
// first use and closed by TestMain, an admin and producer client for it, and
// the input topics filled so far, which later runs reuse (they only read
// them).
type env struct {
	dir    string
	broker *broker.Broker
	cl     *kgo.Client
	adm    *kadm.Client

	mu     sync.Mutex
	inputs map[string]*input // by topic
	runs   atomic.Int64      // numbers the groups, so that no run resumes another's
}

var (
	sharedOnce sync.Once
	shared     *env
	sharedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.close()
	}
	os.Exit(code)
}

// getEnv returns the shared env, starting the broker on first use.
func getEnv(tb testing.TB) *env {
	tb.Helper()
	sharedOnce.Do(func() { shared, sharedErr = startEnv() })
	if sharedErr != nil {
		tb.Fatal(sharedErr)
	}
	return shared
}

func startEnv() (*env, error) {
	dir, err := os.MkdirTemp("", "countbykey-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, inputs: map[string]*input{}}
	e.broker, err = broker.Start(context.Background(), broker.Config{
		Addr: "127.0.0.1:0", Dir: filepath.Join(dir, "log"), GroupInitialRebalanceDelay: -1,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start broker: %w", err)
	}
	e.cl, err = kgo.NewClient(
		kgo.SeedBrokers(e.broker.Addr()),
		// Partitions are chosen per framework (see input), not by kgo.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// Uncompressed input, so that neither framework's consumer pays for
		// a codec the other might read faster.
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MaxBufferedRecords(100_000),
	)
	if err != nil {
		e.close()
		return nil, fmt.Errorf("kgo client: %w", err)
	}
	e.adm = kadm.NewClient(e.cl)
	return e, nil
}

func (e *env) close() {
	if e.cl != nil {
		e.cl.Close()
	}
	if e.broker != nil {
		e.broker.Close()
	}
	os.RemoveAll(e.dir)
}

func (e *env) addr() string { return e.broker.Addr() }

// newGroup returns a group name that no run has used.
func (e *env) newGroup(framework string) string {
	return fmt.Sprintf("countbykey-%s-%d", framework, e.runs.Add(1))
}

// runDir returns a new directory for a run's local state.
func (e *env) runDir(group string) (string, error) {
	dir := filepath.Join(e.dir, "state", group)
	return dir, os.MkdirAll(dir, 0o755)
}

// createTopic creates a topic of the benchmark's partition count.
func (e *env) createTopic(ctx context.Context, topic string, configs map[string]*string) error {
	if _, err := e.adm.CreateTopic(ctx, partitions, 1, configs, topic); err != nil {
		return fmt.Errorf("create %s: %w", topic, err)
	}
	return nil
}

// profile starts a CPU profile of the measured part of the run of group, if
// -countbykey.cpuprofile asks for one, and returns the function that ends
// it. go test -cpuprofile would also profile the pre-fill and the checks,
// which are a good part of a benchmark run.
func profile(group string) (stop func() error, err error) {
	if *flagProf == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(*flagProf + "." + group + ".pprof")
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// input is a filled input topic and the counts it should produce.
type input struct {
	topic string
	n     int
	want  map[string]int64
	// perMinute counts the records of each key in each minute of their
	// timestamps, for the windowed count.
	perMinute map[keyMinute]int64
}

// keyMinute is a key and the start of a minute.
type keyMinute struct {
	key    string
	minute time.Time
}

// The input records' timestamps go forward evenly from inputStart over
// inputSpan, so that windowed counts see an hour of 1-minute windows.
var inputStart = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

const inputSpan = time.Hour

// partitioner returns the partition of a key among the benchmark's
// partitions, the way a framework's own emitter would place it.
type partitioner func(key string) (int32, error)

// saramaPartitioner adapts a sarama partitioner, which both frameworks'
// producers are built on.
func saramaPartitioner(ctor sarama.PartitionerConstructor) partitioner {
	p := ctor("")
	return func(key string) (int32, error) {
		return p.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(key)}, partitions)
	}
}

// runnelPartitioner is Kafka's default (murmur2), which runnel's emitter
// and runtime use.
var runnelPartitioner = saramaPartitioner(sarama.NewMurmur2Partitioner)

// gokaPartitioner is goka's default hasher (FNV-1a) in sarama's hash
// partitioner, which goka's emitter and its table writes use.
var gokaPartitioner = saramaPartitioner(sarama.NewCustomHashPartitioner(fnv.New32a))

// input returns the input topic of framework with n records over keys
// keys, filling it on first use. Records are the same for every framework:
// keys drawn uniformly with a fixed seed, each placed by the framework's
// partitioner so that its group table finds them where it expects them.
func (e *env) input(ctx context.Context, framework string, n, keys int, part partitioner) (*input, error) {
	topic := fmt.Sprintf("countbykey-%s-in-%d-%d", framework, n, keys)
	e.mu.Lock()
	defer e.mu.Unlock()
	if in := e.inputs[topic]; in != nil {
		return in, nil
	}
	if err := e.createTopic(ctx, topic, nil); err != nil {
		return nil, err
	}
	names := make([]string, keys)
	parts := make([]int32, keys)
	for i := range names {
		names[i] = fmt.Sprintf("key-%06d", i)
		p, err := part(names[i])
		if err != nil {
			return nil, err
		}
		parts[i] = p
	}
	in := &input{topic: topic, n: n, want: make(map[string]int64, keys), perMinute: map[keyMinute]int64{}}
	rng := rand.New(rand.NewPCG(1, 2))
	var (
		errMu    sync.Mutex
		firstErr error
	)
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			errMu.Lock()
			firstErr = cmp.Or(firstErr, err)
			errMu.Unlock()
		}
	}
	for i := range n {
		k := rng.IntN(keys)
		in.want[names[k]]++
		ts := inputStart.Add(time.Duration(i) * inputSpan / time.Duration(n)).Truncate(time.Millisecond)
		in.perMinute[keyMinute{names[k], ts.Truncate(time.Minute)}]++
		e.cl.Produce(ctx, &kgo.Record{
			Topic: topic, Partition: parts[k], Key: []byte(names[k]),
			Value:     binary.BigEndian.AppendUint64(nil, uint64(i)),
			Timestamp: ts,
		}, done)
	}
	if err := e.cl.Flush(ctx); err != nil {
		return nil, fmt.Errorf("fill %s: %w", topic, err)
	}
	if firstErr != nil {
		return nil, fmt.Errorf("fill %s: %w", topic, firstErr)
	}
	e.inputs[topic] = in
	return in, nil
}

// pollInterval is how often await looks at the processor's progress: it
// bounds what await adds to a measurement.
const pollInterval = 5 * time.Millisecond

// await returns once processed reports n records and done reports that
// their effects are acknowledged in the log. It returns early with an
// error if stopped is closed first (the processor stopped) or ctx ends.
func (e *env) await(ctx context.Context, n int64, processed func() int64, done func(context.Context) (bool, error), stopped <-chan struct{}, stopErr func() error) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-stopped:
			return fmt.Errorf("processor stopped after %d of %d records: %w", processed(), n, stopErr())
		case <-ctx.Done():
			return fmt.Errorf("after %d of %d records: %w", processed(), n, ctx.Err())
		}
		if processed() < n {
			continue
		}
		ok, err := done(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
	}
}

// changelogHolds returns an await condition for a count whose every record
// writes its key's row once to the changelog table and nothing else does:
// once table holds n records, every count is acknowledged.
func (e *env) changelogHolds(table string, n int64) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		written, err := e.endOffsets(ctx, table)
		return written >= n, err
	}
}

// committed returns an await condition for a runnel group: the group
// commits an input offset only once every write of the records before it
// is acknowledged, so once it has committed all n records of topic, all
// their effects are in the log. This holds whatever else the group writes
// (timers, stream time), which a changelog's length does not tell apart.
func (e *env) committed(group, topic string, n int64) func(context.Context) (bool, error) {
	return func(ctx context.Context) (bool, error) {
		offs, err := e.adm.FetchOffsets(ctx, group)
		if err == nil {
			err = offs.Error()
		}
		if err != nil {
			return false, fmt.Errorf("committed offsets of %s: %w", group, err)
		}
		var sum int64
		offs.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topic {
				sum += o.At
			}
		})
		return sum >= n, nil
	}
}

// endOffsets returns the sum of the end offsets of a topic's partitions.
func (e *env) endOffsets(ctx context.Context, topic string) (int64, error) {
	offs, err := e.adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	var sum int64
	offs.Each(func(o kadm.ListedOffset) { sum += o.Offset })
	return sum, nil
}

// checkCounts compares the counts read back from a table with those the
// input should give, and reports the first few differences.
func checkCounts(got, want map[string]int64) error {
	var errs []error
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			errs = append(errs, fmt.Errorf("key %s: count %d (present %v), want %d", k, g, ok, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			errs = append(errs, fmt.Errorf("key %s: count %d, want none", k, g))
		}
	}
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("and %d more differences", len(errs)-5))
	}
	return errors.Join(errs...)
}

// run is one way to count: it processes in, verifies the counts and
// returns the time from the processor's start until the table held every
// count, verification excluded.
type run func(ctx context.Context, e *env, in *input) (time.Duration, error)

// framework is a contender.
type framework struct {
	name string
	part partitioner
	run  run
}

var frameworks = []framework{
	{"runnel", runnelPartitioner, runRunnel},
	{"goka", gokaPartitioner, runGoka},
}
