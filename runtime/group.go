package runtime

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime/internal/kafka"
	"github.com/runnel-io/runnel/state"
	"github.com/runnel-io/runnel/topology"
)

// commitInterval is how often a group marks and commits the offsets whose
// effects are acknowledged, and checkpoints its stores.
const commitInterval = 100 * time.Millisecond

// checkpointInterval is how often the stores get the rows changed since the
// last checkpoint, with the changelog offset they are covered by. Rarer
// than commits: a hot key's many changes become one store write, and all
// a later checkpoint saves is a shorter changelog tail to restore after a
// crash.
const checkpointInterval = time.Second

// Run runs every group of the topology until ctx ends (then it returns
// nil, after finishing in-flight records, committing and leaving the
// groups, unless a write failed meanwhile) or a group stops with an error
// (then it returns that error).
func (rt *Runtime) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	errs := make(chan error, len(rt.topo.Groups()))
	for _, spec := range rt.topo.Groups() {
		g, err := rt.prepare(ctx, spec)
		if err != nil {
			return err
		}
		var topics []string
		for _, in := range spec.Inputs {
			topics = append(topics, in.Topic)
		}
		h := &groupHandler{rt: rt, g: g, tasks: map[int32]*task{}, parts: map[int32]*partitionStatus{}, failed: make(chan struct{})}
		rt.mu.Lock()
		rt.handlers[spec.Name] = h
		rt.mu.Unlock()
		wg.Go(func() {
			err := rt.client.Join(ctx, spec.Name, topics, h)
			// A failure is reported even while stopping: a write that
			// failed at the end leaves its records uncommitted, to be
			// processed again, and the caller must not take the stop for
			// a clean one.
			if err != nil && (ctx.Err() == nil || !errors.Is(err, ctx.Err())) {
				err = fmt.Errorf("runtime: group %s: %w", spec.Name, err)
				h.end(err)
				cancel(err)
				errs <- err
				return
			}
			h.end(nil)
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// prepare builds what a group's tasks share: handlers, partition counts,
// views of looked-up tables (caught up before the group joins).
func (rt *Runtime) prepare(ctx context.Context, spec topology.GroupSpec) (*groupRun, error) {
	g := &groupRun{
		spec: spec, handlers: map[string]processor.RawHandler{}, prod: rt.client,
		partitions: rt.counts, lookups: map[string]*view{}, logger: rt.logger.With("group", spec.Name),
		stats: rt.Stats(spec.Name), metrics: rt.metrics.groups[spec.Name],
	}
	if rt.wrapSender != nil {
		g.prod = rt.wrapSender(g.prod)
	}
	for _, in := range spec.Inputs {
		g.handlers[in.Topic] = in.Handler
	}
	for _, ref := range spec.Lookups {
		v, err := startView(ctx, rt.client, rt.client.Offsets, ref.Topic, rt.counts[ref.Topic])
		if err != nil {
			return nil, fmt.Errorf("runtime: group %s: %w", spec.Name, err)
		}
		if err := v.wait(ctx); err != nil {
			return nil, fmt.Errorf("runtime: group %s: lookup of %s: %w", spec.Name, ref.Group, err)
		}
		g.lookups[ref.Group] = v
	}
	return g, nil
}

// groupHandler runs one group's partitions through the generations of its
// consumer group.
type groupHandler struct {
	rt *Runtime
	g  *groupRun

	mu         sync.Mutex
	tasks      map[int32]*task
	stopCommit context.CancelFunc
	committer  sync.WaitGroup
	// checkpointed is when the stores were last checkpointed; only the
	// committer goroutine and Revoked, after it stopped, use it.
	checkpointed time.Time
	// parts are the statuses of the partitions of the generation, kept
	// after it if the group failed. generation and member are the
	// generation's ids, and ended and endErr say whether and how the
	// group stopped.
	parts      map[int32]*partitionStatus
	generation int32
	member     string
	ended      bool
	endErr     error

	// failed is closed when a record's write failed: the consumers stop
	// and the group leaves with failure's error.
	failOnce sync.Once
	failed   chan struct{}
	failure  error
}

func (h *groupHandler) fail(err error) {
	h.failOnce.Do(func() {
		h.failure = err
		close(h.failed)
	})
}

// failedNow reports whether a write failed.
func (h *groupHandler) failedNow() bool {
	select {
	case <-h.failed:
		return true
	default:
		return false
	}
}

// failedLocked reports whether the group failed: a write failed, or a
// partition's record or restore did. Call with h.mu held.
func (h *groupHandler) failedLocked() bool {
	select {
	case <-h.failed:
		return true
	default:
	}
	for _, st := range h.parts {
		if st.getState() == stateFailed {
			return true
		}
	}
	return false
}

var _ kafka.GroupHandler = (*groupHandler)(nil)

func (h *groupHandler) storeDir(kind string, p int32) string {
	return filepath.Join(h.rt.opts.Dir, "state", h.g.spec.Name, kind, strconv.Itoa(int(p)))
}

// end records that the group stopped, with the error that stopped it
// (nil when Run's context ended): the partitions it kept because of a
// failure show what stopped them.
func (h *groupHandler) end(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended, h.endErr = true, err
	if err != nil {
		for _, st := range h.parts {
			st.stop(err)
		}
	}
}

// statuses returns the statuses of the partitions of the generation, in
// partition order.
func (h *groupHandler) statuses() []*partitionStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*partitionStatus, 0, len(h.parts))
	for _, st := range h.parts {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b *partitionStatus) int { return cmp.Compare(a.p, b.p) })
	return out
}

