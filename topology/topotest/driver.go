package topotest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/runnel-io/runnel/internal/core"
	"github.com/runnel-io/runnel/internal/partition"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/topology"
)

// DefaultTime is the timestamp of fed records that are not given one with
// [At]: a fixed instant, so that tests are repeatable.
func DefaultTime() time.Time { return time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) }

// maxSteps bounds the records one Feed may cause, so that a loop that never
// ends fails the test instead of hanging it.
const maxSteps = 100_000

// Driver runs a topology in memory. It is not safe for concurrent use.
type Driver struct {
	t          testing.TB
	ctx        context.Context
	partitions int32                          // of every topic
	consumers  map[string][]consumer          // by topic
	groups     []*groupState                  // in the topology's order
	byName     map[string]*groupState         // the same, by name
	tables     map[string][]map[string][]byte // by group, then partition, then key
	logs       map[string][]Record            // by topic, in the order written
	ends       map[string][]int64             // by topic, each partition's next offset
	queue      []delivery                     // records waiting for a handler
	skipped    map[string]int                 // by group
	stopped    error                          // the failure that stopped the driver
	clock      time.Time                      // the wall clock

	// op names the call of the test being run, and steps counts the
	// records and callbacks it ran, for the endless-loop guard.
	op    string
	steps int
}

// consumer is a group's handler of one topic.
type consumer struct {
	group   *groupState
	handler processor.RawHandler
	// loop is true for the group's loop topic, whose records do not move
	// stream time.
	loop bool
}

// delivery is a record to pass to one consumer.
type delivery struct {
	topic string
	index int // in logs[topic]
	to    consumer
}

// Record is a record written to a topic of the driver.
type Record struct {
	Topic string
	// Partition is the partition of the record's key, or, for a changelog
	// write, the partition of the group that made it; 0 with one
	// partition per topic.
	Partition int32
	// Offset is the record's offset in its partition.
	Offset    int64
	Timestamp time.Time
	Key       []byte
	Value     []byte // nil for a tombstone
	Headers   []processor.Header
	// Group is the group whose handler wrote the record (an emit, a
	// loopback, a changelog write, a dead letter), "" if the test fed it.
	Group string
}

// New returns a driver running topo, with empty tables and state, its wall
// clock at [DefaultTime], configured by opts. It fails the test if topo
// does not validate with every topic having the driver's partition count.
func New(t testing.TB, topo *topology.Topology, opts ...DriverOption) *Driver {
	t.Helper()
	cfg := driverConfig{partitions: 1}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.partitions < 1 {
		t.Fatalf("topotest: %d partitions per topic: there must be at least one", cfg.partitions)
	}
	d := &Driver{
		t:          t,
		ctx:        t.Context(),
		partitions: cfg.partitions,
		consumers:  make(map[string][]consumer),
		byName:     make(map[string]*groupState),
		tables:     make(map[string][]map[string][]byte),
		logs:       make(map[string][]Record),
		ends:       make(map[string][]int64),
		skipped:    make(map[string]int),
		clock:      DefaultTime(),
	}
	partitions := make(map[string]int32)
	for _, g := range topo.Groups() {
		gs := newGroupState(d, g, d.partitions)
		d.groups = append(d.groups, gs)
		d.byName[g.Name] = gs
		for _, in := range g.Inputs {
			d.consumers[in.Topic] = append(d.consumers[in.Topic], consumer{group: gs, handler: in.Handler, loop: in.Loop})
			partitions[in.Topic] = d.partitions
		}
		for _, topic := range g.Outputs {
			partitions[topic] = d.partitions
		}
		for _, ref := range slices.Concat(g.Joins, g.Lookups) {
			partitions[ref.Topic] = d.partitions
		}
		if g.Policy.Kind() == processor.PolicyDeadLetter {
			partitions[g.Policy.Topic()] = d.partitions
		}
	}
	if err := topo.Validate(partitions); err != nil {
		t.Fatalf("topotest: %v", err)
	}
	return d
}

// DriverOption configures a [Driver] made by [New].
type DriverOption func(*driverConfig)

// driverConfig is what DriverOptions set.
type driverConfig struct {
	partitions int32
}

// Partitions gives every topic n partitions instead of one. A record goes
// to the partition of its key, placed as the runtime places it (Kafka's
// default partitioner: murmur2 of the key's bytes, modulo n; a nil key is
// hashed like an empty one), and each partition of a group is processed as
// the runtime's task for that partition is: it has its own table rows,
// state, stream time, windows, timers and punctuations. n must be positive.
func Partitions(n int32) DriverOption {
	return func(c *driverConfig) { c.partitions = n }
}

// Partitions returns the partition count of every topic of the driver.
func (d *Driver) Partitions() int32 { return d.partitions }

