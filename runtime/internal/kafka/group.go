package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// GroupHandler is driven by Join through the assignments of a group. The
// group rebalances incrementally (KIP-429, with the cooperative
// co-partitioning strategy of balance.go): a rebalance adds partitions to
// a member and takes others away, and a partition that stays with its
// member goes on being consumed through it, untouched.
//
//  1. Assigned is called at every rebalance the member takes part in, with
//     the partitions newly assigned to it (none, when the rebalance only
//     took some away or changed nothing). It may block, to restore state,
//     and should return when ctx ends, which it does when one of those
//     partitions is revoked meanwhile, or the membership ends. The member
//     heartbeats, and its other partitions are consumed, meanwhile. If
//     Assigned returned ctx's error because some of its partitions were
//     revoked, it is called again with the others.
//  2. Then Consume is called for every topic-partition of the assignment,
//     each on a goroutine of its own, with the records from the group's
//     committed offset on (from the log start if it has none).
//  3. When partitions are revoked (they move to another member, the
//     member lost its session, or it leaves), the contexts of their
//     Consumes (and of an Assigned still running for them) end and their
//     Claims' Polls report the end; each such Consume finishes the records
//     it has taken and returns.
//  4. Once they have all returned, Revoked is called with the revoked
//     partitions, with a context that ends after Config.RebalanceTimeout:
//     it waits for what their records caused to be acknowledged, marks and
//     commits their last offsets, and closes what they needed. Only then
//     does the member rejoin to let the group give them to their new
//     owner.
//
// Revoked is called for every partition given to Assigned, even if
// Assigned failed. Partitions not revoked are not touched by a rebalance.
//
// An error returned by a method stops the membership: Join leaves the group
// and returns it. The one exception is a context error returned after ctx
// ended, which is taken as the method obeying ctx. Consume returns early
// (before Poll reported the end) only with an error: a claim whose
// Consume returned nil is not consumed again until its partition is
// assigned anew.
//
// A GroupHandler that also implements StateHolder tells the group's leader
// which partitions' state it holds, so that partitions go where their
// state is.
type GroupHandler interface {
	// Assigned starts consuming the partitions of a, before any of their
	// records arrive.
	Assigned(ctx context.Context, a *Assignment) error
	// Consume processes the records of one claim until its Poll reports
	// the end.
	Consume(ctx context.Context, c *Claim) error
	// Revoked ends the partitions of a, after every Consume of them
	// returned.
	Revoked(ctx context.Context, a *Assignment) error
}

// Assignment is a set of partitions added to or revoked from this member
// in a rebalance.
type Assignment struct {
	// Generation is the group's generation the rebalance made, and
	// MemberID this member's id in it. (Offsets are committed in the
	// member's current generation, whatever Generation says.)
	Generation int32
	MemberID   string
	// Topics are the topics the group consumes, as given to Join.
	Topics []string
	// Partitions are the partition numbers added or revoked, of every
	// topic, in increasing order; empty when a rebalance added nothing.
	Partitions []int32
	// Owned are all the partition numbers this member owns after the
	// rebalance, in increasing order.
	Owned []int32
	// Member marks and commits the member's offsets.
	Member *Member
}

// Member is one membership of a group, as Join runs it: it marks and
// commits the offsets of the partitions the member owns, in the member's
// current generation. Its methods may be called from any goroutine.
type Member struct {
	commit func(ctx context.Context, offsets map[topicPartition]int64) error

	mu        sync.Mutex
	owned     map[int32]bool // partitions assigned and not yet revoked
	marked    map[topicPartition]int64
	committed map[topicPartition]int64
	ended     bool

	commitMu sync.Mutex // serializes commits, so they reach the broker in order
}

type topicPartition struct {
	topic     string
	partition int32
}

// ErrGenerationEnded is returned by Commit after Join returned: the member
// is no longer the group's.
var ErrGenerationEnded = errors.New("group membership ended")

