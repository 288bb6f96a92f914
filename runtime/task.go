package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runnel-io/runnel/internal/core"
	"github.com/runnel-io/runnel/internal/partition"
	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime/internal/kafka"
	"github.com/runnel-io/runnel/state"
	"github.com/runnel-io/runnel/topology"
)

// sender is what a task needs of the producer: asynchronous sends whose
// done callbacks say when each record is acknowledged.
type sender interface {
	Send(r *kafka.Record, done func(r *kafka.Record, err error))
}

// reader reads a partition from an offset up to another: by record, or by
// fetch with the fetch position after each (see kafka.Reader).
type reader interface {
	ReadPartition(ctx context.Context, topic string, partition int32, from, until int64, fn func(*kafka.Record) error) error
	ReadBatches(ctx context.Context, topic string, partition int32, from, until int64, fn func(recs []*kafka.Record, next int64) error) error
}

// errInstance marks errors of the runtime itself (a store or a produce
// failing, the instance stopping) that reach a handler's result: they stop
// the instance whatever the group's policy, which is for bad records.
var errInstance = errors.New("runnel runtime")

// groupRun is what the tasks of one group share.
type groupRun struct {
	spec     topology.GroupSpec
	handlers map[string]processor.RawHandler // by input topic
	prod     sender
	// partitions holds the partition counts of the topics the group
	// produces to, for partitioning emits by key.
	partitions map[string]int32
	lookups    map[string]*view // by group name
	logger     *slog.Logger
	stats      *GroupStats
	metrics    *groupMetrics
}

// GroupStats counts what happened to a group's records in this instance.
type GroupStats struct {
	Processed    atomic.Int64 // records whose handler succeeded
	Skipped      atomic.Int64 // records that failed under the skip policy
	DeadLettered atomic.Int64 // records sent to the dead-letter topic
	Restored     atomic.Int64 // changelog records applied while restoring
	Late         atomic.Int64 // records windowed tables dropped after their grace period
	Partitions   atomic.Int32 // partitions owned now
}

// task processes one partition of one group: it owns partition p of the
// group's table and state (local stores restored from their changelogs)
// and of every input, and runs their records through the handlers one at a
// time, so a key's records are processed in order.
type task struct {
	g      *groupRun
	p      int32
	ctx    context.Context // ends when the partition is revoked
	cancel context.CancelFunc
	table  *localTable // nil if the group has no table
	state  *localTable // nil if the group has no windows or timers
	joins  map[string]state.Store
	// followers keep joined tables up to date, and the wall clock ticking,
	// while the task lives.
	followers sync.WaitGroup
	// procMu makes the partition's records, timers and punctuations go
	// through their callbacks one at a time. It also guards the local
	// tables' changes, core and out.
	procMu sync.Mutex
	// core keeps the partition's timers, stream time and punctuations and
	// decides what becomes of records and callbacks, by the rules of
	// internal/core; grp is the group as the core sees it.
	core  *core.Partition
	grp   *core.Group
	clock core.Clock
	// out collects the writes of the callbacks the core runs in one step,
	// to send together.
	out []*kafka.Record
	// rc is the RawContext of the record being processed.
	rc rawContext
	// streamSaved is the stream time last kept in the state (if the group
	// has one), which it is at each checkpoint, so that windows closed
	// before a restart stay closed after it.
	streamSaved time.Time

	// counters count the partition's input records for the metrics.
	// records counts them too, under procMu, to pick those whose handler
	// is timed.
	counters *partitionCounters
	records  uint64
	// marked holds the offsets given to the generation to commit, by input
	// topic, to tell commits that commit something from those that do
	// not. Only the commits touch it, one at a time.
	marked map[string]int64

	mu       sync.Mutex
	trackers map[string]*tracker // by input topic, created at the first record
	// fail stops the group at once: a write failed.
	fail func(error)
	// asyncPending counts the writes sendAsync sent and not yet
	// acknowledged, and asyncMoved is when one last was, or when the
	// first of them was sent.
	asyncPending int
	asyncMoved   time.Time
	// asyncErr holds the first failed write of a wall-clock callback,
	// which is not tied to an input offset: the instance stops on it.
	asyncErr error
}

