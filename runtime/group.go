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
		h := &groupHandler{rt: rt, g: g, tasks: map[int32]*task{}, parts: map[int32]*partitionStatus{}, held: map[int32]int64{}, failed: make(chan struct{})}
		h.scanHeld()
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

// groupHandler runs one group's partitions through the assignments of its
// consumer group. Partitions come and go one rebalance at a time: a
// partition that stays with the instance keeps its task (its stores open,
// its records flowing) through any number of rebalances.
type groupHandler struct {
	rt *Runtime
	g  *groupRun

	mu    sync.Mutex
	tasks map[int32]*task
	// kmember commits the group's offsets; set by the first Assigned.
	kmember *kafka.Member
	// parts are the statuses of the partitions owned, kept after they
	// went if the group failed. generation and member are the ids of the
	// last rebalance, and ended and endErr say whether and how the group
	// stopped.
	parts      map[int32]*partitionStatus
	generation int32
	member     string
	ended      bool
	endErr     error

	// commitMu makes the periodic commit and a revoke's final commit of
	// its partitions take turns, so that a task is never checkpointed
	// while it closes.
	commitMu sync.Mutex
	// stopCommit stops the committer, which runs while the group owns
	// tasks, and waits for it; guarded by mu. Each committer has a
	// WaitGroup of its own: one may start while the last one stops.
	stopCommit func()
	// checkpointed is when the stores were last checkpointed by the
	// committer; guarded by commitMu.
	checkpointed time.Time

	// held maps the partitions whose stores this instance holds, open or
	// on disk, to the sum of their checkpoints, for the group's leader
	// (kafka.StateHolder).
	heldMu sync.Mutex
	held   map[int32]int64

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
	h.stopCommitter() // Join revoked every partition; this is for safety
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

// HeldState implements kafka.StateHolder: the partitions whose stores this
// instance holds, with the sums of their checkpoints, so that the group's
// leader gives a partition to the instance with the least to restore.
func (h *groupHandler) HeldState() map[int32]int64 {
	h.heldMu.Lock()
	defer h.heldMu.Unlock()
	return maps.Clone(h.held)
}

// setHeld records how far the stores of partition p are restored.
func (h *groupHandler) setHeld(p int32, sum int64, ok bool) {
	h.heldMu.Lock()
	defer h.heldMu.Unlock()
	if ok {
		h.held[p] = sum
	} else {
		delete(h.held, p)
	}
}

// scanHeld finds the stores of the group's partitions left on disk (by a
// previous run, or by partitions that moved away) and their checkpoints.
// It opens each store briefly: before the group joins, nothing else has
// them open.
func (h *groupHandler) scanHeld() {
	root := filepath.Join(h.rt.opts.Dir, "state", h.g.spec.Name)
	kinds, err := os.ReadDir(root)
	if err != nil {
		return // no state yet
	}
	sums := map[int32]int64{}
	for _, kind := range kinds {
		if !kind.IsDir() {
			continue
		}
		parts, err := os.ReadDir(filepath.Join(root, kind.Name()))
		if err != nil {
			continue
		}
		for _, pd := range parts {
			p, err := strconv.ParseInt(pd.Name(), 10, 32)
			if err != nil || !pd.IsDir() {
				continue
			}
			st, err := h.rt.opts.Stores(filepath.Join(root, kind.Name(), pd.Name()))
			if err != nil {
				h.g.logger.Warn("reading a store's checkpoint", "dir", pd.Name(), "err", err)
				continue
			}
			if at, ok, err := st.Checkpoint(); err == nil && ok {
				sums[int32(p)] += at
			}
			st.Close()
		}
	}
	h.heldMu.Lock()
	defer h.heldMu.Unlock()
	maps.Copy(h.held, sums)
}

// checkpoints returns the sum of the checkpoints of a task's stores, and
// whether any has one.
func (t *task) checkpoints() (sum int64, ok bool) {
	stores := make([]state.Store, 0, 2+len(t.joins))
	for _, lt := range []*localTable{t.table, t.state} {
		if lt != nil {
			stores = append(stores, lt.store)
		}
	}
	for _, st := range t.joins {
		stores = append(stores, st)
	}
	for _, st := range stores {
		if at, has, err := st.Checkpoint(); err == nil && has {
			sum, ok = sum+at, true
		}
	}
	return sum, ok
}

// Assigned opens and restores the table (and joined tables) of every
// partition newly assigned, while the partitions the instance had go on
// processing, and starts the periodic commit if it is not running.
func (h *groupHandler) Assigned(ctx context.Context, a *kafka.Assignment) error {
	h.mu.Lock()
	h.generation, h.member, h.kmember = a.Generation, a.MemberID, a.Member
	var todo []int32
	for _, p := range a.Partitions {
		if h.tasks[p] != nil {
			continue // an Assigned cut short by a revoke opened it already
		}
		if h.parts[p] == nil {
			h.parts[p] = &partitionStatus{p: p, counters: h.g.metrics.partition(p)}
		}
		todo = append(todo, p)
	}
	parts := maps.Clone(h.parts)
	h.mu.Unlock()
	if len(a.Partitions) == 0 {
		return nil // a rebalance that gave this instance nothing new
	}
	h.g.metrics.generations.Add(1)
	// Partitions are opened and restored in parallel: a restore is a
	// fetch loop and a store of its own. The first failure ends the rest
	// (through octx) and is returned; what opened is closed by Revoked.
	octx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	sem := make(chan struct{}, restoreParallelism)
	var wg sync.WaitGroup
	for _, p := range todo {
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
			h.setHeld(p, 0, false)
			if sum, ok := t.checkpoints(); ok {
				h.setHeld(p, sum, true)
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
	h.mu.Lock()
	for _, p := range a.Partitions {
		parts[p].setState(stateRunning)
	}
	h.g.stats.Partitions.Store(int32(len(h.tasks)))
	if h.stopCommit == nil {
		h.startCommitter()
	}
	h.mu.Unlock()
	return nil
}

// startCommitter starts the periodic commit and the stall watchdog. Call
// with h.mu held.
func (h *groupHandler) startCommitter() {
	cctx, cancel := context.WithCancel(context.Background())
	committer := &sync.WaitGroup{}
	h.stopCommit = func() {
		cancel()
		committer.Wait()
	}
	committer.Go(func() {
		tick := time.NewTicker(commitInterval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				if err := h.commitAll(cctx); err != nil && cctx.Err() == nil {
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
	committer.Go(func() {
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
}

// stopCommitter stops the committer, if it runs, and waits for it.
func (h *groupHandler) stopCommitter() {
	h.mu.Lock()
	stop := h.stopCommit
	h.stopCommit = nil
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// commitAll is the periodic commit of every task the group owns.
func (h *groupHandler) commitAll(ctx context.Context) error {
	h.commitMu.Lock()
	defer h.commitMu.Unlock()
	h.mu.Lock()
	tasks := slices.Collect(maps.Values(h.tasks))
	member := h.kmember
	h.mu.Unlock()
	checkpoint := time.Since(h.checkpointed) >= checkpointInterval
	if checkpoint {
		h.checkpointed = time.Now()
	}
	return h.commit(ctx, member, tasks, checkpoint)
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

// commit marks and commits the input offsets of tasks whose effects are
// acknowledged, then, if checkpoint is set, checkpoints their stores. Call
// with commitMu held.
func (h *groupHandler) commit(ctx context.Context, member *kafka.Member, tasks []*task, checkpoint bool) error {
	moved := false
	for _, t := range tasks {
		offs, err := t.committable()
		if err != nil {
			return err
		}
		for topic, off := range offs {
			member.MarkOffset(topic, t.p, off)
			if prev, ok := t.marked[topic]; !ok || off > prev {
				t.marked[topic] = off
				moved = true
			}
		}
	}
	began := time.Now()
	if err := member.Commit(ctx); err != nil {
		// Not fatal: the member may have been dropped from the group (a
		// session timeout); the records since the last commit are simply
		// processed again by whoever owns them next.
		h.g.logger.Warn("commit failed", "err", err)
	} else if moved {
		// Commits with nothing to commit return at once: timed, they
		// would hide the real ones.
		h.g.metrics.commit.Observe(time.Since(began).Seconds())
	}
	if !checkpoint {
		return nil
	}
	var errs []error
	for _, t := range tasks {
		errs = append(errs, t.checkpoint())
	}
	return errors.Join(errs...)
}

// Revoked ends the partitions of a, which move elsewhere (or the instance
// leaves): it waits until their writes are acknowledged, commits their
// offsets, checkpoints and closes their stores. The group's other
// partitions go on processing meanwhile.
func (h *groupHandler) Revoked(ctx context.Context, a *kafka.Assignment) error {
	h.mu.Lock()
	var tasks []*task
	for _, p := range a.Partitions {
		if t := h.tasks[p]; t != nil {
			tasks = append(tasks, t)
			delete(h.tasks, p)
		}
	}
	member := h.kmember
	h.mu.Unlock()
	// The wall clocks stop first: a timer firing after the flush would
	// send changelog records nobody waits for, which the partition's next
	// owner might restore past.
	for _, t := range tasks {
		t.stop()
	}
	var flushErr, commitErr error
	if len(tasks) > 0 && !h.failedNow() {
		// After a failed (or timed out) write, waiting for the others
		// could take as long again; what they would add to the commit is
		// processed again after the restart anyway.
		flushErr = h.rt.client.Flush(ctx)
	}
	if len(tasks) > 0 {
		h.commitMu.Lock()
		commitErr = h.commit(ctx, member, tasks, true)
		for _, t := range tasks {
			sum, ok := t.checkpoints()
			t.close()
			h.setHeld(t.p, sum, ok)
		}
		h.commitMu.Unlock()
	}
	h.mu.Lock()
	if !h.failedLocked() {
		// The partitions may go elsewhere now; a failed group keeps them
		// to show what failed.
		for _, p := range a.Partitions {
			delete(h.parts, p)
		}
	}
	remaining := len(h.tasks)
	h.g.stats.Partitions.Store(int32(remaining))
	h.mu.Unlock()
	if remaining == 0 {
		h.stopCommitter()
	}
	if err := errors.Join(flushErr, commitErr); err != nil {
		return fmt.Errorf("runtime: group %s: end of partitions %v: %w", h.g.spec.Name, a.Partitions, err)
	}
	return nil
}
