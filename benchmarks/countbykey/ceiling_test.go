package countbykey

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// runSaramaLoop is the ceiling of any runtime built on sarama: the bare
// consume-count-produce loop with nothing else. Eight partition consumers
// count keys in Go maps and produce each new count to the changelog with
// an AsyncProducer configured as runnel's is (acks=all, idempotent); no
// group membership, no commits, no store. Larger fetches, channel buffers
// and produce batches than sarama's defaults made it slower, not faster,
// and so did dropping idempotence for five requests in flight.
func runSaramaLoop(ctx context.Context, e *env, in *input) (time.Duration, error) {
	name := e.newGroup("sarama-loop")
	table := name + "-table"
	if err := e.createTopic(ctx, table, map[string]*string{"cleanup.policy": new("compact")}); err != nil {
		return 0, err
	}
	start := time.Now()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Consumer.Return.Errors = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.Return.Successes = true
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	client, err := sarama.NewClient([]string{e.addr()}, cfg)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return 0, err
	}
	defer consumer.Close()
	producer, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		return 0, err
	}
	defer producer.AsyncClose()

	var acked atomic.Int64
	var failed atomic.Value
	done := make(chan struct{})
	go func() {
		for range producer.Successes() {
			if acked.Add(1) == int64(in.n) {
				close(done)
			}
		}
	}()
	go func() {
		for err := range producer.Errors() {
			failed.Store(err.Err)
		}
	}()
	var wg sync.WaitGroup
	perPartition := make([]map[string]int64, partitions)
	for p := range int32(partitions) {
		pc, err := consumer.ConsumePartition(in.topic, p, sarama.OffsetOldest)
		if err != nil {
			return 0, err
		}
		defer pc.AsyncClose()
		counts := map[string]int64{}
		perPartition[p] = counts
		wg.Go(func() {
			for {
				select {
				case m := <-pc.Messages():
					counts[string(m.Key)]++
					producer.Input() <- &sarama.ProducerMessage{
						Topic: table, Partition: p, Key: sarama.ByteEncoder(m.Key),
						Value: sarama.ByteEncoder(binary.BigEndian.AppendUint64(nil, uint64(counts[string(m.Key)]))),
					}
				case <-done:
					return
				case <-ctx.Done():
					return
				}
			}
		})
	}
	select {
	case <-done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	elapsed := time.Since(start)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return 0, fmt.Errorf("sarama loop: %w", err)
	}
	got := map[string]int64{}
	for _, counts := range perPartition {
		for k, n := range counts {
			got[k] += n
		}
	}
	if err := checkCounts(got, in.want); err != nil {
		return 0, fmt.Errorf("sarama loop: %w", err)
	}
	return elapsed, nil
}

// BenchmarkClientCeiling measures the bare sarama loop beside goka on the
// same broker: how far above goka a runtime built on sarama could go on
// this machine at best.
//
//	go test ./benchmarks/countbykey -run '^$' -bench ClientCeiling -benchtime 1x -count 1 -v
func BenchmarkClientCeiling(b *testing.B) {
	e := getEnv(b)
	n, keys := *flagN, *flagKeys
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	gin, err := e.input(ctx, "goka", n, keys, gokaPartitioner)
	if err != nil {
		b.Fatal(err)
	}
	rin, err := e.input(ctx, "runnel", n, keys, runnelPartitioner)
	if err != nil {
		b.Fatal(err)
	}
	rates := map[string]float64{}
	for _, c := range []struct {
		name string
		run  func() (time.Duration, error)
	}{
		{"sarama-loop", func() (time.Duration, error) { return runSaramaLoop(ctx, e, rin) }},
		{"goka", func() (time.Duration, error) { return runGoka(ctx, e, gin) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			rates[c.name] = measure(b, n, c.run)
		})
	}
	if g := rates["goka"]; g > 0 {
		b.Logf("sarama loop over goka: %.2fx", rates["sarama-loop"]/g)
	}
}