// MarkOffset records next, the offset of the next record to consume from
// topic/partition (the last one done plus one), for the next Commit. Marks
// only move forward: a lower offset than one marked before is ignored, as
// is a partition the member does not own (any more).
func (g *Member) MarkOffset(topic string, partition int32, next int64) {
	tp := topicPartition{topic, partition}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.owned[partition] {
		return
	}
	if prev, ok := g.marked[tp]; !ok || next > prev {
		g.marked[tp] = next
	}
}

// Commit commits every offset marked since the last Commit, synchronously,
// and returns the error of any it could not commit. It may be called from
// any goroutine, any time until Join returns: from a Consume, a Revoked (a
// revoked partition's offsets are committed until its Revoked returns) or
// a goroutine of the handler's own. It retries through a broker outage
// until ctx ends or it has failed for Config.DeliveryTimeout (the error
// then matches ErrDeliveryTimeout), and through a rebalance in progress; a
// member the coordinator no longer knows fails it at once.
func (g *Member) Commit(ctx context.Context) error {
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	g.mu.Lock()
	if g.ended {
		g.mu.Unlock()
		return fmt.Errorf("kafka: commit: %w", ErrGenerationEnded)
	}
	todo := make(map[topicPartition]int64)
	for tp, off := range g.marked {
		if c, ok := g.committed[tp]; !ok || c != off {
			todo[tp] = off
		}
	}
	g.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	if err := g.commit(ctx, todo); err != nil {
		return err
	}
	g.mu.Lock()
	for tp, off := range todo {
		if _, ok := g.marked[tp]; ok {
			g.committed[tp] = off
		}
	}
	g.mu.Unlock()
	return nil
}

// own adds partitions to the member's.
func (g *Member) own(parts []int32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range parts {
		g.owned[p] = true
	}
}

// disown forgets partitions whose Revoked returned: their offsets are
// their next owner's to commit now.
func (g *Member) disown(parts []int32) {
	g.commitMu.Lock() // a Commit in flight finishes first
	defer g.commitMu.Unlock()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range parts {
		delete(g.owned, p)
	}
	for tp := range g.marked {
		if !g.owned[tp.partition] {
			delete(g.marked, tp)
			delete(g.committed, tp)
		}
	}
}

func (g *Member) end() {
	g.mu.Lock()
	g.ended = true
	g.mu.Unlock()
}

// Claim is one topic-partition of an assignment, as Consume gets it. It
// lives until the partition is revoked.
//
// The group's poll loop hands each fetch's records of the partition to the
// claim as one slice, and Poll takes them from there: one hand-over per
// fetch, none per record. A claim holding more than claimMaxBuffered
// records pauses fetching its partition until Poll has taken most of them.
type Claim struct {
	// Topic and Partition name the claimed topic-partition.
	Topic     string
	Partition int32

	member  *Member
	initial atomic.Int64
	hw      atomic.Int64
	ctx     context.Context // ends when the partition is revoked
	cancel  context.CancelFunc
	ended   <-chan struct{} // ctx.Done()
	resume  func()          // resumes fetching the paused partition
	// consuming is done once Consume returned, or at once if it was
	// never started.
	consuming sync.WaitGroup

	mu       sync.Mutex
	queue    [][]*kgo.Record // fetched slices, oldest first; queue[0][head:] is next
	head     int
	buffered int
	paused   bool
	ready    chan struct{} // has a token while records are queued
}

const (
	// claimMaxBuffered is how many fetched records a claim holds before
	// its partition's fetching pauses; claimResumeBelow is where it
	// resumes.
	claimMaxBuffered = 8192
	claimResumeBelow = 2048
)

func newClaim(ctx context.Context, topic string, partition int32, member *Member, resume func()) *Claim {
	cctx, cancel := context.WithCancel(ctx)
	c := &Claim{Topic: topic, Partition: partition, member: member, ctx: cctx, cancel: cancel, ended: cctx.Done(), resume: resume, ready: make(chan struct{}, 1)}
	c.initial.Store(-1)
	c.hw.Store(-1)
	return c
}

