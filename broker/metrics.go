package broker

import (
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The broker's Prometheus metrics, listed in Config.Metrics's comment.
//
// The counters and histograms are updated once per request, with atomic
// operations on children resolved when the broker starts, so that the
// request path takes no lock and allocates nothing for them (a request
// answered with an error looks its error label up in the vector, under a
// read lock). The gauges are read from the log and the group coordinator
// when scraped, which costs the write path nothing. Labels are bounded: api
// by the dispatch table, error by Kafka's error codes, topic by the topics
// that exist (never per partition) and state by the group states.

// errorNone and errorClosed are the error label of a request answered
// without an error code, and of one answered by closing the connection (an
// acks=0 produce that failed, a handler that panicked).
const (
	errorNone   = "none"
	errorClosed = "closed"
)

// metrics is a broker's metrics; a Broker without Config.Metrics has none.
type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector // registered, in order
	byAPI      map[int16]*apiMetrics
}

// apiMetrics is what one API of the dispatch table updates, resolved once.
type apiMetrics struct {
	name     string
	requests *prometheus.CounterVec
	ok       prometheus.Counter // requests{api, error="none"}
	in, out  prometheus.Counter
	latency  prometheus.Observer // Produce and Fetch only; nil for the rest
	codes    *codePlan
}

// newMetrics registers b's metrics with reg. It must run once the dispatch
// table is built. On error nothing stays registered.
func newMetrics(b *Broker, reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "runnel", "broker"
	// From a produce answered from memory (~100µs) to a fetch that
	// long-polled for Kafka's default max wait (500ms) or a client's longer
	// one.
	latencyBuckets := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "requests_total",
		Help: `Kafka requests answered, by API and by the response's error: "none" if it has no error code; ` +
			`if it has several (per topic, partition, group or resource), the first non-zero one in response order; ` +
			`"closed" if the broker answered by closing the connection.`,
	}, []string{"api", "error"})
	bytesIn := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "request_bytes_total",
		Help: "Bytes of Kafka requests read, size prefix included, by API.",
	}, []string{"api"})
	bytesOut := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "response_bytes_total",
		Help: "Bytes of Kafka responses written, size prefix included, by API.",
	}, []string{"api"})
	produce := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: sub, Name: "produce_duration_seconds",
		Help: "Time from a Produce request's arrival until its response is sent, including the wait for " +
			"durability under acks=-1; for acks=0, to the end of the append.",
		Buckets: latencyBuckets,
	})
	fetch := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: sub, Name: "fetch_duration_seconds",
		Help: "Time from a Fetch request's arrival until its response is sent. It includes the long poll: " +
			"a fetch that finds less than its min bytes waits up to its max wait for data, " +
			"so idle consumers show here as their max wait, not as a slow broker.",
		Buckets: latencyBuckets,
	})
	m := &metrics{reg: reg, byAPI: make(map[int16]*apiMetrics, len(b.apis))}
	for _, c := range []prometheus.Collector{requests, bytesIn, bytesOut, produce, fetch, newStateCollector(b)} {
		if err := reg.Register(c); err != nil {
			m.unregister()
			return nil, fmt.Errorf("register metrics: %w", err)
		}
		m.collectors = append(m.collectors, c)
	}
	for key, a := range b.apis {
		name := a.key.Name()
		am := &apiMetrics{
			name:     name,
			requests: requests,
			ok:       requests.WithLabelValues(name, errorNone),
			in:       bytesIn.WithLabelValues(name),
			out:      bytesOut.WithLabelValues(name),
			codes:    planCodes(reflect.TypeOf(a.key.Response()).Elem(), map[reflect.Type]*codePlan{}),
		}
		switch a.key {
		case kmsg.Produce:
			am.latency = produce
		case kmsg.Fetch:
			am.latency = fetch
		}
		m.byAPI[key] = am
	}
	return m, nil
}

// api returns the metrics of the API with key; nil if the broker keeps no
// metrics, which every apiMetrics method accepts.
func (m *metrics) api(key int16) *apiMetrics {
	if m == nil {
		return nil
	}
	return m.byAPI[key]
}

// unregister removes the metrics from their Registerer, so that a broker
// started later may register its own.
func (m *metrics) unregister() {
	if m == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
	m.collectors = nil
}

// now returns the time a request arrived, if metrics need it.
func (m *apiMetrics) now() time.Time {
	if m == nil || m.latency == nil {
		return time.Time{}
	}
	return time.Now()
}

// read counts a request frame of size bytes, its size prefix excluded.
func (m *apiMetrics) read(size int) {
	if m != nil {
		m.in.Add(float64(size + 4))
	}
}

// answered counts a request once its outcome is written: resp, framed in
// written bytes, or nothing for an acks=0 produce (resp nil).
func (m *apiMetrics) answered(start time.Time, resp kmsg.Response, written int) {
	if m == nil {
		return
	}
	code := int16(0)
	if resp != nil {
		code = m.codes.first(reflect.ValueOf(resp).Elem())
		m.out.Add(float64(written))
	}
	if code == 0 {
		m.ok.Inc()
	} else {
		m.requests.WithLabelValues(m.name, errorLabel(code)).Inc()
	}
	if m.latency != nil {
		m.latency.Observe(time.Since(start).Seconds())
	}
}

// closed counts a request answered by closing the connection.
func (m *apiMetrics) closed(start time.Time) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(m.name, errorClosed).Inc()
	if m.latency != nil {
		m.latency.Observe(time.Since(start).Seconds())
	}
}

