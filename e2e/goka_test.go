package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
)

// TestGoka is scenario 6 of issue 5: goka, a Kafka stream-processing
// library that knows nothing of runnel, runs unchanged against `runnel
// serve`. A goka emitter produces the input; a goka processor, with a
// group table it creates itself, counts it by key; a goka view, rebuilt
// from the table's changelog, then holds every key's true count, exactly
// (nothing is killed). goka runs in the test's process; the broker is the
// separate `runnel serve` process.
//
// goka keeps its own defaults (Kafka protocol level 2.0, snappy
// compression, acks from the leader, FNV-1a partitioning, its
// co-partitioning assignor) but for two settings every deployment on a
// one-node log makes: replication factor 1 for the topics it creates, and
// streams read from their oldest offset so that no input record is
// missed while the processor starts.
func TestGoka(t *testing.T) {
	sz := scenarioSize(size{records: 50_000, keys: 2_000}, size{records: 10_000, keys: 500})
	rng := newRand(t)
	began := time.Now()
	_, addr := startBroker(t, t.TempDir(), "127.0.0.1:0")
	c := connect(t, addr)
	brokers := []string{addr}
	logs := newGokaLog(t)

	// The harness's group name, whose goka table is the harness's table
	// topic: goka names a group's table <group>-table too.
	gg := goka.DefineGroup(goka.Group(group),
		goka.Input(goka.Stream(inputTopic), new(codec.Bytes), func(ctx goka.Context, _ any) {
			n, _ := ctx.Value().(int64)
			ctx.SetValue(n + 1)
		}),
		goka.Persist(gokaInt64{}),
	)
	proc, err := goka.NewProcessor(brokers, gg,
		goka.WithStorageBuilder(storage.DefaultBuilder(t.TempDir())),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(gokaConfig(), gokaTopics())),
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(gokaConfig())),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(gokaConfig())),
		goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(gokaConfig())),
		goka.WithLogger(logs),
	)
	if err != nil {
		t.Fatalf("goka processor: %v", err)
	}
	stopProc := runGoka(t, c, "goka processor", proc.Run)

	em, err := goka.NewEmitter(brokers, goka.Stream(inputTopic), new(codec.Bytes),
		goka.WithEmitterProducerBuilder(goka.ProducerBuilderWithConfig(gokaConfig())),
		goka.WithEmitterLogger(logs))
	if err != nil {
		t.Fatalf("goka emitter: %v", err)
	}
	// Finish waits for goka's own callbacks, not for those added here.
	var acks sync.WaitGroup
	for range sz.records {
		key := fmt.Sprintf("key-%06d", rng.IntN(sz.keys))
		acks.Add(1)
		p, err := em.Emit(key, binary.BigEndian.AppendUint64(nil, rng.Uint64()))
		if err != nil {
			t.Fatalf("goka emitter: emit key %s: %v", key, err)
		}
		p.Then(func(err error) {
			c.record(key, err)
			acks.Done()
		})
	}
	if err := em.Finish(); err != nil {
		t.Fatalf("goka emitter: finish: %v", err)
	}
	acks.Wait()
	c.flush(time.Minute) // reports the first failed emit
	// goka commits an input offset once the table write of its record is
	// acknowledged: at the input's end, the changelog holds every count.
	c.awaitCommitted(-1, 2*time.Minute)
	consumed := time.Since(began)
	if err := stopProc(); err != nil {
		t.Fatalf("goka processor: %v", err)
	}

	view, err := goka.NewView(brokers, goka.GroupTable(goka.Group(group)), gokaInt64{},
		goka.WithViewStorageBuilder(storage.MemoryBuilder()),
		goka.WithViewTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(gokaConfig(), gokaTopics())),
		goka.WithViewConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(gokaConfig())),
		goka.WithViewLogger(logs),
	)
	if err != nil {
		t.Fatalf("goka view: %v", err)
	}
	stopView := runGoka(t, c, "goka view", view.Run)
	// A view is running once it has caught up with the changelog's end as
	// it was when the view started.
	select {
	case <-view.WaitRunning():
	case <-time.After(time.Minute):
		c.checkAlive()
		t.Fatalf("goka view not caught up with %s within a minute", tableTopic)
	}
	checkGokaView(t, c, view)
	if err := stopView(); err != nil {
		t.Fatalf("goka view: %v", err)
	}
	// The same counts, read from the changelog by a client of another
	// family: goka's snappy batches are served as written.
	c.checkExact(c.readTable(addr), "nothing was killed")
	c.mu.Lock()
	acked := c.acked
	c.mu.Unlock()
	t.Logf("goka counted %d records over %d keys on runnel serve; input consumed after %v", acked, sz.keys, consumed.Round(time.Millisecond))
}

