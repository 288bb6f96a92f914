package runtime

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/runnel-io/runnel/broker"
	"github.com/runnel-io/runnel/runtime/internal/kafka"
	"github.com/runnel-io/runnel/state"
	"github.com/runnel-io/runnel/topology"
)

// Options configure a Runtime. The zero value runs on an embedded log in a
// temporary directory, with goleveldb stores in another.
type Options struct {
	// Brokers are the bootstrap addresses of runnel serve or a Kafka
	// cluster. Empty (the default) starts the embedded log in this process.
	Brokers []string
	// TLS, if set, is used for every connection to Brokers: RootCAs for a
	// private CA, Certificates for a broker that requires client
	// certificates (runnel serve --tls-client-ca). Default nil: plaintext.
	TLS *tls.Config
	// SASL, if set, authenticates every connection to Brokers, with
	// franz-go's mechanisms: scram.Auth{User: u, Pass: p}.AsSha512Mechanism()
	// (package github.com/twmb/franz-go/pkg/sasl/scram) or plain.Auth
	// (.../sasl/plain, only over TLS). The user needs ACLs for the
	// topology's topics, groups and transactional ids, or to be a super
	// user. Default nil: no authentication.
	SASL sasl.Mechanism
	// Dir holds the embedded log (Dir/log) and the local table stores
	// (Dir/state). Default: a new temporary directory, removed by Close.
	Dir string
	// Stores opens a table partition's store. Default: goleveldb.
	Stores state.Opener
	// Partitions is the partition count of topics the runtime creates
	// because they are missing (inputs and outputs; tables and loops take
	// their group's input count). Default 8.
	Partitions int32
	// Logger receives the runtime's logs. Default: discard.
	Logger *slog.Logger
	// SessionTimeout is how long the group coordinator waits for a silent
	// instance before it moves the instance's partitions to the others: the
	// pause the others see when an instance dies. Default 10s.
	SessionTimeout time.Duration
	// InstanceID makes this instance a static member of its groups (Kafka's
	// group.instance.id): restarted within SessionTimeout with the same id,
	// it gets its partitions back without a rebalance, so its local stores
	// are still the right ones. Unique per instance. Default: dynamic
	// membership.
	InstanceID string
	// DeliveryTimeout bounds how long a write (a changelog record, an
	// emit, a loopback, a commit) is retried through an outage of the log,
	// such as a broker restart, before it fails (Kafka's
	// delivery.timeout.ms). A failed write stops the instance with an
	// error saying what failed and for how long it was retried; its
	// partitions' stores keep only what the changelog acknowledged.
	// Default 2 minutes.
	DeliveryTimeout time.Duration
	// Metrics, if set, receives the runtime's Prometheus metrics (listed
	// in metrics.go: records processed, failed, skipped and dead-lettered
	// per group and partition, handler and commit latencies, input lag,
	// restore progress, rebalances) and, if the runtime starts the
	// embedded log, the log's (runnel_broker_*, see broker.Config.Metrics),
	// registered by New and unregistered by Close. Two runtimes of one process sharing a registry must tell
	// their metrics apart, e.g. with prometheus.WrapRegistererWith and an
	// instance label. Default nil: the metrics are kept, for the monitor,
	// but registered nowhere; the runtime never uses the global default
	// registry unless given it.
	Metrics prometheus.Registerer
	// HTTPAddr, if set, is the address (e.g. "127.0.0.1:9645"; port 0
	// picks a free one, see MonitorAddr) on which the runtime serves, from
	// New until Close, its monitor page at / (the topology, the partitions
	// this instance owns, a table query box), the page's JSON API under
	// /api/, and its metrics at /metrics: those of Metrics if it is a
	// prometheus.Gatherer (a *prometheus.Registry is), else those of a
	// registry of the runtime's own (the runtime's, the embedded log's,
	// Go's and the process's). The server has no authentication and
	// shows table rows: listen on loopback, or behind a proxy that checks
	// who asks. Default "": no server.
	HTTPAddr string
}

// Runtime runs a topology: on Run, every group joins its consumer group,
// restores the table partitions it is assigned and processes their inputs.
type Runtime struct {
	topo   *topology.Topology
	opts   Options
	logger *slog.Logger
	tmp    string
	embed  *broker.Broker
	client *kafka.Client

	// counts are the partition counts of every topic of the topology.
	counts map[string]int32

	mu       sync.Mutex
	stats    map[string]*GroupStats
	handlers map[string]*groupHandler // by group, once Run started them

	// views are the monitor's views of tables, by group. viewsMu is held
	// while one starts, so that one query's wait does not hold up rt.mu.
	viewsMu sync.Mutex
	views   map[string]*view

	metrics *metrics
	monitor *monitorServer // nil without Options.HTTPAddr
	// bg lives until Close, for what the runtime runs outside Run (the
	// monitor's views).
	bg     context.Context
	stopBg context.CancelFunc

	// wrapSender, set only by tests of this package before Run, stands
	// between the groups and the producer, to hold acknowledgements back.
	wrapSender func(sender) sender
}

