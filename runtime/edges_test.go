package runtime_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/internal/partition"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/topology"
)

// The tests here cover a group's edges other than its input and table:
// joins, lookups, its loop and outputs, each on both logs.

var (
	profileUpdates = topology.NewTopic("profile-updates", processor.String, processor.String)
	orders         = topology.NewTopic("orders", processor.String, processor.String)
	enriched       = topology.NewTopic("enriched", processor.String, processor.String)
)

// profilesGroup keeps each user's latest profile.
func profilesGroup() *topology.Group[string, string] {
	g := topology.NewGroup("profiles", processor.String, processor.String)
	topology.Input(g, profileUpdates, func(ctx processor.Context[string, string], _, profile string) error {
		return ctx.SetValue(profile)
	})
	return g
}

// enricherGroup joins profiles: an order of a user becomes an enriched
// record "<order>@<profile>" of the same user ("none" for a user without a
// profile).
func enricherGroup(profiles *topology.Group[string, string]) *topology.Group[string, processor.NoTable] {
	g := topology.NewStatelessGroup("enricher", processor.String)
	profile := topology.Join(g, profiles)
	out := topology.Output(g, enriched)
	topology.Input(g, orders, func(ctx processor.Context[string, processor.NoTable], user, order string) error {
		p, ok := profile.Get(ctx)
		if !ok {
			p = "none"
		}
		return out.Emit(ctx, user, order+"@"+p)
	})
	return g
}

// A group joining another's table reads, for an input record, the joined
// table's latest row of the record's key: the rows written before the
// joining group starts are restored before it processes anything, and
// later updates reach it as it runs.
func TestJoinReadsTheLatestRowOfTheKey(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		profiles := profilesGroup()
		a := startInstance(t, newTopology(t, profiles), options(t, addrs, t.TempDir(), 4))
		// Many versions of every profile, in order, the latest last, and
		// large enough that reading them takes several fetches: a joining
		// group that did not restore them before processing would not be
		// caught up by chance when the first order comes.
		const users, versions = 40, 100
		pad := strings.Repeat(".", 1000)
		emitTo(t, a.rt, profileUpdates, versions*users, users, func(i int) string { return fmt.Sprintf("v%d%s", i/users, pad) })
		last := fmt.Sprintf("v%d", versions-1)
		want := map[string]string{}
		for u := range users {
			want[fmt.Sprintf("key-%d", u)] = last + pad
		}
		awaitTable(t, a.rt, profiles, want)

		// Orders wait in their topic when the joining group starts: it
		// must restore the joined rows before it processes the first.
		createTopic(t, addrs, orders.Name(), 4, nil)
		emitTo(t, a.rt, orders, users, users, func(i int) string { return fmt.Sprintf("order-%d", i) })
		// The joining group runs in another program, whose topology does
		// not list profiles: its changelog exists, co-partitioned with
		// orders.
		b := startInstance(t, newTopology(t, enricherGroup(profiles)), options(t, addrs, t.TempDir(), 4))
		out := newTopicReader(t, addrs, enriched.Name())
		for _, r := range out.next(users) {
			var u int
			if _, err := fmt.Sscanf(string(r.Key), "key-%d", &u); err != nil {
				t.Fatalf("enriched record with key %q: %v", r.Key, err)
			}
			if got, w := strings.TrimSuffix(string(r.Value), pad), fmt.Sprintf("order-%d@%s", u, last); got != w {
				t.Fatalf("key %s: enriched %q, want %q", r.Key, got, w)
			}
		}

		// An update made while the joining group runs reaches it.
		want["key-7"] = "updated"
		emitKVs(t, a.rt, profileUpdates, kv{"key-7", "updated"})
		awaitTable(t, a.rt, profiles, want)
		awaitUpdate(t, "joined row of key-7", func(i int) string {
			emitKVs(t, b.rt, orders, kv{"key-7", fmt.Sprintf("late-%d", i)})
			return strings.TrimSuffix(string(out.next(1)[0].Value), pad)
		}, func(i int) string { return fmt.Sprintf("late-%d@%s", i, last) }, func(i int) string { return fmt.Sprintf("late-%d@updated", i) })
	})
}

// awaitUpdate sends input i (from 0 on) and gets its output from send
// until the output is updated(i): joins and lookups follow their table
// asynchronously, so outputs may show the old row, stale(i), for a while,
// but nothing else.
func awaitUpdate(t *testing.T, what string, send func(i int) string, stale, updated func(i int) string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for i := 0; ; i++ {
		got := send(i)
		switch {
		case got == updated(i):
			return
		case got != stale(i):
			t.Fatalf("%s: output %q, want %q or, while the update travels, %q", what, got, updated(i), stale(i))
		case time.Now().After(deadline):
			t.Fatalf("%s: still %q after %d inputs, want %q", what, got, i+1, updated(i))
		}
	}
}