// push queues a fetch's records. It reports whether the partition should
// pause: the claim is full.
func (c *Claim) push(recs []*kgo.Record, hw int64) (pause bool) {
	c.hw.Store(hw)
	if len(recs) == 0 {
		return false
	}
	c.mu.Lock()
	c.queue = append(c.queue, recs)
	c.buffered += len(recs)
	if c.buffered >= claimMaxBuffered && !c.paused {
		c.paused, pause = true, true
	}
	c.mu.Unlock()
	select {
	case c.ready <- struct{}{}:
	default:
	}
	return pause
}

// Poll waits for the claim's next records and returns them in offset
// order, appended to buf[:0]: at least one, and as many more as are
// already fetched, up to cap(buf) (at least one). ok is false once the
// claim has ended, its partition revoked; it may return records with ok
// true, then none with ok false. If wake is closed first, Poll returns no
// records and ok true.
//
// Records are taken in batches, straight from the client's fetches, so
// that the caller pays for one wake-up (and one lock, say) per batch
// rather than per record.
func (c *Claim) Poll(wake <-chan struct{}, buf []*Record) (recs []*Record, ok bool) {
	recs = buf[:0]
	for {
		select {
		case <-c.ended:
			return recs, false
		default:
		}
		if recs = c.take(recs, max(cap(buf), 1)); len(recs) > 0 {
			return recs, true
		}
		select {
		case <-c.ready:
		case <-wake:
			return recs, true
		case <-c.ended:
			return recs, false
		}
	}
}

// take moves up to n queued records into recs.
func (c *Claim) take(recs []*Record, n int) []*Record {
	c.mu.Lock()
	var resume bool
	for len(recs) < n && len(c.queue) > 0 {
		first := c.queue[0][c.head:]
		k := min(len(first), n-len(recs))
		recs = fromKgo(first[:k], recs)
		c.head += k
		c.buffered -= k
		if c.head == len(c.queue[0]) {
			c.queue[0] = nil
			c.queue = c.queue[1:]
			c.head = 0
		}
	}
	if c.buffered > 0 {
		select {
		case c.ready <- struct{}{}:
		default:
		}
	}
	if c.paused && c.buffered < claimResumeBelow {
		c.paused, resume = false, true
	}
	c.mu.Unlock()
	if resume {
		c.resume()
	}
	return recs
}

// HighWatermark returns the partition's high watermark as of the last
// fetch: how far the claim has to read to catch up; -1 before the first.
func (c *Claim) HighWatermark() int64 { return c.hw.Load() }

// InitialOffset returns the offset the claim reads from: the group's
// committed offset, or -1 if it has none (or it could not be asked for)
// and the claim starts at the partition's log start offset.
func (c *Claim) InitialOffset() int64 { return c.initial.Load() }

// MarkOffset marks next, the offset after the last record done, for commit:
// see Member.MarkOffset.
func (c *Claim) MarkOffset(next int64) { c.member.MarkOffset(c.Topic, c.Partition, next) }

// Commit commits every offset the member marked: see Member.Commit.
func (c *Claim) Commit(ctx context.Context) error { return c.member.Commit(ctx) }

// Member returns the membership the claim belongs to.
func (c *Claim) Member() *Member { return c.member }