// New connects to the log (starting the embedded one if no brokers are
// given) and makes sure every topic of the topology exists with the right
// partition count and cleanup policy.
func New(ctx context.Context, topo *topology.Topology, opts Options) (*Runtime, error) {
	rt := &Runtime{topo: topo, opts: opts, logger: opts.Logger, stats: map[string]*GroupStats{},
		handlers: map[string]*groupHandler{}, views: map[string]*view{}}
	rt.bg, rt.stopBg = context.WithCancel(context.WithoutCancel(ctx))
	if rt.logger == nil {
		rt.logger = slog.New(slog.DiscardHandler)
	}
	if rt.opts.Partitions <= 0 {
		rt.opts.Partitions = 8
	}
	if rt.opts.DeliveryTimeout <= 0 {
		rt.opts.DeliveryTimeout = kafka.DefaultDeliveryTimeout
	}
	ok := false
	defer func() {
		if !ok {
			rt.Close()
		}
	}()
	if rt.opts.Dir == "" {
		dir, err := os.MkdirTemp("", "runnel-")
		if err != nil {
			return nil, fmt.Errorf("runtime: %w", err)
		}
		rt.opts.Dir, rt.tmp = dir, dir
	}
	if rt.opts.Stores == nil {
		rt.opts.Stores = state.LevelDBOpener(state.LevelDBOptions{})
	}
	for _, g := range topo.Groups() {
		rt.stats[g.Name] = &GroupStats{}
	}
	var err error
	if rt.metrics, err = newMetrics(rt); err != nil {
		return nil, err
	}
	brokers := rt.opts.Brokers
	if len(brokers) == 0 {
		b, err := broker.Start(ctx, broker.Config{
			Addr: "127.0.0.1:0", Dir: filepath.Join(rt.opts.Dir, "log"),
			Logger: rt.logger, GroupInitialRebalanceDelay: -1,
			Metrics: rt.metrics.forEmbeddedLog(),
		})
		if err != nil {
			return nil, fmt.Errorf("runtime: start embedded log: %w", err)
		}
		rt.embed = b
		brokers = []string{b.Addr()}
	}
	cl, err := kafka.New(ctx, kafka.Config{
		Brokers: brokers, ClientID: "runnel", Logger: rt.logger,
		TLS: rt.clientTLS(), SASL: rt.clientSASL(),
		SessionTimeout: rt.opts.SessionTimeout, InstanceID: rt.opts.InstanceID, DeliveryTimeout: rt.opts.DeliveryTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	rt.client = cl
	if err := rt.ensureTopics(ctx); err != nil {
		return nil, err
	}
	if rt.opts.HTTPAddr != "" {
		if rt.monitor, err = startMonitor(rt, rt.opts.HTTPAddr); err != nil {
			return nil, err
		}
	}
	ok = true
	return rt, nil
}

// Brokers returns the bootstrap addresses the runtime uses (the embedded
// log's when it runs one).
func (rt *Runtime) Brokers() []string {
	if rt.embed != nil {
		return []string{rt.embed.Addr()}
	}
	return rt.opts.Brokers
}

// ensureTopics creates what is missing: inputs and outputs with
// Options.Partitions, tables (compacted) and loops with their group's input
// partition count; then validates co-partitioning against the real counts.
// Joined and looked-up tables are created only as the tables of their
// groups, and so is a changelog that another group reads as an input.
func (rt *Runtime) ensureTopics(ctx context.Context) error {
	counts := map[string]int32{}
	count := func(topic string, def int32) (int32, error) {
		if n, ok := counts[topic]; ok {
			return n, nil
		}
		n, err := rt.client.Partitions(ctx, topic)
		if errors.Is(err, kafka.ErrUnknownTopic) {
			if err := rt.client.EnsureTopic(ctx, topic, def, nil); err != nil {
				return 0, fmt.Errorf("runtime: create %s: %w", topic, err)
			}
			n, err = def, nil
		}
		if err != nil {
			return 0, fmt.Errorf("runtime: %w", err)
		}
		counts[topic] = n
		return n, nil
	}
	// A group that reads another group's changelog as an input is set up
	// after that group, so that the changelog is created as a table
	// (compacted, with its group's input count) rather than as a plain
	// input with Options.Partitions.
	groups := rt.topo.Groups()
	byTable := map[string]topology.GroupSpec{}
	for _, g := range groups {
		if g.Table != "" {
			byTable[g.Table] = g
		}
	}
	done, busy := map[string]bool{}, map[string]bool{}
	var ensure func(g topology.GroupSpec) error
	ensure = func(g topology.GroupSpec) error {
		if done[g.Name] || busy[g.Name] {
			return nil // busy: a cycle of groups reading each other's tables
		}
		busy[g.Name] = true
		defer func() { done[g.Name], busy[g.Name] = true, false }()
		for _, in := range g.Inputs {
			if owner, ok := byTable[in.Topic]; ok && owner.Name != g.Name {
				if err := ensure(owner); err != nil {
					return err
				}
			}
		}
		return rt.ensureGroupTopics(ctx, g, counts, count)
	}
	for _, g := range groups {
		if err := ensure(g); err != nil {
			return err
		}
	}
	if err := rt.topo.Validate(counts); err != nil {
		return fmt.Errorf("runtime: %w", err)
	}
	rt.counts = counts
	return nil
}

// ensureGroupTopics creates what is missing of one group's topics (see
// ensureTopics) and records their partition counts in counts.
func (rt *Runtime) ensureGroupTopics(ctx context.Context, g topology.GroupSpec, counts map[string]int32, count func(string, int32) (int32, error)) error {
	var inputs int32
	for _, in := range g.Inputs {
		if in.Loop {
			continue
		}
		n, err := count(in.Topic, rt.opts.Partitions)
		if err != nil {
			return err
		}
		if inputs == 0 {
			inputs = n
		}
	}
	for _, out := range append(g.Outputs, deadLetterTopic(g)...) {
		if _, err := count(out, rt.opts.Partitions); err != nil {
			return err
		}
	}
	if g.Table != "" {
		if err := rt.client.EnsureTopic(ctx, g.Table, inputs, map[string]string{"cleanup.policy": "compact"}); err != nil {
			return fmt.Errorf("runtime: table of group %s: %w", g.Name, err)
		}
		counts[g.Table] = inputs
	}
	if g.State != "" {
		if err := rt.client.EnsureTopic(ctx, g.State, inputs, map[string]string{"cleanup.policy": "compact"}); err != nil {
			return fmt.Errorf("runtime: state of group %s: %w", g.Name, err)
		}
		counts[g.State] = inputs
	}
	if g.Loop != "" {
		if err := rt.client.EnsureTopic(ctx, g.Loop, inputs, nil); err != nil {
			return fmt.Errorf("runtime: loop of group %s: %w", g.Name, err)
		}
		counts[g.Loop] = inputs
	}
	for _, ref := range append(g.Joins, g.Lookups...) {
		// A table's changelog is created by its own group's turn,
		// compacted, whichever group comes first; one missing whose
		// group is not in the topology is Validate's to report.
		if _, ok := counts[ref.Topic]; ok {
			continue
		}
		n, err := rt.client.Partitions(ctx, ref.Topic)
		if errors.Is(err, kafka.ErrUnknownTopic) {
			continue
		}
		if err != nil {
			return fmt.Errorf("runtime: %w", err)
		}
		counts[ref.Topic] = n
	}
	return nil
}

func deadLetterTopic(g topology.GroupSpec) []string {
	if t := g.Policy.Topic(); t != "" {
		return []string{t}
	}
	return nil
}

// Stats returns the counters of a group in this instance, or nil if the
// topology has no such group.
func (rt *Runtime) Stats(group string) *GroupStats {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.stats[group]
}

// handler returns the handler of a group that Run started, nil if none.
func (rt *Runtime) handler(group string) *groupHandler {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.handlers[group]
}

// Close stops the monitor, unregisters the metrics, closes the connection
// and, if the runtime started it, the embedded log, and removes the
// temporary directory it made. Stop Run first (cancel its context).
func (rt *Runtime) Close() error {
	var errs []error
	if rt.monitor != nil {
		errs = append(errs, rt.monitor.close())
	}
	if rt.metrics != nil {
		rt.metrics.unregister()
	}
	if rt.stopBg != nil {
		rt.stopBg()
	}
	if rt.client != nil {
		errs = append(errs, rt.client.Close())
	}
	if rt.embed != nil {
		errs = append(errs, rt.embed.Close())
	}
	if rt.tmp != "" {
		errs = append(errs, os.RemoveAll(rt.tmp))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("runtime: close: %w", err)
	}
	return nil
}

// clientTLS and clientSASL are Options.TLS and Options.SASL for Brokers;
// the embedded log needs neither.
func (rt *Runtime) clientTLS() *tls.Config {
	if rt.embed != nil {
		return nil
	}
	return rt.opts.TLS
}

func (rt *Runtime) clientSASL() sasl.Mechanism {
	if rt.embed != nil {
		return nil
	}
	return rt.opts.SASL
}