// PartitionOf returns the partition of topic that key, encoded with the
// topic's key codec, goes to. A key that does not encode fails the test.
func PartitionOf[K, V any](d *Driver, topic topology.Topic[K, V], key K) int32 {
	d.t.Helper()
	kb, err := topic.Keys().Encode(key)
	if err != nil {
		d.t.Fatalf("topotest: partition of a key of %q: %v", topic.Name(), err)
	}
	return d.partitionOf(kb)
}

// partitionOf returns the partition of key's bytes.
func (d *Driver) partitionOf(key []byte) int32 { return partition.For(key, d.partitions) }

// Option sets a property of a fed record.
type Option func(*Record)

// At sets a fed record's timestamp; the default is [DefaultTime].
func At(ts time.Time) Option { return func(r *Record) { r.Timestamp = ts } }

// WithHeaders sets a fed record's headers.
func WithHeaders(h ...processor.Header) Option {
	return func(r *Record) { r.Headers = slices.Clone(h) }
}

// Feed writes a record with key and value to topic, encoded with the topic's
// codecs, and processes it and everything it causes: the records it makes
// other groups process, and the stream-time timers that fall due. It returns
// the error that stopped a group whose policy is [processor.Stop]; the
// driver is then stopped, and every later Feed returns that error again. A
// record that a group skips or sends to a dead-letter topic is not an error.
func Feed[K, V any](d *Driver, topic topology.Topic[K, V], key K, value V, opts ...Option) error {
	d.t.Helper()
	kb, err := topic.Keys().Encode(key)
	if err != nil {
		return fmt.Errorf("topotest: feed %q: key: %w", topic.Name(), err)
	}
	vb, err := topic.Values().Encode(value)
	if err != nil {
		return fmt.Errorf("topotest: feed %q: value: %w", topic.Name(), err)
	}
	return d.FeedRaw(topic.Name(), kb, vb, opts...)
}

// FeedRaw is Feed with the key and value given as bytes, for records that
// no codec would write, such as ones that cannot be decoded.
func (d *Driver) FeedRaw(topic string, key, value []byte, opts ...Option) error {
	if err := d.checkStopped(); err != nil {
		return err
	}
	if len(d.consumers[topic]) == 0 {
		return fmt.Errorf("topotest: topic %q is not an input of any group", topic)
	}
	r := Record{Topic: topic, Partition: d.partitionOf(key), Timestamp: DefaultTime(), Key: slices.Clone(key), Value: slices.Clone(value)}
	for _, o := range opts {
		o(&r)
	}
	return d.run(fmt.Sprintf("feed %q", topic), func() error {
		d.append(r)
		return nil
	})
}

// checkStopped returns the error of a driver stopped by a failure.
func (d *Driver) checkStopped() error {
	if d.stopped != nil {
		return fmt.Errorf("topotest: driver stopped by an earlier failure: %w", d.stopped)
	}
	return nil
}

// run runs body, one call of the test called op, then processes the
// records it queued and all they cause. An error stops the driver, as it
// would stop the instance.
func (d *Driver) run(op string, body func() error) error {
	if err := d.checkStopped(); err != nil {
		return err
	}
	d.op, d.steps = op, 0
	err := body()
	if err == nil {
		err = d.drain()
	}
	if err != nil {
		d.stopped, d.queue = err, nil
	}
	return err
}

// drain processes the queued records.
func (d *Driver) drain() error {
	for len(d.queue) > 0 {
		if err := d.step(); err != nil {
			return err
		}
		next := d.queue[0]
		d.queue = d.queue[1:]
		if err := d.deliver(next); err != nil {
			return err
		}
	}
	return nil
}

// step counts one record or callback run by the current call, and fails
// once there were too many.
func (d *Driver) step() error {
	d.steps++
	if d.steps > maxSteps {
		return fmt.Errorf("topotest: %s: more than %d records and timers processed; does a loop never end?", d.op, maxSteps)
	}
	return nil
}

// append writes r to r.Partition of its topic and queues it for the
// topic's consumers.
func (d *Driver) append(r Record) {
	ends := d.ends[r.Topic]
	if ends == nil {
		ends = make([]int64, d.partitions)
		d.ends[r.Topic] = ends
	}
	r.Offset = ends[r.Partition]
	ends[r.Partition]++
	d.logs[r.Topic] = append(d.logs[r.Topic], r)
	for _, c := range d.consumers[r.Topic] {
		d.queue = append(d.queue, delivery{topic: r.Topic, index: len(d.logs[r.Topic]) - 1, to: c})
	}
}