// process runs one input record through its handler, then the
// stream-time timers that became due, and sends what they wrote. It
// returns an error only when the instance must stop.
func (t *task) process(r *kafka.Record) (err error) {
	defer func() {
		if err != nil {
			t.dropUnsent()
		}
	}()
	h := t.g.handlers[r.Topic]
	if h == nil {
		return fmt.Errorf("%w: no handler for topic %s", errInstance, r.Topic)
	}
	// One rawContext serves the partition's records in turn: a handler's
	// Context is dead once it returns, and its sends are handed over below.
	rc := &t.rc
	*rc = rawContext{t: t, r: r, ts: r.Timestamp, sends: rc.sends[:0], loop: r.Topic == t.g.spec.Loop}
	if t.records%handlerSampleEvery == 0 {
		began := time.Now()
		err = h(rc, r.Key, r.Value)
		t.g.metrics.handler.Observe(time.Since(began).Seconds())
	} else {
		err = h(rc, r.Key, r.Value)
	}
	t.records++
	v, re, err := t.grp.Decide(err, core.Source{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset})
	if err != nil {
		if re != nil {
			t.counters.failed.Add(1) // a bad record under the stop policy
		}
		return err
	}
	t.count(v, true)
	switch v {
	case core.Keep:
		t.out = rc.sends
	case core.DeadLetter:
		dlq := t.g.spec.Policy.Topic()
		t.out = []*kafka.Record{{
			Topic: dlq, Partition: partition.For(r.Key, t.g.partitions[dlq]),
			Key: r.Key, Value: r.Value, Timestamp: r.Timestamp,
			Headers: toKafkaHeaders(re.DeadLetterHeaders(fromKafkaHeaders(r.Headers))),
		}}
	default:
		t.out = nil
	}
	// A failed record was still read, so it moves stream time too.
	t.core.Observe(rc.ts, rc.loop)
	if err := t.core.FireStreamTimers(); err != nil {
		return err
	}
	sends := t.out
	t.out = nil
	t.mu.Lock()
	tr := t.trackers[r.Topic]
	if tr == nil {
		topic := r.Topic
		tr = newTracker(r.Offset, func(err error) {
			t.fail(fmt.Errorf("%w: write for %s-%d failed: %w", errInstance, topic, t.p, err))
		})
		t.trackers[r.Topic] = tr
	}
	t.mu.Unlock()
	t.send(sends, tr.add(r.Offset, len(sends)))
	return nil
}

// count counts a record's (or, if record is false, a callback's) verdict
// in the group's and the partition's counters. The partition's counters
// are of records only.
func (t *task) count(v core.Verdict, record bool) {
	switch v {
	case core.Keep:
		t.g.stats.Processed.Add(1)
		if record {
			t.counters.processed.Add(1)
		}
	case core.Skip:
		t.g.stats.Skipped.Add(1)
		if record {
			t.counters.failed.Add(1)
			t.counters.skipped.Add(1)
		}
	case core.DeadLetter:
		t.g.stats.DeadLettered.Add(1)
		t.counters.failed.Add(1)
		t.counters.deadLettered.Add(1)
	}
}

// startCore makes the partition's core, with the timers and stream time
// its state was restored with. Call it once, before the task processes
// anything.
func (t *task) startCore(timers []processor.RawTimer, stream time.Time) {
	spec := t.g.spec
	t.grp = &core.Group{
		Name:   spec.Name,
		Policy: spec.Policy,
		Timers: spec.Timers,
		// The runtime's own failures, and anything after the partition
		// was revoked, stop the instance whatever the policy.
		Fatal:  func(err error) bool { return errors.Is(err, errInstance) || t.ctx.Err() != nil },
		Logger: t.g.logger,
	}
	for _, p := range spec.Punctuations {
		t.grp.Punctuations = append(t.grp.Punctuations, core.Punctuation{Every: p.Every, Handler: p.Handler})
	}
	if t.clock == nil {
		t.clock = core.SystemClock{}
	}
	t.streamSaved = stream
	t.core = core.NewPartition(t.grp, t.p, t, t.clock, stream, timers)
}

// Callback is core.Host's: the context of a timer or punctuation
// callback. Call with procMu held.
func (t *task) Callback(tm processor.RawTimer) (core.Callback, error) {
	rc := t.callbackContext(tm.Key, tm.At)
	rc.callback = true
	rc.keyless = tm.Name == ""
	return rc, nil
}

