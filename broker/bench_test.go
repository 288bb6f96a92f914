package broker

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// BenchmarkProduce measures the broker's cost per produce request: each
// iteration is one acks=1 Produce of a 100-record batch through franz-go,
// so that the fsync policy stays out of the figure and the per-request work
// (decoding, appending, metrics) is what varies.
func BenchmarkProduce(b *testing.B) {
	b.Run("metrics=off", func(b *testing.B) { benchmarkProduce(b) })
	b.Run("metrics=on", func(b *testing.B) {
		benchmarkProduce(b, func(cfg *Config) { cfg.Metrics = prometheus.NewRegistry() })
	})
}

func benchmarkProduce(b *testing.B, opts ...func(*Config)) {
	cfg := Config{Addr: "127.0.0.1:0", Dir: b.TempDir()}
	for _, o := range opts {
		o(&cfg)
	}
	br, err := Start(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	if _, err := br.Log().CreateTopic("bench", 1, nil); err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()), kgo.DefaultProduceTopic("bench"),
		kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.ProducerLinger(0))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	const perBatch = 100
	recs := make([]*kgo.Record, perBatch)
	value := make([]byte, 100)
	ctx := context.Background()
	b.SetBytes(perBatch * int64(len(value)))
	b.ReportAllocs()
	for b.Loop() {
		for i := range recs {
			recs[i] = &kgo.Record{Value: value}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAnsweredProduce measures what the metrics add to a produce
// request once its response is ready: finding its error code and updating
// the counters and the histogram. It must not allocate.
func BenchmarkAnsweredProduce(b *testing.B) {
	br, err := Start(b.Context(), Config{Addr: "127.0.0.1:0", Dir: b.TempDir(), Metrics: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	resp := kmsg.NewPtrProduceResponse()
	for range 4 {
		t := kmsg.NewProduceResponseTopic()
		for range 4 {
			t.Partitions = append(t.Partitions, kmsg.NewProduceResponseTopicPartition())
		}
		resp.Topics = append(resp.Topics, t)
	}
	m := br.metrics.api(kmsg.Produce.Int16())
	b.ReportAllocs()
	for b.Loop() {
		m.read(1000)
		m.answered(m.now(), resp, 100)
	}
}

// benchRecords is how many records the transaction benchmarks write per
// run: issue 12's measure, 1M records of 100 bytes.
const benchRecords, benchTxnSize = 1_000_000, 1000

// BenchmarkTransactionalProduce writes benchRecords 100-byte records with
// franz-go at acks=all twice in each run, once as an idempotent producer
// and once in transactions of benchTxnSize records, and reports each
// figure in records/s and the ratio of the pair (transactional over
// idempotent) measured on the same broker in the same run.
//
//	go test ./broker -run '^$' -bench TransactionalProduce -benchtime 1x -count 3
func BenchmarkTransactionalProduce(b *testing.B) {
	br, err := Start(b.Context(), Config{Addr: "127.0.0.1:0", Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	value := make([]byte, 100)
	for b.Loop() {
		idem := timeProduce(b, br, "bench-idempotent", value, false)
		txn := timeProduce(b, br, "bench-transactional", value, true)
		b.ReportMetric(float64(benchRecords)/idem.Seconds(), "idempotent-rec/s")
		b.ReportMetric(float64(benchRecords)/txn.Seconds(), "transactional-rec/s")
		b.ReportMetric(idem.Seconds()/txn.Seconds(), "txn/idem")
		b.Logf("idempotent %v, transactional %v: transactional/idempotent %.2fx", idem.Round(time.Millisecond), txn.Round(time.Millisecond), idem.Seconds()/txn.Seconds())
	}
}

// timeProduce writes benchRecords records to a new one-partition topic and
// returns how long it took until the last was acknowledged (committed).
func timeProduce(b *testing.B, br *Broker, topic string, value []byte, transactional bool) time.Duration {
	b.Helper()
	topic = fmt.Sprintf("%s-%d", topic, time.Now().UnixNano())
	if _, err := br.Log().CreateTopic(topic, 1, nil); err != nil {
		b.Fatal(err)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(br.Addr()), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks())}
	if transactional {
		opts = append(opts, kgo.TransactionalID(topic))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := b.Context()
	var failed atomic.Pointer[error]
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.CompareAndSwap(nil, &err)
		}
	}
	start := time.Now()
	for sent := 0; sent < benchRecords; {
		n := benchRecords
		if transactional {
			n = benchTxnSize
			if err := cl.BeginTransaction(); err != nil {
				b.Fatal(err)
			}
		}
		for range n {
			cl.Produce(ctx, &kgo.Record{Value: value}, done)
		}
		sent += n
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		if transactional {
			if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				b.Fatal(err)
			}
		}
	}
	took := time.Since(start)
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	return took
}

// BenchmarkReadCommitted reads the same benchRecords records, written in
// transactions of benchTxnSize of which one in ten was aborted, at
// read_committed and at read_uncommitted in each run, and reports the
// ratio of the pair (read_committed over read_uncommitted, in records of
// the log read per second).
//
//	go test ./broker -run '^$' -bench ReadCommitted -benchtime 1x -count 3
func BenchmarkReadCommitted(b *testing.B) {
	br, err := Start(b.Context(), Config{Addr: "127.0.0.1:0", Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	const topic = "bench-read"
	if _, err := br.Log().CreateTopic(topic, 1, nil); err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()), kgo.DefaultProduceTopic(topic), kgo.TransactionalID("bench-read"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	value := make([]byte, 100)
	committed := 0
	for i := range benchRecords / benchTxnSize {
		if err := cl.BeginTransaction(); err != nil {
			b.Fatal(err)
		}
		for range benchTxnSize {
			cl.Produce(ctx, &kgo.Record{Value: value}, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		commit := i%10 != 9
		if commit {
			committed += benchTxnSize
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			b.Fatal(err)
		}
	}
	cl.Close()
	for b.Loop() {
		unc := timeRead(b, br, topic, kgo.ReadUncommitted(), benchRecords)
		com := timeRead(b, br, topic, kgo.ReadCommitted(), committed)
		b.ReportMetric(unc.Seconds()/com.Seconds(), "committed/uncommitted")
		b.Logf("read_uncommitted %v, read_committed %v: read_committed/read_uncommitted %.2fx", unc.Round(time.Millisecond), com.Round(time.Millisecond), unc.Seconds()/com.Seconds())
	}
}

// timeRead reads topic from the start until n records arrived.
func timeRead(b *testing.B, br *Broker, topic string, iso kgo.IsolationLevel, n int) time.Duration {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()), kgo.FetchIsolationLevel(iso),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	start := time.Now()
	for got := 0; got < n; {
		fs := cl.PollFetches(b.Context())
		if err := fs.Err0(); err != nil {
			b.Fatal(err)
		}
		got += fs.NumRecords()
	}
	return time.Since(start)
}
