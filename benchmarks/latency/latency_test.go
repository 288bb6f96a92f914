package latency

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker"
	"github.com/runnel-io/runnel/broker/storage"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
	"github.com/runnel-io/runnel/topology"
)

var (
	flagRate    = flag.Int("latency.rate", 10_000, "records per second produced to the input")
	flagSeconds = flag.Float64("latency.seconds", 5, "how long each run produces, after a warm-up of one second")
	flagKeys    = flag.Int("latency.keys", 10_000, "distinct keys among the input records")
	flagDurable = flag.String("latency.durability", "interval", "the bundled log's flush policy: interval (group commit, the default) or always")
)

const partitions = 8

// load is what a run produces: rate records per second for seconds, after
// a second of warm-up, over keys keys.
type load struct {
	rate    int
	seconds float64
	keys    int
}

func flagLoad() load { return load{*flagRate, *flagSeconds, *flagKeys} }

// TestLatency runs each pipeline briefly at a low rate: every record
// produced after the warm-up arrives at the output once, with a latency
// measured. The figures are the benchmark's business.
func TestLatency(t *testing.T) {
	ctx := t.Context()
	br, err := broker.Start(ctx, broker.Config{Addr: "127.0.0.1:0", Dir: t.TempDir(), GroupInitialRebalanceDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	ld := load{rate: 500, seconds: 0.5, keys: 50}
	for _, pl := range []struct {
		name  string
		start pipeline
	}{{"runnel", startRunnel}, {"copier", startCopier}, {"hop", nil}} {
		lat, err := measure(ctx, br.Addr(), "t"+pl.name, t.TempDir(), pl.start, ld)
		if err != nil {
			t.Fatalf("%s: %v", pl.name, err)
		}
		if want := int(float64(ld.rate) * ld.seconds); len(lat) != want {
			t.Fatalf("%s: %d latencies, want %d", pl.name, len(lat), want)
		}
		for _, d := range lat {
			if d <= 0 {
				t.Fatalf("%s: latency %v", pl.name, d)
			}
		}
	}
}

// BenchmarkLatency runs one group (a goleveldb table, one row write and one
// emit per record) on the bundled log and produces -latency.rate records
// per second to its input for -latency.seconds, after a second of warm-up
// that is not measured. Each record's value holds the time of its produce
// call; the handler copies it into the emit, and a consumer of the output
// records the time since. It reports p50, p99 and p99.9 of those times in
// milliseconds, and the records measured.
//
// The input's producer does not linger (kgo.ProducerLinger(0)): what is
// measured is runnel's part and the log's, not a producer's batching.
//
// Beside it, on the same broker in the same run: copier, a bare franz-go
// loop that consumes the input (assigned partitions, no group) and
// produces each record to the output as it comes, with runnel's producer
// settings (acks=all, idempotent, a linger of 1ms), no table; and hop,
// which consumes the input directly: one pass through the log instead of
// two.
func BenchmarkLatency(b *testing.B) {
	ctx := b.Context()
	durability, err := storage.ParseDurability(*flagDurable)
	if err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	br, err := broker.Start(ctx, broker.Config{Addr: "127.0.0.1:0", Dir: b.TempDir(), GroupInitialRebalanceDelay: -1, Durability: durability, Metrics: reg})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	run := 0
	for _, pl := range []struct {
		name  string
		start pipeline
	}{{"runnel", startRunnel}, {"copier", startCopier}, {"hop", nil}} {
		b.Run(pl.name, func(b *testing.B) {
			var all []time.Duration
			n0, sum0 := produceWaits(b, reg)
			for b.Loop() {
				run++
				lat, err := measure(ctx, br.Addr(), fmt.Sprintf("lat%d", run), b.TempDir(), pl.start, flagLoad())
				if err != nil {
					b.Fatal(err)
				}
				all = append(all, lat...)
			}
			// The broker's side of each produce: mostly the wait for
			// the group commit that makes its records durable and
			// visible.
			n1, sum1 := produceWaits(b, reg)
			if n1 > n0 {
				b.ReportMetric((sum1-sum0)/float64(n1-n0)*1000, "broker_produce_mean_ms")
			}
			report(b, all)
		})
	}
}

// produceWaits returns the count and sum (in seconds) of the broker's
// produce durations so far.
func produceWaits(b *testing.B, reg *prometheus.Registry) (uint64, float64) {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasSuffix(mf.GetName(), "produce_duration_seconds") {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	b.Fatal("no produce_duration_seconds among the broker's metrics")
	return 0, 0
}

// report reports the quantiles of latencies.
func report(b *testing.B, all []time.Duration) {
	slices.Sort(all)
	q := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(0.50), "p50_ms")
	b.ReportMetric(q(0.99), "p99_ms")
	b.ReportMetric(q(0.999), "p99.9_ms")
	b.ReportMetric(float64(len(all)), "records")
	b.ReportMetric(0, "ns/op")
}

// pipeline starts what copies topic in to topic out, and returns a
// function that stops it and returns its error.
type pipeline func(ctx context.Context, addr, in, out, dir string) (stop func() error, err error)

// measure starts the pipeline (nil: none, the consumer reads the input)
// with topics of its own named after name, produces to its input, and
// returns the latency of every record produced after the warm-up.
func measure(ctx context.Context, addr, name, dir string, start pipeline, ld load) (lat []time.Duration, err error) {
	in, out := name+"-in", name+"-out"
	adm, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	for _, t := range []string{in, out} {
		req := kmsg.NewPtrCreateTopicsRequest()
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = t, partitions, 1
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, adm)
		if err != nil {
			return nil, err
		}
		if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
			return nil, fmt.Errorf("create %s: %w", t, err)
		}
	}
	if start == nil {
		out = in
	} else {
		stop, err := start(ctx, addr, in, out, dir)
		if err != nil {
			return nil, err
		}
		defer func() { err = errors.Join(err, stop()) }()
	}
	return produceAndConsume(ctx, addr, in, out, ld)
}

