// Command monitoring shows runnel's event-time windows: on a log embedded
// in the process, it generates eight minutes of request events of five
// services (deterministically, from a fixed seed), computes per service and
// per minute the request count, the error rate and the p99 latency in
// 1-minute tumbling windows, emits each window's final result to the
// service-minutes topic and an alert to the alerts topic when a minute's
// error rate is above 5%, then prints both as tables and exits 0.
//
//	go run ./examples/monitoring
//
// Event time is the request's own time (a field of the event, through
// Topic.WithTimestamps), not the time it was produced, so the eight
// minutes of traffic are replayed in a second and still land in the right
// minutes.
package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
	"github.com/runnel-io/runnel/topology"
)

const (
	// seed makes the generated traffic the same on every run.
	seed = 6
	// minutes is how much event time the generated traffic spans.
	minutes = 8
	// grace is how long, in event time, a minute's window waits for
	// stragglers after it ends. The generator sends requests up to a
	// second out of order, well within it.
	grace = 10 * time.Second
	// alertPct is the error rate, in percent, above which a minute alerts.
	alertPct = 5
)

// start is when the generated traffic begins, in event time.
var start = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// Request is one request served by a service, as the service reports it.
type Request struct {
	Service   string    `json:"service"`
	At        time.Time `json:"at"`
	LatencyMs int       `json:"latency_ms,omitempty"`
	Status    int       `json:"status,omitempty"`
	// Tick marks a heartbeat rather than a request: it carries only a
	// later event time, to close the last windows (see ticks).
	Tick bool `json:"tick,omitempty"`
}

// failed reports whether the request failed on the server's side. 4xx
// answers are the client's mistake and do not count as errors.
func (r Request) failed() bool { return r.Status >= 500 }

// MinuteStats is the final result of one service's minute.
type MinuteStats struct {
	Service  string    `json:"service"`
	Minute   time.Time `json:"minute"`
	Requests int       `json:"requests"`
	Errors   int       `json:"errors"`
	P99Ms    int       `json:"p99_ms"`
}

// alerting reports whether the minute's error rate is above alertPct, in
// integers so that no rounding decides an alert.
func (m MinuteStats) alerting() bool { return m.Errors*100 > alertPct*m.Requests }

// Alert says that a service failed too many requests in a minute.
type Alert struct {
	Service  string    `json:"service"`
	Minute   time.Time `json:"minute"`
	Requests int       `json:"requests"`
	Errors   int       `json:"errors"`
}

// minuteAgg is the aggregate of a service's minute, as the windowed table
// keeps it. It holds every latency, sorted, so that the p99 is exact: a
// minute has a few hundred requests here. A service with millions a minute
// would keep a fixed-size histogram (or a t-digest) instead and report an
// approximate p99.
type minuteAgg struct {
	Requests  int   `json:"requests"`
	Errors    int   `json:"errors"`
	LatencyMs []int `json:"latency_ms"`
}

func (a minuteAgg) add(r Request) minuteAgg {
	a.Requests++
	if r.failed() {
		a.Errors++
	}
	i, _ := slices.BinarySearch(a.LatencyMs, r.LatencyMs)
	a.LatencyMs = slices.Insert(a.LatencyMs, i, r.LatencyMs)
	return a
}

// p99 is the nearest-rank 99th percentile: the smallest latency that at
// least 99% of the minute's requests did not exceed.
func (a minuteAgg) p99() int {
	if len(a.LatencyMs) == 0 {
		return 0
	}
	rank := (99*len(a.LatencyMs) + 99) / 100 // ⌈0.99·n⌉, in integers
	return a.LatencyMs[rank-1]
}

var (
	// requests is keyed by service, so that a service's requests, and
	// its windows, live in one partition.
	requests = topology.NewTopic("requests", processor.String, processor.JSON[Request]()).
			WithTimestamps(func(_ string, r Request, _ time.Time) time.Time { return r.At })
	minuteStats = topology.NewTopic("service-minutes", processor.String, processor.JSON[MinuteStats]())
	alerts      = topology.NewTopic("alerts", processor.String, processor.JSON[Alert]())
)