// Join implements Group. Each Join has a franz-go client of its own, a
// consumer group member; the member leaves the group when Join returns,
// unless Config.InstanceID makes it static. No goroutine of the Join
// outlives it.
func (c *Client) Join(ctx context.Context, group string, topics []string, h GroupHandler) error {
	if len(topics) == 0 {
		return fmt.Errorf("kafka: join group %q: no topics", group)
	}
	log := c.log.With("group", group)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := &membership{group: group, topics: topics, h: h, cfg: c.cfg, log: log, ctx: ctx, stop: cancel,
		balancer: &copartitionBalancer{log: log}, claims: map[topicPartition]*Claim{},
		owned: map[int32]bool{}, runs: map[*assignRun]struct{}{}}
	if sh, ok := h.(StateHolder); ok {
		m.balancer.state = sh
	}
	m.member = &Member{commit: m.commit, owned: map[int32]bool{},
		marked: map[topicPartition]int64{}, committed: map[topicPartition]int64{}}
	opts := append(c.cfg.kgoBase("group"),
		kgo.WithHooks(&m.conn),
		// OffsetCommit v10 names topics by id, which commit does not
		// know; v9 names them, and every broker that speaks v10 speaks
		// v9.
		kgo.MaxVersions(commitVersions()),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topics...),
		kgo.Balancers(m.balancer),
		kgo.SessionTimeout(c.cfg.SessionTimeout),
		kgo.HeartbeatInterval(c.cfg.HeartbeatInterval),
		kgo.RebalanceTimeout(c.cfg.RebalanceTimeout),
		// Offsets are committed only by Member.Commit, after the
		// runtime knows every effect of a record is acknowledged.
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// No BlockRebalanceOnPoll: a rebalance must not wait for, nor
		// hold up, the partitions that stay. The poll loop and the
		// changes of claims take turns through membership.gate instead,
		// so that a poll's records reach only the claims they were
		// fetched for.
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.OnPartitionsAssigned(m.assigned),
		kgo.OnPartitionsRevoked(m.revoked),
		kgo.OnPartitionsLost(m.lost),
	)
	if c.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(c.cfg.InstanceID))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka: join group %q: %w", group, err)
	}
	m.cl = cl
	err = m.run(ctx)

	// Leaving revokes every partition (Revoked runs) before the
	// LeaveGroup, so that their final commit is still the member's. The
	// LeaveGroup itself is a courtesy, retried no longer than a delivery
	// through an outage would be: a member that cannot say goodbye is
	// dropped at its session timeout. (A Revoked running when this gives
	// up goes on; revokeAll waits for it.)
	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), min(c.cfg.RebalanceTimeout, c.cfg.DeliveryTimeout))
	if lerr := cl.LeaveGroupContext(lctx); lerr != nil && !errors.Is(lerr, kgo.ErrClientClosed) {
		log.Warn("leaving group", "err", lerr)
	}
	lcancel()
	m.revokeAll() // what the leave did not revoke (no session, say)
	m.wg.Wait()
	m.member.end()
	cl.Close()
	if ferr := m.failure(); ferr != nil {
		return ferr
	}
	return err
}

// membership is one Join: the poll loop, kgo's callbacks and the claims
// of the partitions the member owns.
type membership struct {
	cl     *kgo.Client
	group  string
	topics []string
	h      GroupHandler
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // Join's; ended by stop
	stop   context.CancelFunc
	member *Member

	balancer *copartitionBalancer
	conn     connHealth

	// gate is held shared by the poll loop from before a poll to after
	// its records are handed to the claims, and exclusively by a change
	// of the claims. Records fetched while a partition was ours thus
	// never reach a claim of a later assignment of it, and a change
	// waits for no more than the hand-over in progress: it interrupts a
	// poll that is waiting for records.
	gate       sync.RWMutex
	claims     map[topicPartition]*Claim // guarded by gate
	wantGate   atomic.Int32
	pollMu     sync.Mutex
	pollCancel context.CancelFunc

	// changeMu serializes kgo's assignment callbacks with Join's final
	// revoke.
	changeMu sync.Mutex
	wg       sync.WaitGroup // every goroutine of the membership

	mu        sync.Mutex
	owned     map[int32]bool          // partitions assigned and not revoked
	runs      map[*assignRun]struct{} // Assigned calls not returned
	inSession bool                    // from an assignment to the loss of the session
	err       error                   // the first handler error
	sessions  int                     // sessions begun
}

// assignRun is one Assigned call and the claims it starts.
type assignRun struct {
	a      *Assignment
	ctx    context.Context
	cancel context.CancelFunc
	claims []*Claim
	done   chan struct{} // closed when Assigned returned and the Consumes started
	ok     bool          // Assigned succeeded in time and the Consumes started; set before done
}