var (
	rateUpdates = topology.NewTopic("rate-updates", processor.String, processor.String)
	prices      = topology.NewTopic("prices", processor.String, processor.String)
	priced      = topology.NewTopic("priced", processor.String, processor.String)
)

// ratesGroup keeps each currency's latest rate.
func ratesGroup() *topology.Group[string, string] {
	g := topology.NewGroup("rates", processor.String, processor.String)
	topology.Input(g, rateUpdates, func(ctx processor.Context[string, string], _, rate string) error {
		return ctx.SetValue(rate)
	})
	return g
}

// pricerGroup looks up rates: a price of an item, whose value is a
// currency, becomes "<currency>=<rate>" ("none" for an unknown currency).
func pricerGroup(rates *topology.Group[string, string]) *topology.Group[string, processor.NoTable] {
	g := topology.NewStatelessGroup("pricer", processor.String)
	rate := topology.Lookup(g, rates)
	out := topology.Output(g, priced)
	topology.Input(g, prices, func(ctx processor.Context[string, processor.NoTable], item, currency string) error {
		r, ok := rate.Get(ctx, currency)
		if !ok {
			r = "none"
		}
		return out.Emit(ctx, item, currency+"="+r)
	})
	return g
}

// A group looking up a table with a partition count of its own (allowed:
// Validate asks only that it exist) reads any of its rows, keyed unlike its
// inputs: the table as it was when the group started, and updates as it
// runs.
func TestLookupReadsAnyRowOfTheTable(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		createTopic(t, addrs, rateUpdates.Name(), 3, nil)
		rates := ratesGroup()
		a := startInstance(t, newTopology(t, rates), options(t, addrs, t.TempDir(), 8))
		emitKVs(t, a.rt, rateUpdates,
			kv{"EUR", "1.00"}, kv{"USD", "0.90"}, kv{"GBP", "1.20"}, kv{"JPY", "0.01"},
			kv{"EUR", "1.10"}, kv{"USD", "0.95"})
		latest := map[string]string{"EUR": "1.10", "USD": "0.95", "GBP": "1.20", "JPY": "0.01"}
		awaitTable(t, a.rt, rates, latest)

		// Prices wait in their topic when the looking-up group starts: its
		// view of rates must catch up before it processes the first.
		createTopic(t, addrs, prices.Name(), 8, nil)
		currencies := []string{"EUR", "USD", "GBP", "JPY", "CHF"}
		const items = 50
		var kvs []kv
		for i := range items {
			kvs = append(kvs, kv{fmt.Sprintf("item-%d", i), currencies[i%len(currencies)]})
		}
		emitKVs(t, a.rt, prices, kvs...)
		b := startInstance(t, newTopology(t, pricerGroup(rates)), options(t, addrs, t.TempDir(), 8))
		if n, err := newKadm(t, addrs).ListEndOffsets(t.Context(), prices.Name(), "rates-table"); err != nil {
			t.Fatal(err)
		} else if np, nr := len(n[prices.Name()]), len(n["rates-table"]); np != 8 || nr != 3 {
			t.Fatalf("prices has %d partitions and rates-table %d, want 8 and 3", np, nr)
		}
		out := newTopicReader(t, addrs, priced.Name())
		for _, r := range out.next(items) {
			var i int
			if _, err := fmt.Sscanf(string(r.Key), "item-%d", &i); err != nil {
				t.Fatalf("priced record with key %q: %v", r.Key, err)
			}
			c := currencies[i%len(currencies)]
			w, ok := latest[c]
			if !ok {
				w = "none"
			}
			if got := string(r.Value); got != c+"="+w {
				t.Fatalf("key %s: priced %q, want %q", r.Key, got, c+"="+w)
			}
		}

		latest["GBP"] = "1.25"
		emitKVs(t, a.rt, rateUpdates, kv{"GBP", "1.25"})
		awaitTable(t, a.rt, rates, latest)
		awaitUpdate(t, "looked-up row of GBP", func(i int) string {
			emitKVs(t, b.rt, prices, kv{fmt.Sprintf("late-%d", i), "GBP"})
			return string(out.next(1)[0].Value)
		}, func(int) string { return "GBP=1.20" }, func(int) string { return "GBP=1.25" })
	})
}

