package runtime

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/broker"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime/internal/kafka"
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

// No input offset is committed past a record whose writes are not all
// acknowledged, however many records after it are done.
func TestNoCommitPastAnUnacknowledgedWrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	b, err := broker.Start(ctx, broker.Config{Addr: "127.0.0.1:0", Dir: t.TempDir(), GroupInitialRebalanceDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	addrs := []string{b.Addr()}

	in := topology.NewTopic("in", processor.String, processor.String)
	out := topology.NewTopic("out", processor.String, processor.String)
	g := topology.NewGroup("g", processor.String, processor.String)
	echo := topology.Output(g, out)
	topology.Input(g, in, func(ctx processor.Context[string, string], key, v string) error {
		if err := ctx.SetValue(v); err != nil {
			return err
		}
		return echo.Emit(ctx, key, v)
	})
	topo, err := topology.New(g)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := New(ctx, topo, Options{Brokers: addrs, Dir: t.TempDir(), Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	hs := &holdingSender{hold: func(r *kafka.Record) bool { return r.Topic == "out" && string(r.Value) == "held" }, release: make(chan struct{})}
	rt.wrapSender = func(s sender) sender { hs.sender = s; return hs }
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() {
		if err := rt.Run(runCtx); err != nil {
			t.Errorf("run: %v", err)
		}
	})

	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	produce := func(p int32, values ...string) {
		t.Helper()
		var recs []*kgo.Record
		for _, v := range values {
			recs = append(recs, &kgo.Record{Topic: "in", Partition: p, Key: []byte("k"), Value: []byte(v)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
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