// run polls the member's fetches and hands them to the claims until ctx
// ends or the membership fails.
//
// Through a broker outage kgo rejoins (the session in progress is lost)
// and reports failed attempts in polls. The membership ends with
// ErrDeliveryTimeout once it has had no session while failing (its
// connections failing, or the group's answers being errors) for
// Config.DeliveryTimeout.
func (m *membership) run(ctx context.Context) error {
	var errSince time.Time // of the first group error since a session began
	var lastErr error
	sessions := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		m.gate.RLock()
		m.pollMu.Lock()
		m.pollCancel = cancel
		m.pollMu.Unlock()
		if m.wantGate.Load() > 0 {
			cancel() // a change of claims waits: let it in first
		}
		fetches := m.cl.PollFetches(pctx)
		m.dispatch(fetches)
		m.pollMu.Lock()
		m.pollCancel = nil
		m.pollMu.Unlock()
		m.gate.RUnlock()
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if n := m.sessionCount(); n != sessions {
			sessions, errSince = n, time.Time{}
		}
		var failed error
		fetches.EachError(func(topic string, partition int32, err error) {
			switch {
			case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			case topic == "" && failed == nil:
				failed = err
			case topic != "":
				m.log.Warn("fetching", "topic", topic, "partition", partition, "err", err)
			}
		})
		if errors.Is(failed, kgo.ErrClientClosed) {
			return fmt.Errorf("kafka: group %q: %w", m.group, failed)
		}
		if failed != nil {
			if permanent(failed) {
				return fmt.Errorf("kafka: group %q: %w", m.group, failed)
			}
			if errSince.IsZero() {
				errSince = time.Now()
				m.log.Warn("group membership failing; retrying", "err", failed)
			}
			lastErr = failed
		}
		if m.inSessionNow() {
			continue
		}
		since, err := m.conn.failing()
		if since.IsZero() || !errSince.IsZero() && errSince.Before(since) {
			since, err = errSince, lastErr
		}
		if !since.IsZero() {
			if failing := time.Since(since); failing >= m.cfg.DeliveryTimeout {
				return fmt.Errorf("kafka: group %q: %w (%w: failing for %v)", m.group, err, ErrDeliveryTimeout, failing.Round(time.Millisecond))
			}
		}
	}
}

// changeClaims runs change with the gate held exclusively: no poll's
// records are on their way to the claims meanwhile.
func (m *membership) changeClaims(change func()) {
	m.wantGate.Add(1)
	m.pollMu.Lock()
	if m.pollCancel != nil {
		m.pollCancel()
	}
	m.pollMu.Unlock()
	m.gate.Lock()
	m.wantGate.Add(-1)
	defer m.gate.Unlock()
	change()
}

func (m *membership) inSessionNow() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inSession
}

// connHealth is a kgo hook that keeps since when a membership's
// connections have been failing: from the first failed connect, read or
// write after the last successful read.
type connHealth struct {
	mu    sync.Mutex
	since time.Time
	err   error
}

func (h *connHealth) failing() (time.Time, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.since, h.err
}

func (h *connHealth) note(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err == nil:
		h.since, h.err = time.Time{}, nil
	case h.since.IsZero():
		h.since, h.err = time.Now(), err
	default:
		h.err = err
	}
}

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (h *connHealth) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		h.note(err)
	}
}

// OnBrokerWrite implements kgo.HookBrokerWrite.
func (h *connHealth) OnBrokerWrite(_ kgo.BrokerMetadata, _ int16, _ int, _, _ time.Duration, err error) {
	if err != nil {
		h.note(err)
	}
}

// OnBrokerRead implements kgo.HookBrokerRead.
func (h *connHealth) OnBrokerRead(_ kgo.BrokerMetadata, _ int16, _ int, _, _ time.Duration, err error) {
	h.note(err)
}