// callbackContext returns the RawContext of a timer, a punctuation or a
// write of the task's own: no topic, offset -1, key (nil for none) and the
// event time at.
func (t *task) callbackContext(key []byte, at time.Time) *rawContext {
	return &rawContext{t: t, r: &kafka.Record{Partition: t.p, Offset: -1, Key: key, Timestamp: at}, ts: at}
}

// tickWallClock runs the wall-clock timers due now and the punctuations
// whose period is over. Their writes are tied to no input offset: a failed
// one stops the instance.
func (t *task) tickWallClock() (err error) {
	t.procMu.Lock()
	defer t.procMu.Unlock()
	defer func() {
		t.out = nil
		if err != nil {
			t.dropUnsent()
		}
	}()
	t.out = nil
	for {
		ran, err := t.core.WallClockStep()
		if err != nil {
			return err
		}
		if !ran {
			break
		}
	}
	t.sendAsync(t.out)
	return nil
}

// dropUnsent drops the changes of the tables made since their last seal,
// when a callback's error leaves some of them without the changelog record
// that was to follow: such a change must never reach the store. Those of
// them whose records were sent are in the changelog, so a restart restores
// them. The task stops after this. Call with procMu held.
func (t *task) dropUnsent() {
	for _, lt := range []*localTable{t.table, t.state} {
		if lt != nil {
			lt.rows = map[string][]byte{}
		}
	}
}

// sendAsync sends writes tied to no input offset (of timers,
// punctuations, the stream time), counted for the watchdog: no input
// offset waits for them, so no tracker would see them stall.
func (t *task) sendAsync(sends []*kafka.Record) {
	if len(sends) == 0 {
		return
	}
	t.mu.Lock()
	if t.asyncPending == 0 {
		t.asyncMoved = time.Now()
	}
	t.asyncPending += len(sends)
	t.mu.Unlock()
	t.send(sends, t.asyncAcked)
}

// asyncAcked takes the outcome of a write sendAsync sent.
func (t *task) asyncAcked(err error) {
	t.mu.Lock()
	t.asyncPending--
	t.asyncMoved = time.Now()
	t.mu.Unlock()
	t.asyncDone(err)
}

// asyncDone is the acknowledgement of a write tied to no input offset: a
// failed one stops the instance.
func (t *task) asyncDone(err error) {
	if err != nil {
		t.fail(fmt.Errorf("%w: timer write for partition %d failed: %w", errInstance, t.p, err))
		t.mu.Lock()
		if t.asyncErr == nil {
			t.asyncErr = err
		}
		t.mu.Unlock()
	}
}

// wallClock ticks the task's wall-clock timers and punctuations until the
// task ends.
func (t *task) wallClock(fail func(error)) {
	tick := time.NewTicker(wallClockTick)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
			if err := t.tickWallClock(); err != nil {
				if t.ctx.Err() == nil {
					fail(err)
				}
				return
			}
		}
	}
}

// wallClockTick is the resolution of wall-clock timers and punctuations.
const wallClockTick = 50 * time.Millisecond

// send produces records and calls done once per record with its result.
// Changelog records are numbered in their table, whose changes reach the
// store once the records are acknowledged. Call with procMu held.
func (t *task) send(sends []*kafka.Record, done func(error)) {
	for _, s := range sends {
		var lt *localTable
		var seq int64
		switch {
		case t.table != nil && s.Topic == t.table.topic:
			lt = t.table
		case t.state != nil && s.Topic == t.state.topic:
			lt = t.state
		}
		if lt != nil {
			seq = lt.sent
			lt.sent++
		}
		t.g.prod.Send(s, func(s *kafka.Record, err error) {
			if lt != nil {
				lt.acked(seq, s.Offset, err)
			}
			done(err)
		})
	}
	// Bound the changes in an epoch: one sealed now goes to the store at
	// the next checkpoint after its records are acknowledged.
	for _, lt := range []*localTable{t.table, t.state} {
		if lt != nil && len(lt.rows) >= maxDirtyRows {
			lt.seal()
		}
	}
}

// committable returns, per input topic, the offset to commit, and the
// first failed write if any.
func (t *task) committable() (map[string]int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.asyncErr != nil {
		return nil, fmt.Errorf("%w: timer write for partition %d failed: %w", errInstance, t.p, t.asyncErr)
	}
	out := make(map[string]int64, len(t.trackers))
	for topic, tr := range t.trackers {
		off, err := tr.committable()
		if err != nil {
			return nil, fmt.Errorf("%w: write for %s-%d failed: %w", errInstance, topic, t.p, err)
		}
		out[topic] = off
	}
	return out, nil
}