// Assigned opens and restores the table (and joined tables) of every
// partition of the generation, then starts the periodic commit.
func (h *groupHandler) Assigned(ctx context.Context, gen *kafka.Generation) error {
	h.g.metrics.generations.Add(1)
	parts := make(map[int32]*partitionStatus, len(gen.Partitions))
	for _, p := range gen.Partitions {
		parts[p] = &partitionStatus{p: p, counters: h.g.metrics.partition(p)}
	}
	h.mu.Lock()
	h.parts, h.generation, h.member = parts, gen.ID, gen.MemberID
	h.mu.Unlock()
	// Partitions are opened and restored in parallel: a restore is a
	// fetch loop and a store of its own. The first failure ends the rest
	// (through octx) and is returned; what opened is closed by Revoked.
	octx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	sem := make(chan struct{}, restoreParallelism)
	var wg sync.WaitGroup
	for _, p := range gen.Partitions {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-octx.Done():
				return
			}
			defer func() { <-sem }()
			t, err := h.openTask(octx, p, parts[p])
			if err != nil {
				if octx.Err() == nil {
					parts[p].fail(err)
				}
				stop(err)
				return
			}
			h.mu.Lock()
			h.tasks[p] = t
			h.mu.Unlock()
		})
	}
	wg.Wait()
	if err := context.Cause(octx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	for _, st := range parts {
		st.setState(stateRunning)
	}
	h.g.stats.Partitions.Store(int32(len(gen.Partitions)))
	cctx, cancel := context.WithCancel(context.Background())
	h.stopCommit = cancel
	h.committer.Go(func() {
		tick := time.NewTicker(commitInterval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				if err := h.commit(cctx, gen, false); err != nil && cctx.Err() == nil {
					// A write failed: nothing past it may be committed,
					// and the instance stops.
					h.fail(err)
				}
			case <-cctx.Done():
				return
			}
		}
	})
	// The watchdog ticks on its own: a commit retrying through an outage,
	// or a checkpoint waiting for a partition, must not delay it.
	h.committer.Go(func() {
		tick := time.NewTicker(commitInterval)
		defer tick.Stop()
		for {
			select {
			case now := <-tick.C:
				h.mu.Lock()
				tasks := slices.Collect(maps.Values(h.tasks))
				h.mu.Unlock()
				for _, t := range tasks {
					if err := t.stall(now, h.rt.opts.DeliveryTimeout); err != nil {
						h.fail(err)
						return
					}
				}
			case <-cctx.Done():
				return
			}
		}
	})
	return nil
}

func (h *groupHandler) openTask(ctx context.Context, p int32, status *partitionStatus) (*task, error) {
	spec := h.g.spec
	tctx, cancel := context.WithCancel(context.Background())
	t := &task{g: h.g, p: p, ctx: tctx, cancel: cancel, fail: h.fail, joins: map[string]state.Store{}, trackers: map[string]*tracker{},
		counters: status.counters, marked: map[string]int64{}}
	restoreOf := func(st state.Store, topic string) (int64, error) {
		rs := status.restoring(topic, h.g.metrics.restore(topic, p))
		defer rs.end()
		return restore(ctx, h.rt.client, h.rt.client.Offsets, st, topic, p, h.g.logger, rs.progress)
	}
	open := func(kind, topic string) (state.Store, error) {
		dir := h.storeDir(kind, p)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		st, err := h.rt.opts.Stores(dir)
		if err != nil {
			return nil, fmt.Errorf("open %s-%d: %w", topic, p, err)
		}
		return st, nil
	}
	local := func(kind, topic string) (*localTable, error) {
		st, err := open(kind, topic)
		if err != nil {
			return nil, err
		}
		lt := newLocalTable(st, topic)
		n, err := restoreOf(st, topic)
		h.g.stats.Restored.Add(n)
		return lt, err
	}
	var err error
	var timers []processor.RawTimer
	var stream time.Time
	if spec.Table != "" {
		if t.table, err = local("table", spec.Table); err != nil {
			t.close()
			return nil, err
		}
	}
	if spec.State != "" {
		if t.state, err = local("state", spec.State); err != nil {
			t.close()
			return nil, err
		}
		// Windows come and go: most reads of the state are of keys never
		// written, which the filter answers without the store.
		if t.state.exists, timers, stream, err = loadState(t.state.store); err != nil {
			t.close()
			return nil, fmt.Errorf("load %s-%d: %w", spec.State, p, err)
		}
	}
	t.startCore(timers, stream)
	for _, ref := range spec.Joins {
		st, err := open("join-"+ref.Group, ref.Topic)
		if err != nil {
			t.close()
			return nil, err
		}
		t.joins[ref.Group] = st
		if _, err := restoreOf(st, ref.Topic); err != nil {
			t.close()
			return nil, err
		}
		// A joined table goes on changing: follow its changelog while the
		// partition is ours.
		from, _, err := st.Checkpoint()
		if err != nil {
			t.close()
			return nil, err
		}
		t.followers.Go(func() { t.follow(h.rt.client, ref.Topic, st, from) })
	}
	if t.state != nil || len(spec.Punctuations) > 0 {
		t.followers.Go(func() { t.wallClock(h.fail) })
	}
	return t, nil
}