// permanent reports whether a failed join cannot succeed by retrying.
func permanent(err error) bool {
	return errors.Is(err, ErrNotCopartitioned) ||
		errors.Is(err, kerr.InconsistentGroupProtocol) ||
		errors.Is(err, kerr.GroupAuthorizationFailed) ||
		errors.Is(err, kerr.InvalidSessionTimeout) ||
		errors.Is(err, kerr.FencedInstanceID)
}

// dispatch hands each partition's fetched records to its claim. Call with
// the gate held shared.
func (m *membership) dispatch(fetches kgo.Fetches) {
	var pause map[string][]int32
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		c := m.claims[topicPartition{p.Topic, p.Partition}]
		if c == nil {
			return // revoked meanwhile: not ours to process
		}
		if c.push(p.Records, p.HighWatermark) {
			if pause == nil {
				pause = map[string][]int32{}
			}
			pause[p.Topic] = append(pause[p.Topic], p.Partition)
		}
	})
	if pause != nil {
		m.cl.PauseFetchPartitions(pause)
	}
}

func (m *membership) sessionCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sessions
}

// fail records a handler's error and ends the membership.
func (m *membership) fail(err error) {
	m.mu.Lock()
	if m.err == nil {
		m.err = err
	}
	m.mu.Unlock()
	m.stop()
}

func (m *membership) failure() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// check passes on a handler's error, unless it is ctx's own after ctx ended.
func (m *membership) check(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return nil
	}
	err = fmt.Errorf("kafka: group %q: %s: %w", m.group, what, err)
	m.fail(err)
	return err
}

