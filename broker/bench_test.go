package broker

import (
	"context"
	"testing"

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
