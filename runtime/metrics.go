package runtime

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// The runtime's metrics, all labelled with the group they count for:
//
//	runnel_records_processed_total{group,partition}      input records whose handler succeeded
//	runnel_records_failed_total{group,partition}         input records whose handler returned an error,
//	                                                      whatever the group's policy then did with them
//	runnel_records_skipped_total{group,partition}        failed records the skip policy dropped
//	runnel_records_dead_lettered_total{group,partition}  failed records sent to the dead-letter topic
//	runnel_handler_duration_seconds{group}               handler run time, of a sample of the records
//	runnel_input_next_offset{group,topic,partition}      the next offset to process, of the partitions owned now
//	runnel_input_lag_records{group,topic,partition}      the high watermark minus that offset
//	runnel_restore_records_total{group,topic,partition}  changelog records applied while restoring
//	runnel_restore_remaining_records{group,topic,partition}  records the restore running now has left
//	runnel_group_generations_total{group}                generations (rebalances) this instance took part in
//	runnel_group_partitions{group}                       partitions owned now
//	runnel_commit_duration_seconds{group}                offset commits that had offsets to commit
//
// Timer and punctuation callbacks are not records: they count in
// GroupStats but not in the records metrics.
const metricsNamespace = "runnel"

// handlerSampleEvery is how often a record's handler is timed: the first
// record of each partition, and one in handlerSampleEvery after it. Two
// clock reads and a histogram update per record would cost as much as a
// small handler; a sample of the records shows the same distribution.
const handlerSampleEvery = 16

var (
	descProcessed = prometheus.NewDesc("runnel_records_processed_total",
		"Input records whose handler succeeded, by group and partition.", []string{"group", "partition"}, nil)
	descFailed = prometheus.NewDesc("runnel_records_failed_total",
		"Input records whose handler returned an error, whatever the group's policy then did with them.", []string{"group", "partition"}, nil)
	descSkipped = prometheus.NewDesc("runnel_records_skipped_total",
		"Failed input records dropped by the skip policy.", []string{"group", "partition"}, nil)
	descDeadLettered = prometheus.NewDesc("runnel_records_dead_lettered_total",
		"Failed input records sent to the group's dead-letter topic.", []string{"group", "partition"}, nil)
	descNextOffset = prometheus.NewDesc("runnel_input_next_offset",
		"The next offset to process of an input partition this instance owns.", []string{"group", "topic", "partition"}, nil)
	descLag = prometheus.NewDesc("runnel_input_lag_records",
		"Records of an input partition this instance owns not processed yet: its high watermark minus the next offset to process.", []string{"group", "topic", "partition"}, nil)
	descRestored = prometheus.NewDesc("runnel_restore_records_total",
		"Changelog records applied to a local table partition while restoring it.", []string{"group", "topic", "partition"}, nil)
	descRemaining = prometheus.NewDesc("runnel_restore_remaining_records",
		"Changelog records the restore of a table partition has left; 0 once restored.", []string{"group", "topic", "partition"}, nil)
	descGenerations = prometheus.NewDesc("runnel_group_generations_total",
		"Generations of the consumer group this instance took part in: one per rebalance.", []string{"group"}, nil)
	descPartitions = prometheus.NewDesc("runnel_group_partitions",
		"Partitions of the group this instance owns now.", []string{"group"}, nil)
)

// metrics holds the runtime's metrics. The counts themselves live in
// atomic integers beside what they count (partitionCounters,
// restoreCounters, inputPosition) and become metrics only when scraped, by
// the collector, so that processing a record costs an atomic add rather
// than a label lookup.
type metrics struct {
	rt      *Runtime
	handler *prometheus.HistogramVec
	commit  *prometheus.HistogramVec
	groups  map[string]*groupMetrics
	// registered are the collectors given to Options.Metrics, unregistered
	// by Close so that a later runtime may register its own.
	registered []prometheus.Collector
	// gatherer is what /metrics serves: Options.Metrics if it can be
	// gathered, else own, a registry of the runtime's own.
	gatherer prometheus.Gatherer
	own      *prometheus.Registry
}

// groupMetrics are the metrics of one group. They outlive the group's
// generations: a partition's counters go on from where they were when the
// partition comes back.
type groupMetrics struct {
	handler     prometheus.Observer
	commit      prometheus.Observer
	generations atomic.Int64

	mu       sync.Mutex
	parts    map[int32]*partitionCounters
	restores map[topicPartition]*restoreCounters
}

// topicPartition names a partition of a topic.
type topicPartition struct {
	topic     string
	partition int32
}

// partitionCounters count what happened to the input records of one
// partition of a group.
type partitionCounters struct {
	processed, failed, skipped, deadLettered atomic.Int64
}

// restoreCounters count the restores of one table partition.
type restoreCounters struct {
	restored  atomic.Int64 // in every restore since the runtime started
	remaining atomic.Int64 // in the restore running now, 0 if none
}

