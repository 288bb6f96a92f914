package runtime

import (
	"context"
	"errors"
	"github.com/twmb/franz-go/pkg/kfake"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/broker"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime/internal/kafka"
	"github.com/runnel-io/runnel/state"
	"github.com/runnel-io/runnel/topology"
)

// holdingSender passes records to the producer but holds back the
// acknowledgement of those hold picks until release is closed.
type holdingSender struct {
	sender
	hold    func(*kafka.Record) bool
	release chan struct{}
}

func (h *holdingSender) Send(r *kafka.Record, done func(*kafka.Record, error)) {
	if !h.hold(r) {
		h.sender.Send(r, done)
		return
	}
	h.sender.Send(r, func(r *kafka.Record, err error) {
		go func() {
			<-h.release
			done(r, err)
		}()
	})
}

// startLog starts the bundled log, closed when the test ends, and returns
// its address.
func startLog(ctx context.Context, t testing.TB) []string {
	t.Helper()
	if os.Getenv("RUNNEL_RUNTIME_LOG") == "kfake" {
		c, err := kfake.NewCluster(kfake.NumBrokers(3))
		if err != nil {
			t.Fatalf("start kfake: %v", err)
		}
		t.Cleanup(c.Close)
		return c.ListenAddrs()
	}
	b, err := broker.Start(ctx, broker.Config{Addr: "127.0.0.1:0", Dir: t.TempDir(), GroupInitialRebalanceDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return []string{b.Addr()}
}

// input is the topic the groups of this file's tests read.
var input = topology.NewTopic("in", processor.String, processor.String)

// handler is what the groups of this file's tests run for a record.
type handler = func(ctx processor.Context[string, string], key, v string) error

// rowKeeper is a topology of one group, g, that keeps each record's value
// as its key's row, then passes the record to the handler extend returns,
// if any; extend may declare more of g.
func rowKeeper(t testing.TB, extend func(g *topology.Group[string, string]) handler) *topology.Topology {
	t.Helper()
	g := topology.NewGroup("g", processor.String, processor.String)
	var also handler
	if extend != nil {
		also = extend(g)
	}
	topology.Input(g, input, func(ctx processor.Context[string, string], key, v string) error {
		if err := ctx.SetValue(v); err != nil || also == nil {
			return err
		}
		return also(ctx, key, v)
	})
	topo, err := topology.New(g)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// newRuntime returns a runtime of topo with opts, closed when the test
// ends, whose groups send through the sender wrap returns.
func newRuntime(ctx context.Context, t *testing.T, topo *topology.Topology, opts Options, wrap func(sender) sender) *Runtime {
	t.Helper()
	rt, err := New(ctx, topo, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	rt.wrapSender = wrap
	return rt
}

// producer returns a Kafka client of the log at addrs, closed when the
// test ends, and a function that produces records of input to the
// partition they name and waits for them.
func producer(ctx context.Context, t *testing.T, addrs []string) (*kgo.Client, func(recs ...*kgo.Record)) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(input.Name()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl, func(recs ...*kgo.Record) {
		t.Helper()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// record is a record of input.
func record(p int32, key, value string) *kgo.Record {
	return &kgo.Record{Topic: input.Name(), Partition: p, Key: []byte(key), Value: []byte(value)}
}

// No input offset is committed past a record whose writes are not all
// acknowledged, however many records after it are done.
func TestNoCommitPastAnUnacknowledgedWrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	addrs := startLog(ctx, t)

	out := topology.NewTopic("out", processor.String, processor.String)
	topo := rowKeeper(t, func(g *topology.Group[string, string]) handler {
		echo := topology.Output(g, out)
		return func(ctx processor.Context[string, string], key, v string) error { return echo.Emit(ctx, key, v) }
	})
	hs := &holdingSender{hold: func(r *kafka.Record) bool { return r.Topic == "out" && string(r.Value) == "held" }, release: make(chan struct{})}
	rt := newRuntime(ctx, t, topo, Options{Brokers: addrs, Dir: t.TempDir(), Partitions: 2}, func(s sender) sender { hs.sender = s; return hs })
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() {
		if err := rt.Run(runCtx); err != nil {
			t.Errorf("run: %v", err)
		}
	})

	cl, send := producer(ctx, t, addrs)
	adm := kadm.NewClient(cl)
	produce := func(p int32, values ...string) {
		t.Helper()
		var recs []*kgo.Record
		for _, v := range values {
			recs = append(recs, record(p, "k", v))
		}
		send(recs...)
	}
	committed := func(p int32) int64 {
		offs, err := adm.FetchOffsets(ctx, "g")
		if err != nil {
			return -1
		}
		o, ok := offs.Lookup("in", p)
		if !ok {
			return -1
		}
		return o.At
	}
	await := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting until %s", what)
			}
			time.Sleep(5 * time.Millisecond) // remote state: nothing to wait on
		}
	}

	// Partition 0: record 3's emit is held; records 4 to 9 are done.
	produce(0, "r0", "r1", "r2", "held", "r4", "r5", "r6", "r7", "r8", "r9")
	await("partition 0 is processed", func() bool { return rt.Stats("g").Processed.Load() == 10 })
	// A record on partition 1 produced now is committed by a commit that
	// saw all of partition 0 processed.
	produce(1, "tick")
	await("partition 1 is committed", func() bool { return committed(1) == 1 })
	if got := committed(0); got != 3 {
		t.Fatalf("partition 0 committed at %d with record 3's write unacknowledged, want 3", got)
	}
	close(hs.release)
	await("partition 0 is committed once acknowledged", func() bool { return committed(0) == 10 })
}

// failingSender holds back every record fail picks, says so on picked,
// and fails it, without sending it, once release is closed.
type failingSender struct {
	sender
	fail    func(*kafka.Record) bool
	picked  chan struct{}
	release chan struct{}
}

var errInjected = errors.New("injected write failure")

func (f *failingSender) Send(r *kafka.Record, done func(*kafka.Record, error)) {
	if !f.fail(r) {
		f.sender.Send(r, done)
		return
	}
	f.picked <- struct{}{}
	go func() {
		<-f.release
		done(r, errInjected)
	}()
}

// watchedStore tells applied about every batch with a checkpoint.
type watchedStore struct {
	state.Store
	applied chan<- struct{}
}

func (w watchedStore) Apply(b *state.Batch) error {
	err := w.Store.Apply(b)
	if err == nil {
		w.applied <- struct{}{}
	}
	return err
}

// A changelog write that is in flight across checkpoints and then fails
// never reaches the store, even though later changes' writes succeeded:
// the instance stops, and its store holds exactly the changelog up to its
// checkpoint.
func TestFailedChangelogWriteNeverReachesTheStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	addrs := startLog(ctx, t)

	topo := rowKeeper(t, nil)
	dir := t.TempDir()
	// Partition 1's checkpoints are the clock: its store's writes show
	// that the periodic checkpoint of both partitions ran.
	clock := make(chan struct{}, 100)
	opener := state.LevelDBOpener(state.LevelDBOptions{})
	stores := func(d string) (state.Store, error) {
		st, err := opener(d)
		if err != nil || filepath.Base(d) != "1" {
			return st, err
		}
		return watchedStore{Store: st, applied: clock}, nil
	}
	fs := &failingSender{
		fail:    func(r *kafka.Record) bool { return r.Topic == "g-table" && string(r.Key) == "b" },
		picked:  make(chan struct{}, 1),
		release: make(chan struct{}),
	}
	rt := newRuntime(ctx, t, topo, Options{Brokers: addrs, Dir: dir, Partitions: 2, Stores: stores}, func(s sender) sender { fs.sender = s; return fs })
	cl, send := producer(ctx, t, addrs)
	produce := func(p int32, keys ...string) {
		t.Helper()
		var recs []*kgo.Record
		for _, k := range keys {
			recs = append(recs, record(p, k, k+"1"))
		}
		send(recs...)
	}
	await := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		}
	}
	ran := make(chan error, 1)
	go func() { ran <- rt.Run(ctx) }()

	produce(0, "a", "b", "c", "d")
	await(fs.picked, "b's changelog write is sent")
	// Two checkpoints of partition 1 after that: the second began after
	// the first ended, so a whole round of checkpoints ran with b's write
	// in flight and the writes of a, c and d acknowledged.
	produce(1, "x")
	await(clock, "partition 1 checkpoints x")
	produce(1, "y")
	await(clock, "partition 1 checkpoints y")
	close(fs.release)
	if err := <-ran; !errors.Is(err, errInjected) {
		t.Fatalf("run: %v, want the failed write's error", err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}

	// The store as the instance left it, against the changelog as the log
	// has it up to the store's checkpoint.
	st, err := state.OpenLevelDB(filepath.Join(dir, "state", "g", "table", "0"), state.LevelDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	next, _, err := st.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, "g-table")
	if err != nil {
		t.Fatal(err)
	}
	if hw, _ := ends.Lookup("g-table", 0); next > hw.Offset {
		t.Fatalf("store checkpoint %d is past the changelog's end %d", next, hw.Offset)
	}
	changelog := map[string]string{}
	if next > 0 {
		fetch, err := kgo.NewClient(kgo.SeedBrokers(addrs...),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"g-table": {0: kgo.NewOffset().At(0)}}))
		if err != nil {
			t.Fatal(err)
		}
		defer fetch.Close()
		for end := int64(0); end < next; {
			fetches := fetch.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatal(ctx.Err())
			}
			fetches.EachRecord(func(r *kgo.Record) {
				if r.Offset < next {
					changelog[string(r.Key)] = string(r.Value)
				}
				end = r.Offset + 1
			})
		}
	}
	stored := map[string]string{}
	it := st.Iterate(nil, nil)
	for it.Next() {
		stored[string(it.Key())] = string(it.Value())
	}
	it.Close()
	if !maps.Equal(stored, changelog) {
		t.Fatalf("store %v, changelog up to the store's checkpoint %d: %v", stored, next, changelog)
	}
}