// checkGokaView fails the test for every key whose count in the view is
// not its true count, read both by key (which finds the key's partition
// with goka's partitioner) and by iterating the whole table.
func checkGokaView(t *testing.T, c *cluster, view *goka.View) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	bad := 0
	report := func(format string, args ...any) {
		bad++
		if bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	for k, want := range c.counts {
		v, err := view.Get(k)
		if err != nil {
			t.Fatalf("goka view: get %q: %v", k, err)
		}
		if got, _ := v.(int64); v == nil || got != want {
			report("key %q: goka view's count %v, want %d", k, v, want)
		}
	}
	it, err := view.Iterator()
	if err != nil {
		t.Fatalf("goka view: iterator: %v", err)
	}
	defer it.Release()
	n := 0
	for it.Next() {
		n++
		v, err := it.Value()
		if err != nil {
			t.Fatalf("goka view: key %q: %v", it.Key(), err)
		}
		if want, ok := c.counts[it.Key()]; !ok {
			report("key %q: goka view's count %v, but it was never produced", it.Key(), v)
		} else if got, _ := v.(int64); got != want {
			report("key %q: goka view's count %v when iterated, want %d", it.Key(), v, want)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("goka view: iterate: %v", err)
	}
	if bad > 20 {
		t.Errorf("... and %d more keys are wrong", bad-20)
	}
	if n != len(c.counts) {
		t.Errorf("goka view holds %d keys, want %d", n, len(c.counts))
	}
}

// runGoka runs a goka processor's or view's Run on a goroutine until the
// returned stop is called, which returns Run's error (nil if Run ended
// because stop cancelled it). The cluster's waits fail as soon as Run
// returns by itself, and the test's cleanup stops it if the test did not.
func runGoka(t *testing.T, c *cluster, name string, run func(context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = run(ctx)
	}()
	c.others = append(c.others, func() error {
		select {
		case <-done:
			if ctx.Err() == nil {
				return fmt.Errorf("%s stopped by itself: %v", name, runErr)
			}
		default:
		}
		return nil
	})
	var once sync.Once
	stop = func() error {
		once.Do(func() {
			cancel()
			<-done
			if errors.Is(runErr, context.Canceled) {
				runErr = nil
			}
			if runErr != nil {
				runErr = fmt.Errorf("%s: %w", name, runErr)
			}
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return stop
}

// gokaConfig returns goka's default sarama configuration, but for streams
// read from their oldest offset. Each builder gets a config of its own,
// because goka's builders write their client id into the one they are
// given.
func gokaConfig() *sarama.Config {
	cfg := goka.DefaultConfig()
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	return cfg
}

// gokaTopics is goka's default topic manager configuration with the
// replication factor a one-node log has, 1 (goka's default is 2).
func gokaTopics() *goka.TopicManagerConfig {
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication = 1
	tmc.Stream.Replication = 1
	return tmc
}

// gokaInt64 is a goka codec of int64 as 8 bytes big-endian, the encoding
// of processor.Int64, so that the harness reads goka's table as it reads
// runnel's.
type gokaInt64 struct{}

func (gokaInt64) Encode(v any) ([]byte, error) {
	n, ok := v.(int64)
	if !ok {
		return nil, fmt.Errorf("int64 codec: cannot encode a %T", v)
	}
	return binary.BigEndian.AppendUint64(nil, uint64(n)), nil
}

func (gokaInt64) Decode(b []byte) (any, error) {
	if len(b) != 8 {
		return nil, fmt.Errorf("int64 codec: %d bytes, want 8", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// gokaLog keeps goka's log lines, which it writes at every rebalance and
// partition state change, and shows the last of them if the test fails.
type gokaLog struct {
	mu    sync.Mutex
	lines []string
}

func newGokaLog(t *testing.T) *gokaLog {
	l := &gokaLog{}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		tail := l.lines[max(0, len(l.lines)-40):]
		t.Logf("last %d lines of goka's log:", len(tail))
		for _, line := range tail {
			t.Logf("  goka: %s", line)
		}
	})
	return l
}

func (l *gokaLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
}

func (l *gokaLog) Print(v ...any)                 { l.add(fmt.Sprint(v...)) }
func (l *gokaLog) Println(v ...any)               { l.add(fmt.Sprint(v...)) }
func (l *gokaLog) Printf(format string, v ...any) { l.add(fmt.Sprintf(format, v...)) }
