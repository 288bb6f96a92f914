package main

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// window names one service's minute as the tables print it.
type window struct{ minute, service string }

// expectation is what the tables should say of a window, computed here
// from the generated requests without the stream processor.
type expectation struct {
	requests, errors int
	latencies        []int
}

func (e expectation) errorRate() string {
	return fmt.Sprintf("%.1f%%", 100*float64(e.errors)/float64(e.requests))
}

// p99 is the nearest-rank percentile: the ⌈0.99·n⌉-th smallest latency.
func (e expectation) p99() int {
	s := slices.Sorted(slices.Values(e.latencies))
	return s[int(math.Ceil(0.99*float64(len(s))))-1]
}

func expected() map[window]*expectation {
	want := map[window]*expectation{}
	for _, r := range generate(seed, minutes) {
		w := window{r.At.Truncate(time.Minute).Format("15:04"), r.Service}
		e := want[w]
		if e == nil {
			e = &expectation{}
			want[w] = e
		}
		e.requests++
		if r.Status >= 500 {
			e.errors++
		}
		e.latencies = append(e.latencies, r.LatencyMs)
	}
	return want
}

// section returns the rows of the table under the line starting with
// title: each row's fields, keyed by its window.
func section(t *testing.T, out, title string) map[window][]string {
	t.Helper()
	i := strings.Index(out, title)
	if i < 0 {
		t.Fatalf("no table %q in the output:\n%s", title, out)
	}
	lines := strings.Split(out[i:], "\n")
	rows := map[window][]string{}
	// lines[0] is the title, lines[1] the column header; the table ends
	// at the first empty line.
	for _, line := range lines[2:] {
		if line == "" {
			break
		}
		f := strings.Fields(line)
		w := window{f[0], f[1]}
		if _, dup := rows[w]; dup {
			t.Fatalf("table %q: %v twice", title, w)
		}
		rows[w] = f[2:]
	}
	return rows
}

// The program's tables match an independent calculation over the same
// generated requests: every service's minute with its count, errors, error
// rate and p99, and an alert for exactly the minutes above 5% errors.
func TestMonitoring(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out); err != nil {
		t.Fatalf("monitoring: %v\n%s", err, out.String())
	}
	got := out.String()

	want := expected()
	if len(want) != len(services)*minutes {
		t.Fatalf("the generator made %d windows, want every service in every minute: %d", len(want), len(services)*minutes)
	}
	stats := section(t, got, "requests per service and minute")
	alerted := section(t, got, "alerts (error rate above 5%)")
	wantAlerts := map[window][]string{}
	requests := 0
	for w, e := range want {
		requests += e.requests
		row := []string{fmt.Sprint(e.requests), fmt.Sprint(e.errors), e.errorRate(), fmt.Sprint(e.p99())}
		if !slices.Equal(stats[w], row) {
			t.Errorf("%s %s: printed %q, want %q", w.minute, w.service, stats[w], row)
		}
		if float64(e.errors)/float64(e.requests) > 0.05 {
			wantAlerts[w] = row[:3]
		}
	}
	for w := range stats {
		if want[w] == nil {
			t.Errorf("printed a window %s %s that has no requests", w.minute, w.service)
		}
	}
	if !maps.EqualFunc(alerted, wantAlerts, slices.Equal) {
		t.Errorf("alerts: printed %q, want %q", alerted, wantAlerts)
	}
	// The payments incident must show, or the alerts path is untested.
	for _, m := range []string{"09:03", "09:04"} {
		if wantAlerts[window{m, "payments"}] == nil {
			t.Errorf("the payments incident at %s does not alert; the generator changed?", m)
		}
	}
	summary := fmt.Sprintf("%d requests of %d services over %d minutes: %d windows, %d alerts, 0 late records",
		requests, len(services), minutes, len(want), len(wantAlerts))
	if !strings.Contains(got, summary) {
		t.Errorf("output lacks %q", summary)
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