// blockingSender sends every record, but holds the acknowledgement of
// those hold picks inside the producer's callback until release is
// closed, and then fails them: a Flush waits for them meanwhile.
type blockingSender struct {
	sender
	hold    func(*kafka.Record) bool
	held    chan struct{}
	release chan struct{}
}

func (b *blockingSender) Send(r *kafka.Record, done func(*kafka.Record, error)) {
	if !b.hold(r) {
		b.sender.Send(r, done)
		return
	}
	b.sender.Send(r, func(r *kafka.Record, err error) {
		b.held <- struct{}{}
		<-b.release
		done(r, errInjected)
	})
}

// A write that fails while the instance stops is reported by Run: its
// record is not committed and will be processed again, and the caller
// must not take the stop for a clean one.
func TestRunReportsAWriteThatFailsWhileStopping(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	addrs := startLog(ctx, t)
	topo := rowKeeper(t, nil)
	bs := &blockingSender{hold: func(r *kafka.Record) bool { return r.Topic == "g-table" }, held: make(chan struct{}, 1), release: make(chan struct{})}
	rt := newRuntime(ctx, t, topo, Options{Brokers: addrs, Dir: t.TempDir(), Partitions: 1}, func(s sender) sender { bs.sender = s; return bs })
	_, produce := producer(ctx, t, addrs)
	produce(record(0, "a", "a1"))
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- rt.Run(runCtx) }()
	select {
	case <-bs.held:
	case <-ctx.Done():
		t.Fatal("the record's write was never acknowledged")
	}
	stop()
	close(bs.release)
	if err := <-ran; !errors.Is(err, errInjected) {
		t.Fatalf("run: %v, want the write's failure", err)
	}
}

