package countbykey

import (
	"context"
	"testing"
	"time"
)

// BenchmarkCountByKey counts -countbykey.n records (default 1M) over
// -countbykey.keys keys (default 10k) with runnel, then with goka, on one
// broker. Pre-filling the inputs and checking the counts are outside the
// measurement; records/s is n over the time from the processor's start
// until every count is in the table and acknowledged in its changelog, and
// ns/op is that time.
//
//	go test ./benchmarks/countbykey -run '^$' -bench CountByKey -benchtime 1x -count 3
func BenchmarkCountByKey(b *testing.B) {
	e := getEnv(b)
	n, keys := *flagN, *flagKeys
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	// Every input is filled before the first run, so that no run shares the
	// machine with the writing of the next one's input.
	inputs := map[string]*input{}
	for _, fw := range frameworks {
		in, err := e.input(ctx, fw.name, n, keys, fw.part)
		if err != nil {
			b.Fatal(err)
		}
		inputs[fw.name] = in
	}
	// rates holds each framework's records/s, run by run: go test -count
	// repeats each sub-benchmark in turn, and goka's i-th run is compared
	// with runnel's i-th.
	rates := map[string][]float64{}
	for _, fw := range frameworks {
		b.Run(fw.name, func(b *testing.B) {
			in := inputs[fw.name]
			rate := measure(b, n, func() (time.Duration, error) { return fw.run(ctx, e, in) })
			if i := len(rates[fw.name]); fw.name == "goka" && i < len(rates["runnel"]) {
				// The goal is a ratio within one run of the binary, on one
				// broker: put it beside the figures.
				b.ReportMetric(rates["runnel"][i]/rate, "runnel/goka")
			}
			rates[fw.name] = append(rates[fw.name], rate)
		})
	}
	for i := range min(len(rates["runnel"]), len(rates["goka"])) {
		r, g := rates["runnel"][i], rates["goka"][i]
		b.Logf("run %d: %d records, %d keys: runnel %.0f records/s, goka %.0f records/s, runnel/goka %.2fx", i+1, n, keys, r, g, r/g)
	}
}

// measure runs a timed run b.N times and reports its ns/op and records/s
// for n records, which it returns. The harness times each run itself,
// verification excluded, so its figure replaces the benchmark's own clock.
func measure(b *testing.B, n int, run func() (time.Duration, error)) float64 {
	var total time.Duration
	for range b.N {
		d, err := run()
		if err != nil {
			b.Fatal(err)
		}
		total += d
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/op")
	rate := float64(n) * float64(b.N) / total.Seconds()
	b.ReportMetric(rate, "records/s")
	return rate
}

// TestCountByKey runs the benchmark's harness on a small input, so that
// go test proves that both frameworks count exactly on the bundled log.
func TestCountByKey(t *testing.T) {
	const n, keys = 20_000, 1_000
	e := getEnv(t)
	for _, fw := range frameworks {
		t.Run(fw.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			in, err := e.input(ctx, fw.name, n, keys, fw.part)
			if err != nil {
				t.Fatal(err)
			}
			d, err := fw.run(ctx, e, in)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d records over %d keys in %v (%.0f records/s)", n, keys, d, n/d.Seconds())
		})
	}
}