// ownedList returns the partitions the member owns, in order. Call with
// m.mu held.
func (m *membership) ownedList() []int32 {
	out := make([]int32, 0, len(m.owned))
	for p := range m.owned {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// assigned is kgo's OnPartitionsAssigned, called at the start of every
// session with the partitions it adds (maybe none). The partitions'
// claims take their records from now on; the handler's Assigned runs on
// a goroutine of its own, and their Consumes start once it returns.
func (m *membership) assigned(_ context.Context, cl *kgo.Client, added map[string][]int32) {
	m.changeMu.Lock()
	defer m.changeMu.Unlock()
	member, gen := cl.GroupMetadata()
	parts := assignedPartitions(added)
	var claims []*Claim
	m.changeClaims(func() {
		for t, ps := range added {
			for _, p := range ps {
				c := newClaim(m.ctx, t, p, m.member, func() {
					cl.ResumeFetchPartitions(map[string][]int32{t: {p}})
				})
				m.claims[topicPartition{t, p}] = c
				claims = append(claims, c)
			}
		}
	})
	m.member.own(parts)
	m.mu.Lock()
	for _, p := range parts {
		m.owned[p] = true
	}
	owned := m.ownedList()
	m.sessions++
	m.inSession = true
	m.mu.Unlock()
	m.balancer.remember(owned, gen)
	m.log.Info("group generation", "generation", gen, "member", member, "partitions", owned, "added", parts)
	m.start(&Assignment{Generation: gen, MemberID: member, Topics: m.topics, Partitions: parts, Owned: owned, Member: m.member}, claims)
}

// start runs the handler's Assigned for a, then the Consumes of its claims.
func (m *membership) start(a *Assignment, claims []*Claim) {
	if a.Partitions == nil {
		a.Partitions = []int32{}
	}
	ctx, cancel := context.WithCancel(m.ctx)
	run := &assignRun{a: a, ctx: ctx, cancel: cancel, claims: claims, done: make(chan struct{})}
	for _, c := range claims {
		c.consuming.Add(1) // done by its Consume, or below if it never starts
	}
	m.mu.Lock()
	m.runs[run] = struct{}{}
	m.mu.Unlock()
	m.wg.Go(func() {
		defer func() {
			m.mu.Lock()
			delete(m.runs, run)
			m.mu.Unlock()
			cancel()
			close(run.done)
		}()
		m.initialOffsets(ctx, claims)
		if m.check(ctx, "assigned", m.h.Assigned(ctx, a)) != nil || ctx.Err() != nil {
			for _, c := range claims {
				c.consuming.Done()
			}
			return
		}
		for _, c := range claims {
			if c.ctx.Err() != nil {
				c.consuming.Done()
				continue
			}
			m.wg.Go(func() {
				defer c.consuming.Done()
				m.check(c.ctx, fmt.Sprintf("consume %s/%d", c.Topic, c.Partition), m.h.Consume(c.ctx, c))
			})
		}
		run.ok = true
	})
}

// initialOffsets tells the claims the group's committed offsets. They are
// only shown (Claim.InitialOffset): kgo itself fetches where to start.
func (m *membership) initialOffsets(ctx context.Context, claims []*Claim) {
	if len(claims) == 0 {
		return
	}
	offs, err := kadm.NewClient(m.cl).FetchOffsets(ctx, m.group)
	if err != nil {
		m.log.Debug("fetching committed offsets", "err", err)
		return
	}
	for _, c := range claims {
		if o, ok := offs.Lookup(c.Topic, c.Partition); ok && o.Err == nil && o.At >= 0 {
			c.initial.Store(o.At)
		}
	}
}

// revoked is kgo's OnPartitionsRevoked: the partitions move elsewhere, or
// the member leaves. kgo rejoins once it returns, for the group to give
// them to their next owner.
func (m *membership) revoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	m.changeMu.Lock()
	defer m.changeMu.Unlock()
	m.revoke(assignedPartitions(lost), "revoked")
}

// lost is kgo's OnPartitionsLost: the session is lost (the coordinator
// dropped the member, or a broker outage outlasted the session), and with
// it every partition; they may have an owner already.
func (m *membership) lost(context.Context, *kgo.Client, map[string][]int32) {
	m.changeMu.Lock()
	defer m.changeMu.Unlock()
	m.mu.Lock()
	owned := m.ownedList()
	m.inSession = false
	m.mu.Unlock()
	m.revoke(owned, "lost")
}

// revokeAll revokes what the member still owns when Join ends.
func (m *membership) revokeAll() {
	m.changeMu.Lock()
	defer m.changeMu.Unlock()
	m.mu.Lock()
	owned := m.ownedList()
	m.mu.Unlock()
	m.revoke(owned, "left")
}

// revoke ends the partitions parts (those of them the member owns): their
// claims take no more records and end, an Assigned still running for them
// ends, and once their Consumes returned the handler's Revoked runs, with
// the time the coordinator gives a member to rejoin. The other partitions
// go on as they were; those of an Assigned that ended before it was done
// get an Assigned of their own. Call with changeMu held.
func (m *membership) revoke(parts []int32, why string) {
	m.mu.Lock()
	var gone []int32
	for _, p := range parts {
		if m.owned[p] {
			gone = append(gone, p)
		}
	}
	var runs []*assignRun
	for run := range m.runs {
		if slices.ContainsFunc(run.a.Partitions, func(p int32) bool { return slices.Contains(gone, p) }) {
			runs = append(runs, run)
		}
	}
	m.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	var ended []*Claim
	m.changeClaims(func() {
		for tp, c := range m.claims {
			if slices.Contains(gone, tp.partition) {
				ended = append(ended, c)
				delete(m.claims, tp)
			}
		}
	})
	for _, c := range ended {
		c.cancel()
	}
	for _, run := range runs {
		run.cancel()
		<-run.done
	}
	paused := map[string][]int32{}
	for _, c := range ended {
		c.consuming.Wait()
		c.mu.Lock()
		if c.paused {
			paused[c.Topic] = append(paused[c.Topic], c.Partition)
		}
		c.mu.Unlock()
	}
	if len(paused) > 0 {
		m.cl.ResumeFetchPartitions(paused)
	}
	m.mu.Lock()
	for _, p := range gone {
		delete(m.owned, p)
	}
	owned := m.ownedList()
	m.mu.Unlock()
	member, gen := m.cl.GroupMetadata()
	m.log.Info("group partitions revoked", "why", why, "generation", gen, "member", member, "partitions", gone, "owned", owned)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), m.cfg.RebalanceTimeout)
	defer cancel()
	a := &Assignment{Generation: gen, MemberID: member, Topics: m.topics, Partitions: gone, Owned: owned, Member: m.member}
	m.check(ctx, "revoked", m.h.Revoked(ctx, a))
	m.member.disown(gone)

	// An Assigned that ended for the revoked partitions leaves the others
	// of its assignment without their Consumes: they get an Assigned of
	// their own.
	for _, run := range runs {
		if run.ok || m.ctx.Err() != nil {
			continue
		}
		var rest []*Claim
		var restParts []int32
		for _, c := range run.claims {
			if !slices.Contains(gone, c.Partition) {
				rest = append(rest, c)
				if !slices.Contains(restParts, c.Partition) {
					restParts = append(restParts, c.Partition)
				}
			}
		}
		if len(restParts) == 0 {
			continue
		}
		slices.Sort(restParts)
		m.start(&Assignment{Generation: gen, MemberID: member, Topics: m.topics, Partitions: restParts, Owned: owned, Member: m.member}, rest)
	}
}