// errorLabel is the error label of a non-zero Kafka error code: its name as
// Kafka spells it (UNKNOWN_TOPIC_OR_PARTITION), which is also the label
// value of Kafka's own ErrorsPerSec metric, or the number if kerr does not
// know it.
func errorLabel(code int16) string {
	if e := kerr.TypedErrorForCode(code); e != nil && e.Code == code {
		return e.Message
	}
	return strconv.Itoa(int(code))
}

// codePlan says where one kmsg response type keeps its error codes: the
// index of its own ErrorCode field (-1 if none), and the struct fields and
// slices of structs below it that hold more. Plans are made by reflection
// once per API, when the broker starts, rather than written per response
// type, so that an API added to the dispatch table is counted right with
// nothing more to write.
type codePlan struct {
	errorCode int
	nested    []nestedCodes
}

// nestedCodes is a field of a struct that holds error codes below it.
type nestedCodes struct {
	field int
	slice bool // a slice of structs, not a struct
	plan  *codePlan
}

// planCodes makes the plan of struct type t. seen holds the plans made or
// being made, so that a type met twice is planned once (and a recursive
// type, which kmsg does not have, would not recurse forever).
func planCodes(t reflect.Type, seen map[reflect.Type]*codePlan) *codePlan {
	if p := seen[t]; p != nil {
		return p
	}
	p := &codePlan{errorCode: -1}
	seen[t] = p
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		ft, slice := f.Type, false
		if ft.Kind() == reflect.Slice {
			ft, slice = ft.Elem(), true
		}
		switch {
		case f.Name == "ErrorCode" && f.Type.Kind() == reflect.Int16:
			p.errorCode = i
		case ft.Kind() == reflect.Struct:
			if sub := planCodes(ft, seen); sub.errorCode >= 0 || len(sub.nested) > 0 {
				p.nested = append(p.nested, nestedCodes{field: i, slice: slice, plan: sub})
			}
		}
	}
	return p
}

// first returns the first non-zero error code of v, a struct of the plan's
// type: its own, then depth first in field and element order; 0 if none.
func (p *codePlan) first(v reflect.Value) int16 {
	if p.errorCode >= 0 {
		if c := int16(v.Field(p.errorCode).Int()); c != 0 {
			return c
		}
	}
	for _, n := range p.nested {
		f := v.Field(n.field)
		if !n.slice {
			if c := n.plan.first(f); c != 0 {
				return c
			}
			continue
		}
		for i := range f.Len() {
			if c := n.plan.first(f.Index(i)); c != 0 {
				return c
			}
		}
	}
	return 0
}

// stateCollector reads the broker's gauges when scraped.
type stateCollector struct {
	b                                  *Broker
	partitions, logSize, groups, conns *prometheus.Desc
	txns, openTxns                     *prometheus.Desc
	offline                            *prometheus.Desc
}

func newStateCollector(b *Broker) *stateCollector {
	return &stateCollector{
		b: b,
		partitions: prometheus.NewDesc("runnel_broker_topic_partitions",
			"Partitions of each topic, internal topics included.", []string{"topic"}, nil),
		logSize: prometheus.NewDesc("runnel_broker_log_size_bytes",
			"Bytes held by the segments of each topic's partitions.", []string{"topic"}, nil),
		groups: prometheus.NewDesc("runnel_broker_groups",
			"Consumer groups in each state (Empty, PreparingRebalance, CompletingRebalance, Stable).", []string{"state"}, nil),
		conns: prometheus.NewDesc("runnel_broker_connections",
			"Client connections open.", nil, nil),
		txns: prometheus.NewDesc("runnel_broker_transactions_total",
			"Transactions ended, by outcome: commit, abort (by the producer), timeout (aborted by the broker "+
				"after transaction.timeout.ms) and fenced (aborted because a new producer with the same "+
				"transactional id took over).", []string{"outcome"}, nil),
		openTxns: prometheus.NewDesc("runnel_broker_open_transactions",
			"Transactions open now.", nil, nil),
		offline: prometheus.NewDesc("runnel_broker_offline_partitions",
			"Partitions whose log is offline after a failed write or fsync: they answer KAFKA_STORAGE_ERROR "+
				"until the broker restarts and recovers them.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.partitions
	ch <- c.logSize
	ch <- c.groups
	ch <- c.conns
	ch <- c.txns
	ch <- c.openTxns
	ch <- c.offline
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.b.log.Topics() {
		parts := t.Partitions()
		var size int64
		for _, p := range parts {
			size += p.Size()
		}
		ch <- prometheus.MustNewConstMetric(c.partitions, prometheus.GaugeValue, float64(len(parts)), t.Name())
		ch <- prometheus.MustNewConstMetric(c.logSize, prometheus.GaugeValue, float64(size), t.Name())
	}
	for state, n := range c.b.groups.CountByState() {
		ch <- prometheus.MustNewConstMetric(c.groups, prometheus.GaugeValue, float64(n), state)
	}
	c.b.mu.Lock()
	n := len(c.b.conns)
	c.b.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.conns, prometheus.GaugeValue, float64(n))
	ts := c.b.txns.Stats()
	for outcome, v := range map[string]uint64{"commit": ts.Commits, "abort": ts.Aborts, "timeout": ts.Timeouts, "fenced": ts.Fencings} {
		ch <- prometheus.MustNewConstMetric(c.txns, prometheus.CounterValue, float64(v), outcome)
	}
	ch <- prometheus.MustNewConstMetric(c.openTxns, prometheus.GaugeValue, float64(ts.Open))
	ch <- prometheus.MustNewConstMetric(c.offline, prometheus.GaugeValue, float64(c.b.log.OfflinePartitions()))
}