// Consume runs a claim's records through the partition's task. Records of
// all inputs of one partition take the task's lock in turn, so the handler
// never runs twice at once for a partition (or a key).
func (h *groupHandler) Consume(ctx context.Context, c *kafka.Claim) error {
	h.mu.Lock()
	t, st := h.tasks[c.Partition], h.parts[c.Partition]
	h.mu.Unlock()
	if t == nil || st == nil {
		return fmt.Errorf("runtime: claim of %s-%d without its partition's task", c.Topic, c.Partition)
	}
	pos := st.input(c)
	if pos.next.Load() < 0 {
		// Not on the way of the records: the position is only shown.
		go pos.resolveStart(ctx, c.Partition, h.rt.client.Offsets)
	}
	buf := make([]*kafka.Record, 0, consumeBatch)
	for {
		recs, ok := c.Poll(h.failed, buf)
		if len(recs) > 0 {
			t.procMu.Lock()
			for _, r := range recs {
				if h.failedNow() {
					// A write failed: what is processed now would only
					// be processed again after the restart.
					t.procMu.Unlock()
					return h.failure
				}
				if err := t.process(r); err != nil {
					t.procMu.Unlock()
					st.fail(err)
					return err
				}
			}
			t.procMu.Unlock()
			pos.next.Store(recs[len(recs)-1].Offset + 1)
		}
		select {
		case <-h.failed:
			return h.failure
		default:
		}
		if !ok {
			return nil
		}
	}
}

// consumeBatch bounds the records a partition processes under one hold of
// its lock: enough to spread the cost of taking it, few enough that timers
// and checkpoints get their turn.
const consumeBatch = 64

// commit marks and commits, for every task, the input offsets whose
// effects are acknowledged, then checkpoints the stores.
func (h *groupHandler) commit(ctx context.Context, gen *kafka.Generation, final bool) error {
	h.mu.Lock()
	tasks := make([]*task, 0, len(h.tasks))
	for _, t := range h.tasks {
		tasks = append(tasks, t)
	}
	h.mu.Unlock()
	moved := false
	for _, t := range tasks {
		offs, err := t.committable()
		if err != nil {
			return err
		}
		for topic, off := range offs {
			gen.MarkOffset(topic, t.p, off)
			if prev, ok := t.marked[topic]; !ok || off > prev {
				t.marked[topic] = off
				moved = true
			}
		}
	}
	began := time.Now()
	if err := gen.Commit(ctx); err != nil {
		// Not fatal: the member may have been dropped from the group (a
		// session timeout); the records since the last commit are simply
		// processed again by whoever owns them next.
		h.g.logger.Warn("commit failed", "generation", gen.ID, "err", err)
	} else if moved {
		// Commits with nothing to commit return at once: timed, they
		// would hide the real ones.
		h.g.metrics.commit.Observe(time.Since(began).Seconds())
	}
	if !final && time.Since(h.checkpointed) < checkpointInterval {
		return nil
	}
	h.checkpointed = time.Now()
	var errs []error
	for _, t := range tasks {
		errs = append(errs, t.checkpoint())
	}
	return errors.Join(errs...)
}

// Revoked waits until every write of the generation is acknowledged,
// commits, checkpoints and closes the partitions' stores.
func (h *groupHandler) Revoked(ctx context.Context, gen *kafka.Generation) error {
	if h.stopCommit != nil {
		h.stopCommit()
		h.committer.Wait()
	}
	// The wall clocks stop first: a timer firing after the flush would
	// send changelog records nobody waits for, which the partition's next
	// owner might restore past.
	h.mu.Lock()
	for _, t := range h.tasks {
		t.stop()
	}
	h.mu.Unlock()
	var flushErr error
	if !h.failedNow() {
		// After a failed (or timed out) write, waiting for the others
		// could take as long again; what they would add to the commit is
		// processed again after the restart anyway.
		flushErr = h.rt.client.Flush(ctx)
	}
	commitErr := h.commit(ctx, gen, true)
	h.mu.Lock()
	tasks := h.tasks
	h.tasks = map[int32]*task{}
	if !h.failedLocked() {
		// The partitions may go elsewhere now; a failed group keeps them
		// to show what failed.
		h.parts = map[int32]*partitionStatus{}
	}
	h.mu.Unlock()
	for _, t := range tasks {
		t.close()
	}
	h.g.stats.Partitions.Store(0)
	if err := errors.Join(flushErr, commitErr); err != nil {
		return fmt.Errorf("runtime: group %s: end of generation %d: %w", h.g.spec.Name, gen.ID, err)
	}
	return nil
}