// startRunnel runs a runnel group that counts each record's key in its
// table and emits the record's value to out.
func startRunnel(ctx context.Context, addr, inName, outName, dir string) (func() error, error) {
	in := topology.NewTopic(inName, processor.String, processor.Bytes)
	out := topology.NewTopic(outName, processor.String, processor.Bytes)
	g := topology.NewGroup(inName+"-group", processor.String, processor.Int64)
	emit := topology.Output(g, out)
	topology.Input(g, in, func(c processor.Context[string, int64], key string, v []byte) error {
		n, _ := c.Value()
		if err := c.SetValue(n + 1); err != nil {
			return err
		}
		// The handler's time goes along, to tell the two halves apart.
		return emit.Emit(c, key, binary.BigEndian.AppendUint64(v, uint64(time.Now().UnixNano())))
	})
	topo, err := topology.New(g)
	if err != nil {
		return nil, err
	}
	rt, err := runtime.New(ctx, topo, runtime.Options{Brokers: []string{addr}, Dir: dir, Partitions: partitions})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rt.Run(runCtx) }()
	return func() error {
		cancel()
		err := <-done
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		return errors.Join(err, rt.Close())
	}, nil
}

// startCopier runs a bare franz-go loop that reads every partition of in
// and produces each record to the same partition of out.
func startCopier(ctx context.Context, addr, in, out, _ string) (func() error, error) {
	offsets := map[int32]kgo.Offset{}
	for p := range int32(partitions) {
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{in: offsets}),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		for {
			fs := cl.PollFetches(runCtx)
			if runCtx.Err() != nil {
				done <- nil
				return
			}
			if err := fs.Err0(); err != nil {
				done <- err
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				cl.Produce(runCtx, &kgo.Record{Topic: out, Partition: r.Partition, Key: r.Key, Value: r.Value}, nil)
			})
		}
	}()
	return func() error {
		cancel()
		err := <-done
		cl.Close()
		return err
	}, nil
}

// produceAndConsume produces the records to in at the rate asked and
// consumes them from out, and returns the latency of every record after
// the warm-up.
func produceAndConsume(ctx context.Context, addr, in, out string, ld load) ([]time.Duration, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(in), kgo.ProducerLinger(0))
	if err != nil {
		return nil, err
	}
	defer prod.Close()
	cons, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(out), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	defer cons.Close()

	// The consumer records arrivals until it has seen every record.
	warm := ld.rate // one second
	total := warm + int(float64(ld.rate)*ld.seconds)
	lat := make([]time.Duration, 0, total)
	var first []time.Duration // produce to handler, where the value tells
	consumed := make(chan error, 1)
	go func() {
		seen := 0
		for seen < total {
			fs := cons.PollFetches(runCtx)
			if err := fs.Err0(); err != nil {
				consumed <- err
				return
			}
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				seen++
				seq := int(binary.BigEndian.Uint64(r.Value[8:]))
				if seq >= warm {
					sent := time.Unix(0, int64(binary.BigEndian.Uint64(r.Value)))
					lat = append(lat, now.Sub(sent))
					if len(r.Value) >= 24 {
						first = append(first, time.Unix(0, int64(binary.BigEndian.Uint64(r.Value[16:]))).Sub(sent))
					}
				}
			})
		}
		consumed <- nil
	}()

	// Records go out in steps of a millisecond, each the records due by
	// then, so the rate holds whatever the timer's granularity.
	began := time.Now()
	var produceErr error
	var perr sync.Once
	for i := 0; i < total; {
		due := int(time.Since(began).Seconds() * float64(ld.rate))
		for ; i < min(due, total); i++ {
			v := make([]byte, 16)
			binary.BigEndian.PutUint64(v, uint64(time.Now().UnixNano()))
			binary.BigEndian.PutUint64(v[8:], uint64(i))
			prod.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i%ld.keys), Value: v}, func(_ *kgo.Record, err error) {
				if err != nil {
					perr.Do(func() { produceErr = err })
				}
			})
		}
		time.Sleep(time.Millisecond) // pacing, not synchronisation
	}
	if err := prod.Flush(ctx); err != nil {
		return nil, err
	}
	if produceErr != nil {
		return nil, produceErr
	}
	select {
	case err := <-consumed:
		if err != nil {
			return nil, err
		}
	case <-time.After(time.Minute):
		return nil, errors.New("output incomplete after a minute")
	}
	if len(first) > 0 && testing.Verbose() {
		slices.Sort(first)
		fmt.Printf("produce to handler: p50 %v p99 %v\n", first[len(first)/2], first[len(first)*99/100])
	}
	return lat, nil
}