// stall returns an error if a record's writes have held its input offset
// back for longer than timeout: the producer would go on retrying them
// while the log is away.
func (t *task) stall(now time.Time, timeout time.Duration) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if stuck := now.Sub(t.asyncMoved); t.asyncPending > 0 && stuck > timeout {
		return fmt.Errorf("%w: timer, punctuation or stream time writes of partition %d not acknowledged for %s (the delivery timeout is %s): %w",
			errInstance, t.p, stuck.Round(time.Millisecond), timeout, kafka.ErrDeliveryTimeout)
	}
	for topic, tr := range t.trackers {
		if off, stuck := tr.stalled(now); stuck > timeout {
			return fmt.Errorf("%w: writes for %s-%d at offset %d not acknowledged for %s (the delivery timeout is %s): %w",
				errInstance, topic, t.p, off, stuck.Round(time.Millisecond), timeout, kafka.ErrDeliveryTimeout)
		}
	}
	return nil
}

// checkpoint writes to the task's stores the changes whose changelog
// records are acknowledged, each store's in one atomic batch with the
// changelog offset after them, so that a restart restores only what came
// after. Changes still waiting for acknowledgements stay in memory for a
// later checkpoint. It takes the partition's processing lock only to pick
// the changes.
func (t *task) checkpoint() error {
	var errs []error
	for _, lt := range []*localTable{t.table, t.state} {
		if lt == nil {
			continue
		}
		t.procMu.Lock()
		if lt == t.state {
			t.saveStreamTime()
		}
		lt.seal()
		rows, next, n := lt.ready()
		t.procMu.Unlock()
		if n == 0 {
			continue
		}
		err := lt.flush(rows, next)
		if err == nil {
			t.procMu.Lock()
			if lt.exists != nil {
				lt.exists.flushed(rows)
			}
			lt.written(n)
			t.procMu.Unlock()
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func toKafkaHeaders(hs []processor.Header) []kafka.Header {
	out := make([]kafka.Header, len(hs))
	for i, h := range hs {
		out[i] = kafka.Header{Key: h.Key, Value: h.Value}
	}
	return out
}

func fromKafkaHeaders(hs []kafka.Header) []processor.Header {
	out := make([]processor.Header, len(hs))
	for i, h := range hs {
		out[i] = processor.Header{Key: h.Key, Value: h.Value}
	}
	return out
}

// follow keeps a joined table's store up to date from its changelog, from
// offset from, until the task ends: each fetch in one store write, with the
// fetch position as its checkpoint.
func (t *task) follow(rd reader, topic string, st state.Store, from int64) {
	var b state.Batch
	err := rd.ReadBatches(t.ctx, topic, t.p, from, -1, func(recs []*kafka.Record, next int64) error {
		b.Reset()
		for _, r := range recs {
			addChange(&b, r)
		}
		b.SetCheckpoint(next)
		return st.Apply(&b)
	})
	if err != nil && t.ctx.Err() == nil {
		t.g.logger.Error("following joined table failed", "topic", topic, "partition", t.p, "err", err)
	}
}

// stop stops the task's followers: its wall clock and joined tables.
func (t *task) stop() {
	t.cancel()
	t.followers.Wait()
}

// close ends the task: its followers stop and its stores close.
func (t *task) close() {
	t.stop()
	for _, lt := range []*localTable{t.table, t.state} {
		if lt != nil {
			lt.store.Close()
		}
	}
	for _, st := range t.joins {
		st.Close()
	}
}

// addChange adds a changelog record to a batch: a tombstone (nil value)
// deletes the row, anything else sets it.
func addChange(b *state.Batch, r *kafka.Record) {
	if r.Value == nil {
		b.Delete(r.Key)
	} else {
		b.Set(r.Key, r.Value)
	}
}

// saveStreamTime writes the stream time to the state if it moved since it
// was last written. Call with procMu held.
func (t *task) saveStreamTime() {
	stream := t.core.StreamTime()
	if !stream.After(t.streamSaved) {
		return
	}
	rc := t.callbackContext(nil, stream)
	if err := rc.stateWrite(streamTimeKey, binary.BigEndian.AppendUint64(nil, processor.OrderedTime(stream))); err != nil {
		t.asyncDone(err)
		return
	}
	t.streamSaved = stream
	t.sendAsync(rc.sends)
}