// monitor is the group that aggregates each service's requests per minute
// and passes on each minute's final result, once its grace period is over.
func monitor() *topology.Group[string, processor.NoTable] {
	g := topology.NewStatelessGroup("service-monitor", processor.String)
	statsOut := topology.Output(g, minuteStats)
	alertsOut := topology.Output(g, alerts)
	perMinute := topology.Windowed(g, "per-minute", topology.WindowConfig[string, processor.NoTable, minuteAgg]{
		Windows: processor.Tumbling(time.Minute).WithGrace(grace),
		Values:  processor.JSON[minuteAgg](),
		// Final: one result per service and minute, when the minute can
		// no longer change, rather than one per request.
		Emit: processor.EmitFinal,
		OnResult: func(ctx processor.Context[string, processor.NoTable], service string, w processor.Window, a minuteAgg) error {
			m := MinuteStats{Service: service, Minute: w.Start, Requests: a.Requests, Errors: a.Errors, P99Ms: a.p99()}
			if err := statsOut.Emit(ctx, service, m); err != nil {
				return err
			}
			if !m.alerting() {
				return nil
			}
			return alertsOut.Emit(ctx, service, Alert{Service: service, Minute: w.Start, Requests: a.Requests, Errors: a.Errors})
		},
	})
	topology.Input(g, requests, func(ctx processor.Context[string, processor.NoTable], _ string, r Request) error {
		if r.Tick {
			return nil // it has moved the partition's stream time on; nothing to count
		}
		_, err := perMinute.Add(ctx, func(_ processor.Window, a minuteAgg, _ bool) minuteAgg { return a.add(r) })
		return err
	})
	return g
}

// profile is how a simulated service behaves.
type profile struct {
	name      string
	maxPerSec int // each second brings 0 to maxPerSec requests, uniformly
	latencyMs int // a request takes latencyMs ± 50%...
	slowPct   int // ...but slowPct percent of them take ten times that
	errorPct  int // percent of requests answered 500
	// From minute incidentFrom to incidentTo (exclusive) the error rate
	// is incidentPct instead.
	incidentFrom, incidentTo, incidentPct int
}

var services = []profile{
	{name: "auth", maxPerSec: 6, latencyMs: 20, slowPct: 1, errorPct: 1},
	{name: "catalog", maxPerSec: 4, latencyMs: 45, slowPct: 2, errorPct: 1},
	{name: "checkout", maxPerSec: 2, latencyMs: 120, slowPct: 3, errorPct: 2},
	{name: "payments", maxPerSec: 2, latencyMs: 200, slowPct: 2, errorPct: 2, incidentFrom: 3, incidentTo: 5, incidentPct: 25},
	{name: "search", maxPerSec: 6, latencyMs: 60, slowPct: 5, errorPct: 1},
}

// generate returns the requests of every service over the given minutes
// from start, in the order they are sent: second by second, and within a
// second in random order, so up to a second out of order in event time.
func generate(seed uint64, minutes int) []Request {
	rnd := rand.New(rand.NewPCG(seed, seed))
	var out []Request
	for sec := range minutes * 60 {
		for _, p := range services {
			for range rnd.IntN(p.maxPerSec + 1) {
				r := Request{
					Service:   p.name,
					At:        start.Add(time.Duration(sec)*time.Second + time.Duration(rnd.IntN(1000))*time.Millisecond),
					LatencyMs: p.latencyMs/2 + rnd.IntN(p.latencyMs+1),
					Status:    200,
				}
				if rnd.IntN(100) < p.slowPct {
					r.LatencyMs *= 10
				}
				errorPct := p.errorPct
				if minute := sec / 60; minute >= p.incidentFrom && minute < p.incidentTo {
					errorPct = p.incidentPct
				}
				switch x := rnd.IntN(100); {
				case x < errorPct:
					r.Status = 500
				case x < errorPct+3:
					r.Status = 404
				}
				out = append(out, r)
			}
		}
	}
	return out
}

// ticks returns one heartbeat per service at the time the last minute
// closes. A window closes when its partition's stream time (the largest
// event time the partition has seen) passes its end plus the grace
// period; after the last request nothing moves stream time on, so without
// the ticks the last minute would stay open. A service's windows live in
// the partition of its key, so one tick per service key reaches every
// partition that has windows to close.
func ticks() []Request {
	closeAt := start.Add(minutes * time.Minute).Add(grace)
	var out []Request
	for _, p := range services {
		out = append(out, Request{Service: p.name, At: closeAt, Tick: true})
	}
	return out
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "monitoring:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	g := monitor()
	topo, err := topology.New(g)
	if err != nil {
		return fmt.Errorf("topology: %w", err)
	}
	rt, err := runtime.New(ctx, topo, runtime.Options{})
	if err != nil {
		return err
	}
	defer rt.Close()

	// The runtime runs until the results are in. If it stops early (a
	// handler failed), the cause cancels the wait for results at once
	// rather than at its deadline.
	runCtx, stopRun := context.WithCancelCause(ctx)
	var runErr error
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if runErr = rt.Run(runCtx); runErr != nil {
			stopRun(fmt.Errorf("runtime stopped: %w", runErr))
		}
	}()
	defer func() { stopRun(nil); <-stopped }() // before rt.Close
	work, cancelWork := context.WithTimeout(runCtx, time.Minute)
	defer cancelWork()

	reqs := generate(seed, minutes)
	if err := emit(work, rt, append(reqs, ticks()...)); err != nil {
		return err
	}
	slog.Info("emitted requests", "requests", len(reqs), "services", len(services), "minutes", minutes)

	stats, alerted, err := readResults(work, rt.Brokers(), countWindows(reqs))
	if err != nil {
		return err
	}
	stopRun(nil)
	<-stopped
	if runErr != nil {
		return fmt.Errorf("run: %w", runErr)
	}

	printStats(out, stats)
	fmt.Fprintln(out)
	printAlerts(out, alerted)
	fmt.Fprintf(out, "\n%d requests of %d services over %d minutes: %d windows, %d alerts, %d late records\n",
		len(reqs), len(services), minutes, len(stats), len(alerted), rt.Stats(g.Name()).Late.Load())
	return nil
}

