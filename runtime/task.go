package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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

// reader reads a partition from an offset up to another.
type reader interface {
	ReadPartition(ctx context.Context, topic string, partition int32, from, until int64, fn func(*kafka.Record) error) error
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
}

// GroupStats counts what happened to a group's records in this instance.
type GroupStats struct {
	Processed    atomic.Int64 // records whose handler succeeded
	Skipped      atomic.Int64 // records that failed under the skip policy
	DeadLettered atomic.Int64 // records sent to the dead-letter topic
	Restored     atomic.Int64 // changelog records applied while restoring
	Partitions   atomic.Int32 // partitions owned now
}

// task processes one partition of one group: it owns partition p of the
// group's table (a local store restored from the changelog) and of every
// input, and runs their records through the handlers one at a time, so a
// key's records are processed in order.
type task struct {
	g      *groupRun
	p      int32
	ctx    context.Context // ends when the partition is revoked
	cancel context.CancelFunc
	store  state.Store // nil if the group has no table
	joins  map[string]state.Store
	// followers keep joined tables up to date while the task lives.
	followers sync.WaitGroup
	// procMu makes the partition's records go through the handlers one at
	// a time, whichever input they come from. It also guards rows and
	// flushing.
	procMu sync.Mutex
	// rows holds the table rows changed since the last checkpoint (nil for
	// a delete): reads see them first, and checkpoint writes them to the
	// store in one batch with the changelog offset they are covered by,
	// instead of one store write per record. flushing holds the batch being
	// written meanwhile.
	rows, flushing map[string][]byte
	// cache holds rows as the store has them (nil: known missing), so that
	// hot keys are not read from the store at every record.
	cache map[string][]byte

	mu       sync.Mutex
	trackers map[string]*tracker // by input topic, created at the first record
	// clNext is the changelog offset after the last acknowledged table
	// write: the store's checkpoint may move up to it.
	clNext atomic.Int64
}

// restoreProgressEvery is how often a long restore logs its progress.
const restoreProgressEvery = 2 * time.Second

// restore brings a store up to date with partition p of a changelog: from
// the store's checkpoint (or the log start) to the high watermark at the
// time it starts. It returns the number of records applied.
func restore(ctx context.Context, rd reader, offsets func(ctx context.Context, topic string, p int32) (int64, int64, error), st state.Store, topic string, p int32, logger *slog.Logger) (int64, error) {
	start, hw, err := offsets(ctx, topic, p)
	if err != nil {
		return 0, fmt.Errorf("restore %s-%d: %w", topic, p, err)
	}
	from, ok, err := st.Checkpoint()
	if err != nil {
		return 0, fmt.Errorf("restore %s-%d: %w", topic, p, err)
	}
	if !ok || from < start {
		// The changelog no longer holds what the store was built from (or
		// the store is new): rebuild from the start.
		if ok {
			logger.Warn("store checkpoint below the changelog's log start; restoring from scratch", "topic", topic, "partition", p, "checkpoint", from, "log_start", start)
		}
		if err := st.Clear(); err != nil {
			return 0, fmt.Errorf("restore %s-%d: %w", topic, p, err)
		}
		from = start
	}
	if from >= hw {
		return 0, nil
	}
	began := time.Now()
	var n int64
	var b state.Batch
	flush := func(next int64) error {
		b.SetCheckpoint(next)
		err := st.Apply(&b)
		b.Reset()
		return err
	}
	last := from
	lastLog := began
	err = rd.ReadPartition(ctx, topic, p, from, hw, func(r *kafka.Record) error {
		addChange(&b, r)
		n++
		last = r.Offset + 1
		if b.Len() < 1000 {
			return nil
		}
		if now := time.Now(); now.Sub(lastLog) >= restoreProgressEvery {
			lastLog = now
			rate := float64(last-from) / now.Sub(began).Seconds()
			left := time.Duration(float64(hw-last) / rate * float64(time.Second))
			logger.Info("restoring table partition", "topic", topic, "partition", p, "records", n,
				"offset", last, "end", hw, "records_per_sec", int64(rate), "time_left", left.Round(time.Second))
		}
		return flush(last)
	})
	if err == nil {
		err = flush(max(last, hw))
	}
	if err != nil {
		return n, fmt.Errorf("restore %s-%d: %w", topic, p, err)
	}
	logger.Info("restored table partition", "topic", topic, "partition", p, "records", n, "from", from, "to", hw, "took", time.Since(began))
	return n, nil
}

