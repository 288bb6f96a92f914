package countbykey

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
)

// gokaConfig returns goka's default sarama configuration with the two
// changes the benchmark needs. Each builder gets a config of its own,
// because goka's builders write the client id into the one they are given.
func gokaConfig() *sarama.Config {
	cfg := goka.DefaultConfig()
	// goka defaults to Kafka 2.0; speak the protocol level runnel's client
	// speaks (2.8), which the bundled log is tested with.
	cfg.Version = sarama.V2_8_0_0
	// goka starts streams at their newest offset; the input is pre-filled.
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	return cfg
}

// gokaTopics is goka's topic manager configuration for a one-node log:
// replication factor 1 (goka's default is 2). The benchmark creates the
// topics itself; the topic manager only checks them.
func gokaTopics() *goka.TopicManagerConfig {
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication = 1
	tmc.Stream.Replication = 1
	return tmc
}

// int64Codec encodes counts as 8 bytes big-endian, as runnel's
// processor.Int64 does, so that both frameworks write the same rows.
type int64Codec struct{}

func (int64Codec) Encode(v any) ([]byte, error) {
	n, ok := v.(int64)
	if !ok {
		return nil, fmt.Errorf("int64 codec: cannot encode %T", v)
	}
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(n)), nil
}

func (int64Codec) Decode(b []byte) (any, error) {
	if len(b) != 8 {
		return nil, fmt.Errorf("int64 codec: need 8 bytes, got %d", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// discard is a goka logger that drops everything: goka logs every
// rebalance and partition state change to stderr by default.
type discard struct{}

func (discard) Print(...any)          {}
func (discard) Println(...any)        {}
func (discard) Printf(string, ...any) {}

// runGoka counts in with a goka processor of one group, on the shared
// broker, with goka's goleveldb storage.
func runGoka(ctx context.Context, e *env, in *input) (time.Duration, error) {
	group := goka.Group(e.newGroup("goka"))
	table := string(goka.GroupTable(group))
	if err := e.createTopic(ctx, table, map[string]*string{"cleanup.policy": new("compact")}); err != nil {
		return 0, err
	}
	dir, err := e.runDir(string(group))
	if err != nil {
		return 0, err
	}
	brokers := []string{e.addr()}

	var processed atomic.Int64
	gg := goka.DefineGroup(group,
		goka.Input(goka.Stream(in.topic), new(codec.Bytes), func(ctx goka.Context, _ any) {
			var n int64
			if v := ctx.Value(); v != nil {
				n = v.(int64)
			}
			ctx.SetValue(n + 1)
			processed.Add(1)
		}),
		goka.Persist(int64Codec{}),
	)

	stopProfile, err := profile(string(group))
	if err != nil {
		return 0, err
	}
	start := time.Now()
	p, err := goka.NewProcessor(brokers, gg,
		goka.WithStorageBuilder(storage.DefaultBuilder(dir)),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(gokaConfig(), gokaTopics())),
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(gokaConfig())),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(gokaConfig())),
		goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(gokaConfig())),
		goka.WithLogger(discard{}),
	)
	if err != nil {
		return 0, fmt.Errorf("goka: %w", errors.Join(err, stopProfile()))
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var runErr error
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		runErr = p.Run(runCtx)
	}()
	stop := func() error {
		cancel()
		<-stopped
		if errors.Is(runErr, context.Canceled) {
			return nil
		}
		return runErr
	}

	err = e.await(ctx, int64(in.n), processed.Load, e.changelogHolds(table, int64(in.n)), stopped, func() error { return runErr })
	elapsed := time.Since(start)
	err = errors.Join(err, stopProfile())
	if err != nil {
		stop()
		return 0, fmt.Errorf("goka: %w", err)
	}
	if err := stop(); err != nil {
		return 0, fmt.Errorf("goka: run: %w", err)
	}
	if err := verifyGoka(ctx, brokers, table, in); err != nil {
		return 0, fmt.Errorf("goka: %w", err)
	}
	return elapsed, nil
}

// verifyGoka reads the group's table back through a goka view, which
// rebuilds it from the changelog, and checks every count.
func verifyGoka(ctx context.Context, brokers []string, table string, in *input) error {
	v, err := goka.NewView(brokers, goka.Table(table), int64Codec{},
		goka.WithViewStorageBuilder(storage.MemoryBuilder()),
		goka.WithViewTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(gokaConfig(), gokaTopics())),
		goka.WithViewConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(gokaConfig())),
		goka.WithViewLogger(discard{}),
	)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var runErr error
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		runErr = v.Run(ctx)
	}()
	defer func() {
		cancel()
		<-stopped
	}()
	select {
	case <-v.WaitRunning():
	case <-stopped:
		return fmt.Errorf("view stopped: %w", runErr)
	case <-ctx.Done():
		return ctx.Err()
	}
	it, err := v.Iterator()
	if err != nil {
		return err
	}
	defer it.Release()
	got := make(map[string]int64, len(in.want))
	for it.Next() {
		val, err := it.Value()
		if err != nil {
			return err
		}
		got[it.Key()] = val.(int64)
	}
	if err := it.Err(); err != nil {
		return err
	}
	return checkCounts(got, in.want)
}