// A write the producer neither acknowledges nor fails (its answer lost
// while the log is away) stops the instance once it has held its input
// offset back for the delivery timeout, with an error that says so.
func TestAWriteNeverAnsweredStopsTheInstanceAtTheDeliveryTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	addrs := startLog(ctx, t)
	topo := rowKeeper(t, nil)
	const timeout = 300 * time.Millisecond
	hs := &holdingSender{hold: func(r *kafka.Record) bool { return r.Topic == "g-table" }, release: make(chan struct{})}
	defer close(hs.release)
	rt := newRuntime(ctx, t, topo, Options{Brokers: addrs, Dir: t.TempDir(), Partitions: 1, DeliveryTimeout: timeout}, func(s sender) sender { hs.sender = s; return hs })
	_, produce := producer(ctx, t, addrs)
	produce(record(0, "a", "a1"))
	began := time.Now()
	err := rt.Run(ctx)
	if !errors.Is(err, kafka.ErrDeliveryTimeout) || !strings.Contains(err.Error(), "in-0 at offset 0 not acknowledged") {
		t.Fatalf("run: %v; want a delivery timeout naming in-0 at offset 0", err)
	}
	// The stop is the behaviour under test, so its time is checked, with
	// a wide margin: at the delivery timeout, not long before or after.
	if took := time.Since(began); took < timeout || took > 20*timeout {
		t.Fatalf("stopped after %s; want about the delivery timeout %s", took, timeout)
	}
}

// A timer's write that the log never answers stops the instance at the
// delivery timeout too, though no input offset waits for it.
func TestATimerWriteNeverAnsweredStopsTheInstance(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	addrs := startLog(ctx, t)
	topo := rowKeeper(t, func(g *topology.Group[string, string]) handler {
		remind := topology.Timer(g, "remind", func(processor.Context[string, string], string, time.Time) error { return nil })
		return func(ctx processor.Context[string, string], key, v string) error {
			return remind.AtWallClock(ctx, time.Now())
		}
	})
	const timeout = 300 * time.Millisecond
	// Only the timer's removal, written when it fires, goes unanswered.
	hs := &holdingSender{hold: func(r *kafka.Record) bool { return r.Topic == "g-state" && r.Value == nil }, release: make(chan struct{})}
	defer close(hs.release)
	rt := newRuntime(ctx, t, topo, Options{Brokers: addrs, Dir: t.TempDir(), Partitions: 1, DeliveryTimeout: timeout}, func(s sender) sender { hs.sender = s; return hs })
	_, produce := producer(ctx, t, addrs)
	produce(record(0, "a", "a1"))
	err := rt.Run(ctx)
	if !errors.Is(err, kafka.ErrDeliveryTimeout) || !strings.Contains(err.Error(), "timer, punctuation or stream time writes of partition 0") {
		t.Fatalf("run: %v; want a delivery timeout of partition 0's timer writes", err)
	}
}
