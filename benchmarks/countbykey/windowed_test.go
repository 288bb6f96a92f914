package countbykey

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
	"github.com/runnel-io/runnel/topology"
)

// windowed counts in per key and 1-minute tumbling window: each record
// updates one window's count in the group's state, changelogged like a
// table row, and a new window also sets its expiry timer.
func runWindowed(ctx context.Context, e *env, in *input) (time.Duration, error) {
	name := e.newGroup("windowed")
	g := topology.NewStatelessGroup(name, processor.String)
	counts := topology.Windowed(g, "counts", topology.WindowConfig[string, processor.NoTable, int64]{
		Windows: processor.Tumbling(time.Minute),
		Values:  processor.Int64,
	})
	topology.Input(g, topology.NewTopic(in.topic, processor.String, processor.Bytes), func(ctx processor.Context[string, processor.NoTable], _ string, _ []byte) error {
		_, err := counts.Add(ctx, func(_ processor.Window, n int64, _ bool) int64 { return n + 1 })
		return err
	})
	topo, err := topology.New(g)
	if err != nil {
		return 0, err
	}
	// The state changelog also holds the windows' timers and the stream
	// time, so its length says nothing of how many counts are in it.
	return timeRunnel(ctx, e, in, name, topo, topology.StateTopic(name), e.committed(name, in.topic, int64(in.n)), func(rt *runtime.Runtime) error {
		if late := rt.Stats(name).Late.Load(); late != 0 {
			return fmt.Errorf("%d records counted late; the input's timestamps only go forward", late)
		}
		return verifyWindows(ctx, e, topology.StateTopic(name), "counts", in)
	})
}

// verifyWindows reads a windowed count back from the group's state
// changelog and checks every key's count in every minute.
func verifyWindows(ctx context.Context, e *env, topic, table string, in *input) error {
	end, err := e.endOffsets(ctx, topic)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.addr()), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	// A window's state key is 0x00 (the runtime's prefix for the
	// processor's keys), the table's prefix for the record key, then the
	// window's start and end: find the key by its prefix.
	keyOf := map[string]string{}
	for k := range in.want {
		keyOf[string(append([]byte{0x00}, processor.WindowStatePrefix(table, []byte(k))...))] = k
	}
	got := map[keyMinute]int64{}
	for read := int64(0); read < end; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			return fmt.Errorf("read %s: %w", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			read++
			if len(r.Key) < 17 {
				return // the stream time
			}
			key, isWindow := keyOf[string(r.Key[:len(r.Key)-16])]
			w, ok := processor.ParseWindowStateKey(r.Key[1:])
			if !isWindow || !ok {
				return // a timer
			}
			km := keyMinute{key, w.Start}
			if r.Value == nil {
				delete(got, km)
				return
			}
			c, _ := processor.Int64.Decode(r.Value)
			got[km] = c
		})
	}
	var errs []error
	for km, want := range in.perMinute {
		if g := got[km]; g != want {
			errs = append(errs, fmt.Errorf("key %s, minute %s: count %d, want %d", km.key, km.minute.Format("15:04"), g, want))
		}
	}
	if len(got) != len(in.perMinute) {
		errs = append(errs, fmt.Errorf("%d windows, want %d", len(got), len(in.perMinute)))
	}
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("and %d more differences", len(errs)-5))
	}
	return errors.Join(errs...)
}

// BenchmarkWindowedCount counts the count-by-key input per key and
// 1-minute tumbling window (the input's timestamps span an hour: 60
// windows per key), beside the plain count of the same input in the same
// run.
//
//	go test ./benchmarks/countbykey -run '^$' -bench WindowedCount -benchtime 1x -count 3
func BenchmarkWindowedCount(b *testing.B) {
	e := getEnv(b)
	n, keys := *flagN, *flagKeys
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	in, err := e.input(ctx, "runnel", n, keys, runnelPartitioner)
	if err != nil {
		b.Fatal(err)
	}
	rates := map[string][]float64{}
	for _, c := range []struct {
		name string
		run  run
	}{{"plain", runRunnel}, {"windowed", runWindowed}} {
		b.Run(c.name, func(b *testing.B) {
			rate := measure(b, n, func() (time.Duration, error) { return c.run(ctx, e, in) })
			if i := len(rates["plain"]); c.name == "windowed" && i > 0 {
				b.ReportMetric(rates["plain"][len(rates["windowed"])]/rate, "plain/windowed")
			}
			rates[c.name] = append(rates[c.name], rate)
		})
	}
}

// TestWindowedCount runs the windowed benchmark's harness on a small input.
func TestWindowedCount(t *testing.T) {
	const n, keys = 20_000, 1_000
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in, err := e.input(ctx, "runnel", n, keys, runnelPartitioner)
	if err != nil {
		t.Fatal(err)
	}
	d, err := runWindowed(ctx, e, in)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records over %d keys in %v (%.0f records/s)", n, keys, d, n/d.Seconds())
}