// commitVersions is the stable protocol versions with OffsetCommit held at
// v9.
func commitVersions() *kversion.Versions {
	v := kversion.Stable()
	v.SetMaxKeyVersion(kmsg.OffsetCommit.Int16(), 9)
	return v
}

// errRebalancing wraps a commit's error that a rebalance in progress
// causes: the coordinator takes no commits between the members' joins and
// the leader's assignment (REBALANCE_IN_PROGRESS), and one sent just before
// the member's generation moved on names the old one
// (ILLEGAL_GENERATION). The commit is retried in the member's new
// generation; the partitions it commits are still the member's until their
// Revoked returns.
var errRebalancing = errors.New("group rebalancing")

// commit sends one OffsetCommit in the member's current generation,
// retrying through a rebalance in progress, a moved or unavailable
// coordinator, or an unreachable broker, up to Config.DeliveryTimeout. An
// error that retrying cannot cure (the member is no longer in the group:
// UNKNOWN_MEMBER_ID, or ILLEGAL_GENERATION in its current generation)
// returns at once.
func (m *membership) commit(ctx context.Context, offsets map[topicPartition]int64) error {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = m.group
	if m.cfg.InstanceID != "" {
		req.InstanceID = &m.cfg.InstanceID
	}
	byTopic := map[string]int{}
	for tp, off := range offsets {
		i, ok := byTopic[tp.topic]
		if !ok {
			i = len(req.Topics)
			byTopic[tp.topic] = i
			rt := kmsg.NewOffsetCommitRequestTopic()
			rt.Topic = tp.topic
			req.Topics = append(req.Topics, rt)
		}
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition = tp.partition
		rp.Offset = off
		rp.LeaderEpoch = -1
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
	}
	gen := int32(-1)
	err := retry(ctx, m.cfg, m.log, func(ctx context.Context) error {
		req.MemberID, req.Generation = m.cl.GroupMetadata()
		gen = req.Generation
		if req.MemberID == "" {
			return fmt.Errorf("not a member of the group: %w", kerr.UnknownMemberID)
		}
		resp, err := req.RequestWith(ctx, m.cl)
		if err != nil {
			return err
		}
		var errs []error
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				err := kerr.ErrorForCode(p.ErrorCode)
				if err == nil {
					continue
				}
				if _, now := m.cl.GroupMetadata(); errors.Is(err, kerr.RebalanceInProgress) ||
					errors.Is(err, kerr.IllegalGeneration) && now != req.Generation {
					err = fmt.Errorf("%w: %w", errRebalancing, err)
				}
				errs = append(errs, fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err))
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("kafka: commit group %q generation %d: %w", m.group, gen, err)
	}
	return nil
}