var lines = topology.NewTopic("lines", processor.String, processor.String)

// A group's loop re-keys records within the group: records sent through it
// come back to the loop handler in the partition of their new key, and
// their table writes land in that key's row.
func TestLoopRekeysWithinTheGroup(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		const partitions = 4
		var mu sync.Mutex
		var misplaced []string
		words := topology.NewGroup("words", processor.String, processor.Int64)
		loop := topology.Loop(words, processor.Int64, func(ctx processor.Context[string, int64], word string, n int64) error {
			if p := partition.For([]byte(word), partitions); ctx.Topic() != topology.LoopTopic("words") || ctx.Partition() != p {
				mu.Lock()
				misplaced = append(misplaced, fmt.Sprintf("key %s: in %s-%d, want %s-%d", word, ctx.Topic(), ctx.Partition(), topology.LoopTopic("words"), p))
				mu.Unlock()
			}
			count, _ := ctx.Value()
			return ctx.SetValue(count + n)
		})
		topology.Input(words, lines, func(ctx processor.Context[string, int64], _, line string) error {
			for _, w := range strings.Fields(line) {
				if err := loop.Emit(ctx, w, 1); err != nil {
					return err
				}
			}
			return nil
		})
		in := startInstance(t, newTopology(t, words), options(t, addrs, t.TempDir(), partitions))
		const n = 300
		want := map[string]int64{}
		kvs := make([]kv, n)
		for i := range n {
			ws := []string{fmt.Sprintf("a%d", i%7), fmt.Sprintf("b%d", i%11), fmt.Sprintf("c%d", i%13)}
			for _, w := range ws {
				want[w]++
			}
			kvs[i] = kv{fmt.Sprintf("line-%d", i), strings.Join(ws, " ")}
		}
		emitKVs(t, in.rt, lines, kvs...)
		awaitTable(t, in.rt, words, want)
		mu.Lock()
		defer mu.Unlock()
		if len(misplaced) > 0 {
			t.Fatalf("%d loop records in the wrong partition, first: %s", len(misplaced), misplaced[0])
		}
		if got := in.rt.Stats("words").Processed.Load(); got != n+3*n {
			t.Fatalf("processed %d records, want %d lines and %d looped words", got, n, 3*n)
		}
	})
}

var routed = topology.NewTopic("routed", processor.String, processor.String)

// An emitted record lands in the output partition of its key, by Kafka's
// default partitioner over the output's own partition count, and keeps the
// input record's timestamp.
func TestOutputPartitionsByKeyAndKeepsTimestamps(t *testing.T) {
	forEachLog(t, func(t *testing.T, addrs []string) {
		const inParts, outParts = 8, 5
		createTopic(t, addrs, routed.Name(), outParts, nil)
		router := topology.NewStatelessGroup("router", processor.String)
		out := topology.Output(router, routed)
		topology.Input(router, events, func(ctx processor.Context[string, processor.NoTable], key, v string) error {
			return out.Emit(ctx, "to-"+key, v)
		})
		startInstance(t, newTopology(t, router), options(t, addrs, t.TempDir(), inParts))

		// Inputs with timestamps of their own, long past.
		const n = 200
		base := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
		stamp := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
		recs := make([]*kgo.Record, n)
		for i := range n {
			key := fmt.Appendf(nil, "key-%d", i%37)
			recs[i] = &kgo.Record{Topic: events.Name(), Partition: partition.For(key, inParts), Key: key, Value: fmt.Appendf(nil, "%d", i), Timestamp: stamp(i)}
		}
		produce(t, addrs, recs...)

		used := map[int32]bool{}
		for _, r := range consume(t, addrs, routed.Name(), n) {
			var i int
			if _, err := fmt.Sscanf(string(r.Value), "%d", &i); err != nil {
				t.Fatalf("routed record %s=%q: %v", r.Key, r.Value, err)
			}
			if w := fmt.Sprintf("to-key-%d", i%37); string(r.Key) != w {
				t.Fatalf("record %d: key %s, want %s", i, r.Key, w)
			}
			if w := partition.For(r.Key, outParts); r.Partition != w {
				t.Fatalf("key %s: in partition %d, want %d", r.Key, r.Partition, w)
			}
			if w := stamp(i); !r.Timestamp.Equal(w) {
				t.Fatalf("key %s, record %d: timestamp %v, want the input's %v", r.Key, i, r.Timestamp.UTC(), w)
			}
			used[r.Partition] = true
		}
		if len(used) < 2 {
			t.Fatalf("all outputs in partitions %v: keys should spread", used)
		}
	})
}