// deliver runs a consumer's handler for a record in the record's partition
// of the group and applies the group's policy if it fails; then, the
// record having moved the partition's stream time (unless it came through
// the group's loop), it fires the partition's stream-time timers that are
// due, unless the failure stopped the driver (and so the instance). It
// returns the error that stops the driver, if any.
func (d *Driver) deliver(dl delivery) error {
	r := d.logs[dl.topic][dl.index]
	t := dl.to.group.parts[r.Partition]
	rc := &rawContext{d: d, t: t, rec: r, loop: dl.to.loop}
	err := dl.to.handler(rc, r.Key, r.Value)
	// A failed record was still read: stream time counts it, so that
	// skipping a record does not hold back its windows.
	t.core.Observe(rc.rec.Timestamp, dl.to.loop)
	g := t.g
	v, re, err := g.core.Decide(err, core.Source{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset})
	if err != nil {
		return err
	}
	switch v {
	case core.Skip:
		d.skipped[g.spec.Name]++
	case core.DeadLetter:
		d.append(Record{
			Topic:     g.spec.Policy.Topic(),
			Partition: d.partitionOf(r.Key),
			Timestamp: r.Timestamp,
			Key:       r.Key,
			Value:     r.Value,
			Headers:   re.DeadLetterHeaders(r.Headers),
			Group:     g.spec.Name,
		})
	}
	return t.core.FireStreamTimers()
}

// Records returns the records written to topic, of all its partitions in
// the order they were written: fed, emitted, looped back, changelog
// writes or dead letters. Each tells its partition and its offset there.
func (d *Driver) Records(topic string) []Record {
	return slices.Clone(d.logs[topic])
}

// Skipped returns the number of records that group skipped by its policy,
// and of its timer and punctuation callbacks that failed under a skip or
// dead-letter policy: a callback has no input record to send to a
// dead-letter topic, so it is dropped and counted here.
func (d *Driver) Skipped(group string) int { return d.skipped[group] }

// Message is a decoded record.
type Message[K, V any] struct {
	Key       K
	Value     V
	Headers   []processor.Header
	Timestamp time.Time
	// Partition is the partition the record went to: its key's.
	Partition int32
	// Group is the group whose handler wrote the record.
	Group string
}

// Emitted returns the records that handlers wrote to topic, decoded with
// its codecs, of all its partitions in the order they were written.
// Records fed by the test are left out. A record that
// does not decode fails the test.
func Emitted[K, V any](d *Driver, topic topology.Topic[K, V]) []Message[K, V] {
	d.t.Helper()
	var out []Message[K, V]
	for _, r := range d.logs[topic.Name()] {
		if r.Group == "" {
			continue
		}
		k, err := topic.Keys().Decode(r.Key)
		if err != nil {
			d.t.Fatalf("topotest: emitted to %q partition %d offset %d: key: %v", topic.Name(), r.Partition, r.Offset, err)
		}
		v, err := topic.Values().Decode(r.Value)
		if err != nil {
			d.t.Fatalf("topotest: emitted to %q partition %d offset %d: value: %v", topic.Name(), r.Partition, r.Offset, err)
		}
		out = append(out, Message[K, V]{Key: k, Value: v, Headers: r.Headers, Timestamp: r.Timestamp, Partition: r.Partition, Group: r.Group})
	}
	return out
}

// Get returns the row of key in g's table, in the partition of key; ok is
// false if it is missing. A key or row that does not encode or decode, or a
// group without a table, fails the test.
func Get[K, V any](d *Driver, g *topology.Group[K, V], key K) (value V, ok bool) {
	d.t.Helper()
	kb := tableKey(d, g, key)
	b, ok := d.table(g.Name(), d.partitionOf(kb))[string(kb)]
	if !ok {
		return value, false
	}
	v, err := g.Values().Decode(b)
	if err != nil {
		d.t.Fatalf("topotest: table of group %q: row %q: %v", g.Name(), kb, err)
	}
	return v, true
}

// Set sets the row of key in g's table, in the partition of key, as if
// restored from its changelog: no handler runs and nothing is written to
// the changelog. Use it to fill joined and looked-up tables of groups the
// test does not run.
func Set[K, V any](d *Driver, g *topology.Group[K, V], key K, value V) {
	d.t.Helper()
	kb := tableKey(d, g, key)
	b, err := g.Values().Encode(value)
	if err != nil {
		d.t.Fatalf("topotest: table of group %q: value: %v", g.Name(), err)
	}
	d.table(g.Name(), d.partitionOf(kb))[string(kb)] = b
}

// tableKey encodes key as a row key of g's table.
func tableKey[K, V any](d *Driver, g *topology.Group[K, V], key K) []byte {
	d.t.Helper()
	if g.Values() == nil {
		d.t.Fatalf("topotest: group %q has no table", g.Name())
	}
	kb, err := g.Keys().Encode(key)
	if err != nil {
		d.t.Fatalf("topotest: table of group %q: key: %v", g.Name(), err)
	}
	return kb
}

// table returns the rows of partition p of group's table, making it if
// needed.
func (d *Driver) table(group string, p int32) map[string][]byte {
	parts := d.tables[group]
	if parts == nil {
		parts = make([]map[string][]byte, d.partitions)
		d.tables[group] = parts
	}
	if parts[p] == nil {
		parts[p] = make(map[string][]byte)
	}
	return parts[p]
}