// process runs one input record through its handler and sends what it
// wrote. It returns an error only when the instance must stop.
func (t *task) process(r *kafka.Record) error {
	h := t.g.handlers[r.Topic]
	if h == nil {
		return fmt.Errorf("%w: no handler for topic %s", errInstance, r.Topic)
	}
	rc := &rawContext{t: t, r: r}
	err := h(rc, r.Key, r.Value)
	var sends []*kafka.Record
	switch {
	case err == nil:
		sends = rc.sends
		t.g.stats.Processed.Add(1)
	case errors.Is(err, errInstance) || t.ctx.Err() != nil:
		return err
	default:
		var re *processor.RecordError
		if !errors.As(err, &re) {
			re = &processor.RecordError{Group: t.g.spec.Name, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Err: err}
		}
		switch t.g.spec.Policy.Kind() {
		case processor.PolicySkip:
			t.g.stats.Skipped.Add(1)
			t.g.logger.Warn("skipped a record that failed", "group", t.g.spec.Name, "err", re)
		case processor.PolicyDeadLetter:
			dlq := t.g.spec.Policy.Topic()
			sends = []*kafka.Record{{
				Topic: dlq, Partition: kafka.PartitionFor(r.Key, t.g.partitions[dlq]),
				Key: r.Key, Value: r.Value, Timestamp: r.Timestamp,
				Headers: toKafkaHeaders(re.DeadLetterHeaders(fromKafkaHeaders(r.Headers))),
			}}
			t.g.stats.DeadLettered.Add(1)
		default:
			return re
		}
	}
	t.mu.Lock()
	tr := t.trackers[r.Topic]
	if tr == nil {
		tr = newTracker(r.Offset)
		t.trackers[r.Topic] = tr
	}
	t.mu.Unlock()
	done := tr.add(r.Offset, len(sends))
	for _, s := range sends {
		changelog := s.Topic == t.g.spec.Table && t.g.spec.Table != ""
		t.g.prod.Send(s, func(s *kafka.Record, err error) {
			if err == nil && changelog {
				advance(&t.clNext, s.Offset+1)
			}
			done(err)
		})
	}
	return nil
}

// advance raises v to n if n is larger.
func advance(v *atomic.Int64, n int64) {
	for {
		cur := v.Load()
		if n <= cur || v.CompareAndSwap(cur, n) {
			return
		}
	}
}

// committable returns, per input topic, the offset to commit, and the
// first failed write if any.
func (t *task) committable() (map[string]int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
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

// checkpoint writes the rows changed since the last checkpoint to the
// store, with how far the changelog is acknowledged, in one atomic batch,
// so that a restart restores only what came after. It takes the partition's
// processing lock only to swap the dirty rows out.
func (t *task) checkpoint() error {
	if t.store == nil {
		return nil
	}
	t.procMu.Lock()
	rows := t.rows
	t.rows, t.flushing = map[string][]byte{}, rows
	t.procMu.Unlock()
	// Read after the swap: every table write acknowledged so far belongs to
	// a record processed before it, so its row is in rows (or already in
	// the store).
	err := t.flushRows(rows, t.clNext.Load())
	t.procMu.Lock()
	t.flushing = nil
	if err == nil {
		for k, v := range rows {
			t.cacheRow(k, v)
		}
	}
	t.procMu.Unlock()
	return err
}

// cacheRow remembers a row as the store holds it. The cache is bounded by
// dropping it whole when full: simpler than an LRU, and a hot key is back
// at its next read. Call with procMu held.
func (t *task) cacheRow(k string, v []byte) {
	if len(t.cache) >= maxCachedRows {
		clear(t.cache)
	}
	t.cache[k] = v
}

// flushRows writes rows (nil values delete) and, if next > 0, the changelog
// checkpoint next, in one batch.
func (t *task) flushRows(rows map[string][]byte, next int64) error {
	if len(rows) == 0 && next <= 0 {
		return nil
	}
	var b state.Batch
	for k, v := range rows {
		if v == nil {
			b.Delete([]byte(k))
		} else {
			b.Set([]byte(k), v)
		}
	}
	if next > 0 {
		b.SetCheckpoint(next)
	}
	if err := t.store.Apply(&b); err != nil {
		return fmt.Errorf("%w: write %s-%d: %w", errInstance, t.g.spec.Table, t.p, err)
	}
	return nil
}

// row returns the current value of a key's row: a change not yet written
// to the store, else the store's. Call with procMu held.
func (t *task) row(key []byte) ([]byte, bool, error) {
	if v, ok := t.rows[string(key)]; ok {
		return v, v != nil, nil
	}
	if v, ok := t.flushing[string(key)]; ok {
		return v, v != nil, nil
	}
	if v, ok := t.cache[string(key)]; ok {
		return v, v != nil, nil
	}
	v, ok, err := t.store.Get(key)
	if err == nil {
		t.cacheRow(string(key), v)
	}
	return v, ok, err
}

// setRow records a row change (nil deletes); the store gets it at the next
// checkpoint, or now if too many changes are waiting. Call with procMu
// held.
func (t *task) setRow(key, value []byte) error {
	t.rows[string(key)] = value
	if len(t.rows) < maxDirtyRows {
		return nil
	}
	rows := t.rows
	t.rows = map[string][]byte{}
	return t.flushRows(rows, t.clNext.Load())
}

const (
	// maxDirtyRows bounds the row changes a task holds in memory between
	// checkpoints.
	maxDirtyRows = 50_000
	// maxCachedRows bounds the rows a task keeps as the store has them.
	maxCachedRows = 100_000
)

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
// offset from, until the task ends.
func (t *task) follow(rd reader, topic string, st state.Store, from int64) {
	var b state.Batch
	err := rd.ReadPartition(t.ctx, topic, t.p, from, -1, func(r *kafka.Record) error {
		b.Reset()
		addChange(&b, r)
		b.SetCheckpoint(r.Offset + 1)
		return st.Apply(&b)
	})
	if err != nil && t.ctx.Err() == nil {
		t.g.logger.Error("following joined table failed", "topic", topic, "partition", t.p, "err", err)
	}
}

// close ends the task: its followers stop and its stores close.
func (t *task) close() {
	t.cancel()
	t.followers.Wait()
	if t.store != nil {
		t.store.Close()
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