// newMetrics makes the metrics of rt's groups and registers them with
// Options.Metrics, if set, and with a registry of their own for /metrics
// when Options.Metrics cannot be gathered.
func newMetrics(rt *Runtime) (*metrics, error) {
	m := &metrics{
		rt: rt,
		handler: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "handler_duration_seconds",
			Help:    fmt.Sprintf("How long handlers take, timed on the first record of each partition and one in %d after it.", handlerSampleEvery),
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12), // 1µs to 4s
		}, []string{"group"}),
		commit: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "commit_duration_seconds",
			Help:    "How long offset commits take, of those that had offsets to commit.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5ms to 4s
		}, []string{"group"}),
		groups: map[string]*groupMetrics{},
	}
	for _, g := range rt.topo.Groups() {
		m.groups[g.Name] = &groupMetrics{
			handler:  m.handler.WithLabelValues(g.Name),
			commit:   m.commit.WithLabelValues(g.Name),
			parts:    map[int32]*partitionCounters{},
			restores: map[topicPartition]*restoreCounters{},
		}
	}
	own := []prometheus.Collector{m.handler, m.commit, (*metricsCollector)(m)}
	if reg := rt.opts.Metrics; reg != nil {
		for _, c := range own {
			if err := reg.Register(c); err != nil {
				m.unregister()
				return nil, fmt.Errorf("runtime: register metrics: %w", err)
			}
			m.registered = append(m.registered, c)
		}
		if g, ok := reg.(prometheus.Gatherer); ok {
			m.gatherer = g
		}
	}
	if m.gatherer == nil {
		// /metrics serves a registry of the runtime's own, with the Go
		// runtime's and the process's metrics beside the runtime's.
		m.own = prometheus.NewRegistry()
		m.own.MustRegister(append(own, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))...)
		m.gatherer = m.own
	}
	return m, nil
}

// forEmbeddedLog returns where the embedded log registers its metrics:
// Options.Metrics, or, without it, the registry /metrics serves if the
// monitor is on; nil (no metrics, at no cost to the log) otherwise.
func (m *metrics) forEmbeddedLog() prometheus.Registerer {
	switch {
	case m.rt.opts.Metrics != nil:
		return m.rt.opts.Metrics
	case m.rt.opts.HTTPAddr != "":
		return m.own
	default:
		return nil
	}
}

// unregister removes the collectors registered with Options.Metrics.
func (m *metrics) unregister() {
	for _, c := range m.registered {
		m.rt.opts.Metrics.Unregister(c)
	}
	m.registered = nil
}

// partition returns the counters of partition p, made at its first
// assignment.
func (gm *groupMetrics) partition(p int32) *partitionCounters {
	gm.mu.Lock()
	defer gm.mu.Unlock()
	c := gm.parts[p]
	if c == nil {
		c = &partitionCounters{}
		gm.parts[p] = c
	}
	return c
}

// restore returns the restore counters of a table partition.
func (gm *groupMetrics) restore(topic string, p int32) *restoreCounters {
	gm.mu.Lock()
	defer gm.mu.Unlock()
	tp := topicPartition{topic, p}
	c := gm.restores[tp]
	if c == nil {
		c = &restoreCounters{}
		gm.restores[tp] = c
	}
	return c
}

// metricsCollector collects the counts kept in atomic integers, and the
// input positions of the partitions owned at the time of the scrape.
type metricsCollector metrics

// Describe implements prometheus.Collector.
func (c *metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descProcessed, descFailed, descSkipped, descDeadLettered, descNextOffset,
		descLag, descRestored, descRemaining, descGenerations, descPartitions} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	for _, spec := range c.rt.topo.Groups() {
		name := spec.Name
		gm := c.groups[name]
		counter(descGenerations, gm.generations.Load(), name)
		gauge(descPartitions, int64(c.rt.Stats(name).Partitions.Load()), name)
		gm.mu.Lock()
		for p, pc := range gm.parts {
			ps := strconv.Itoa(int(p))
			counter(descProcessed, pc.processed.Load(), name, ps)
			counter(descFailed, pc.failed.Load(), name, ps)
			counter(descSkipped, pc.skipped.Load(), name, ps)
			counter(descDeadLettered, pc.deadLettered.Load(), name, ps)
		}
		for tp, rc := range gm.restores {
			ps := strconv.Itoa(int(tp.partition))
			counter(descRestored, rc.restored.Load(), name, tp.topic, ps)
			gauge(descRemaining, rc.remaining.Load(), name, tp.topic, ps)
		}
		gm.mu.Unlock()
		h := c.rt.handler(name)
		if h == nil {
			continue
		}
		for _, st := range h.statuses() {
			for _, in := range st.positions() {
				ps := strconv.Itoa(int(st.p))
				if next := in.next.Load(); next >= 0 {
					gauge(descNextOffset, next, name, in.topic, ps)
				}
				if lag := in.lag(); lag >= 0 {
					gauge(descLag, lag, name, in.topic, ps)
				}
			}
		}
	}
}