// emit sends the requests, keyed by service, and waits until they are
// acknowledged.
func emit(ctx context.Context, rt *runtime.Runtime, reqs []Request) error {
	em, err := runtime.NewEmitter(ctx, rt, requests)
	if err != nil {
		return err
	}
	// Sent asynchronously (in order per key, hence per service), keeping
	// the first failure; the callbacks run on the producer's goroutine.
	var (
		mu    sync.Mutex
		first error
	)
	for _, r := range reqs {
		em.EmitAsync(r.Service, r, func(err error) {
			mu.Lock()
			defer mu.Unlock()
			first = cmp.Or(first, err)
		})
	}
	if err := em.Flush(ctx); err != nil {
		return fmt.Errorf("emit requests: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return first
}

// countWindows returns how many windows the requests fall in: how many
// final results to wait for.
func countWindows(reqs []Request) int {
	type window struct {
		service string
		minute  time.Time
	}
	seen := map[window]bool{}
	for _, r := range reqs {
		seen[window{r.Service, r.At.Truncate(time.Minute)}] = true
	}
	return len(seen)
}

// readResults reads the window results and alerts from the start of their
// topics, with a plain Kafka client, until it has the results of the given
// number of windows and the alert each alerting result calls for.
func readResults(ctx context.Context, brokers []string, windows int) ([]MinuteStats, []Alert, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(minuteStats.Name(), alerts.Name()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, nil, fmt.Errorf("read results: %w", err)
	}
	defer cl.Close()
	var (
		stats    []MinuteStats
		alerted  []Alert
		alerting int
	)
	for len(stats) < windows || len(alerted) < alerting {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("read results: %d of %d windows and %d of %d alerts: %w", len(stats), windows, len(alerted), alerting, context.Cause(ctx))
		}
		fs.EachError(func(topic string, p int32, err error) {
			slog.Warn("read results", "topic", topic, "partition", p, "err", err)
		})
		for _, rec := range fs.Records() {
			switch rec.Topic {
			case minuteStats.Name():
				m, err := minuteStats.Values().Decode(rec.Value)
				if err != nil {
					return nil, nil, fmt.Errorf("read %s: %w", rec.Topic, err)
				}
				stats = append(stats, m)
				if m.alerting() {
					alerting++
				}
			case alerts.Name():
				a, err := alerts.Values().Decode(rec.Value)
				if err != nil {
					return nil, nil, fmt.Errorf("read %s: %w", rec.Topic, err)
				}
				alerted = append(alerted, a)
			}
		}
	}
	return stats, alerted, nil
}

// byMinute orders rows by minute, then service.
func byMinute(m1 time.Time, s1 string, m2 time.Time, s2 string) int {
	return cmp.Or(m1.Compare(m2), cmp.Compare(s1, s2))
}

func printStats(out io.Writer, stats []MinuteStats) {
	slices.SortFunc(stats, func(a, b MinuteStats) int { return byMinute(a.Minute, a.Service, b.Minute, b.Service) })
	fmt.Fprintf(out, "requests per service and minute (final results, grace %v)\n", grace)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "minute\tservice\trequests\terrors\terror rate\tp99 ms\t")
	for _, m := range stats {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t\n", m.Minute.Format("15:04"), m.Service, m.Requests, m.Errors, percent(m.Errors, m.Requests), m.P99Ms)
	}
	tw.Flush()
}

func printAlerts(out io.Writer, alerted []Alert) {
	slices.SortFunc(alerted, func(a, b Alert) int { return byMinute(a.Minute, a.Service, b.Minute, b.Service) })
	fmt.Fprintf(out, "alerts (error rate above %d%%)\n", alertPct)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "minute\tservice\trequests\terrors\terror rate\t")
	for _, a := range alerted {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t\n", a.Minute.Format("15:04"), a.Service, a.Requests, a.Errors, percent(a.Errors, a.Requests))
	}
	tw.Flush()
}

// percent formats part/whole as a percentage with one decimal.
func percent(part, whole int) string {
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(whole))
}
