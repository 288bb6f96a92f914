package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// GroupHandler is driven by Join through the generations of a group. A
// generation is one assignment: it begins when the group has (re)balanced
// and ends when the next rebalance begins or the member leaves. In each:
//
//  1. Assigned is called with the generation's partitions. It may block,
//     to restore state, and should return when ctx ends, which it does
//     when a rebalance starts meanwhile. The member heartbeats meanwhile.
//  2. Then Consume is called for every topic-partition of the generation,
//     each on a goroutine of its own, with the records from the group's
//     committed offset on (from the log start if it has none).
//  3. When the generation ends, the contexts of Assigned and Consume end
//     and every Claim's Poll reports the end; Consume finishes the
//     records it has taken and returns.
//  4. Once every Consume has returned, Revoked is called, with a context
//     that ends after Config.RebalanceTimeout: it waits for what the
//     records caused to be acknowledged, marks and commits the last
//     offsets, and closes what the partitions needed.
//
// Revoked is called for every Assigned, even one that failed. The group
// uses the eager rebalance protocol: every generation ends with all of its
// partitions revoked, and the co-partitioning strategy gives each member
// back the partitions it had, where balance allows, so a handler can keep
// the state of a partition it gets back open across Revoked and Assigned.
//
// An error returned by a method stops the membership: Join leaves the group
// and returns it. The one exception is a context error returned after ctx
// ended, which is taken as the method obeying ctx. Consume returns early
// (before Poll reported the end) only with an error: a claim whose
// Consume returned nil is not consumed again in the generation.
type GroupHandler interface {
	// Assigned starts generation g, before any of its records arrive.
	Assigned(ctx context.Context, g *Generation) error
	// Consume processes the records of one claim until its Poll reports
	// the end.
	Consume(ctx context.Context, c *Claim) error
	// Revoked ends generation g, after every Consume of it returned.
	Revoked(ctx context.Context, g *Generation) error
}

// Generation is one generation of a group membership: the partitions this
// member owns in it, and the offsets marked for commit.
type Generation struct {
	// ID is the group's generation id.
	ID int32
	// MemberID is this member's id in the group.
	MemberID string
	// Topics are the topics the group consumes, as given to Join.
	Topics []string
	// Partitions are the partition numbers this member owns, of every
	// topic, in increasing order. Empty when the group has more members
	// than partitions.
	Partitions []int32

	commit func(ctx context.Context, g *Generation, offsets map[topicPartition]int64) error

	mu        sync.Mutex
	marked    map[topicPartition]int64
	committed map[topicPartition]int64
	ended     bool

	commitMu sync.Mutex // serializes commits, so they reach the broker in order
}

type topicPartition struct {
	topic     string
	partition int32
}

// ErrGenerationEnded is returned by Commit after the generation's Revoked
// returned: its member id and generation are no longer the group's.
var ErrGenerationEnded = errors.New("group generation ended")

// MarkOffset records next, the offset of the next record to consume from
// topic/partition (the last one done plus one), for the next Commit. Marks
// only move forward: a lower offset than one marked before is ignored.
func (g *Generation) MarkOffset(topic string, partition int32, next int64) {
	tp := topicPartition{topic, partition}
	g.mu.Lock()
	defer g.mu.Unlock()
	if prev, ok := g.marked[tp]; !ok || next > prev {
		g.marked[tp] = next
	}
}

// Commit commits every offset marked since the last Commit, synchronously,
// and returns the error of any it could not commit. It may be called from
// any goroutine, during the generation or from Revoked. It retries through
// a broker outage until ctx ends or it has failed for
// Config.DeliveryTimeout (the error then matches ErrDeliveryTimeout); a
// generation the coordinator no longer knows fails it at once.
func (g *Generation) Commit(ctx context.Context) error {
	g.commitMu.Lock()
	defer g.commitMu.Unlock()
	g.mu.Lock()
	if g.ended {
		g.mu.Unlock()
		return fmt.Errorf("kafka: commit: generation %d: %w", g.ID, ErrGenerationEnded)
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
	if err := g.commit(ctx, g, todo); err != nil {
		return err
	}
	g.mu.Lock()
	for tp, off := range todo {
		g.committed[tp] = off
	}
	g.mu.Unlock()
	return nil
}

func (g *Generation) end() {
	g.mu.Lock()
	g.ended = true
	g.mu.Unlock()
}

// Claim is one topic-partition of a generation, as Consume gets it.
//
// The group's poll loop hands each fetch's records of the partition to the
// claim as one slice, and Poll takes them from there: one hand-over per
// fetch, none per record. A claim holding more than claimMaxBuffered
// records pauses fetching its partition until Poll has taken most of them.
type Claim struct {
	// Topic and Partition name the claimed topic-partition.
	Topic     string
	Partition int32

	gen     *Generation
	initial atomic.Int64
	hw      atomic.Int64
	ended   <-chan struct{} // closed when the generation ends
	resume  func()          // resumes fetching the paused partition

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

func newClaim(topic string, partition int32, gen *Generation, ended <-chan struct{}, resume func()) *Claim {
	c := &Claim{Topic: topic, Partition: partition, gen: gen, ended: ended, resume: resume, ready: make(chan struct{}, 1)}
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
// claim has ended with the generation; it may return records with ok
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
// see Generation.MarkOffset.
func (c *Claim) MarkOffset(next int64) { c.gen.MarkOffset(c.Topic, c.Partition, next) }

// Commit commits every offset marked in the generation: see
// Generation.Commit.
func (c *Claim) Commit(ctx context.Context) error { return c.gen.Commit(ctx) }

// Generation returns the generation the claim belongs to.
func (c *Claim) Generation() *Generation { return c.gen }

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
		balancer: &copartitionBalancer{log: log}}
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
		// Offsets are committed only by Generation.Commit, after the
		// runtime knows every effect of a record is acknowledged.
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// A poll's records are handed to their claims before the group
		// may rebalance: a generation's records never reach the next
		// generation's claims.
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.OnPartitionsAssigned(m.assigned),
		kgo.OnPartitionsRevoked(m.revoked),
		kgo.OnPartitionsLost(m.revoked),
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

	// Leaving ends the generation (Revoked runs) before the LeaveGroup,
	// so that its final commit is still the member's.
	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.RebalanceTimeout)
	if lerr := cl.LeaveGroupContext(lctx); lerr != nil && !errors.Is(lerr, kgo.ErrClientClosed) {
		log.Warn("leaving group", "err", lerr)
	}
	lcancel()
	m.endSession() // if the leave did not revoke (no generation, say)
	cl.Close()
	if ferr := m.failure(); ferr != nil {
		return ferr
	}
	return err
}

// membership is one Join: the poll loop, kgo's callbacks and the current
// generation's claims.
type membership struct {
	cl     *kgo.Client
	group  string
	topics []string
	h      GroupHandler
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // Join's; ended by stop
	stop   context.CancelFunc

	balancer *copartitionBalancer
	conn     connHealth

	mu   sync.Mutex
	cur  *session // nil between generations
	err  error    // the first handler error
	gens int      // generations begun
}

// session is one generation as this member runs it.
type session struct {
	gen    *Generation
	ctx    context.Context
	cancel context.CancelFunc
	claims map[topicPartition]*Claim
	wg     sync.WaitGroup // Assigned, then the Consumes
}

// run polls the member's fetches and hands them to the claims until ctx
// ends or the membership fails.
//
// Through a broker outage kgo rejoins (the generation in progress ends)
// and reports failed attempts in polls. The membership ends with
// ErrDeliveryTimeout once it has had no generation while failing (its
// connections failing, or the group's answers being errors) for
// Config.DeliveryTimeout.
func (m *membership) run(ctx context.Context) error {
	var errSince time.Time // of the first group error since a generation began
	var lastErr error
	gens := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		fetches := m.cl.PollFetches(pctx)
		cancel()
		m.dispatch(fetches)
		m.cl.AllowRebalance()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if n := m.generations(); n != gens {
			gens, errSince = n, time.Time{}
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
		if m.inGeneration() {
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

func (m *membership) inGeneration() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur != nil
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

// dispatch hands each partition's fetched records to its claim.
func (m *membership) dispatch(fetches kgo.Fetches) {
	var pause map[string][]int32
	m.mu.Lock()
	s := m.cur
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if s == nil {
			return
		}
		c := s.claims[topicPartition{p.Topic, p.Partition}]
		if c == nil {
			return
		}
		if c.push(p.Records, p.HighWatermark) {
			if pause == nil {
				pause = map[string][]int32{}
			}
			pause[p.Topic] = append(pause[p.Topic], p.Partition)
		}
	})
	m.mu.Unlock()
	if pause != nil {
		m.cl.PauseFetchPartitions(pause)
	}
}

func (m *membership) generations() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gens
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

// assigned is kgo's OnPartitionsAssigned: it begins a generation. The
// handler's Assigned runs on a goroutine of its own, so that a rebalance
// beginning meanwhile can end its context; the claims' Consumes start
// once it returns.
func (m *membership) assigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	member, genID := cl.GroupMetadata()
	g := &Generation{
		ID:         genID,
		MemberID:   member,
		Topics:     m.topics,
		Partitions: assignedPartitions(assigned),
		commit:     m.commit,
		marked:     make(map[topicPartition]int64),
		committed:  make(map[topicPartition]int64),
	}
	if g.Partitions == nil {
		g.Partitions = []int32{}
	}
	sctx, cancel := context.WithCancel(m.ctx)
	s := &session{gen: g, ctx: sctx, cancel: cancel, claims: map[topicPartition]*Claim{}}
	for t, ps := range assigned {
		for _, p := range ps {
			s.claims[topicPartition{t, p}] = newClaim(t, p, g, sctx.Done(), func() {
				cl.ResumeFetchPartitions(map[string][]int32{t: {p}})
			})
		}
	}
	m.balancer.remember(g.Partitions, g.ID)
	m.mu.Lock()
	m.cur = s
	m.gens++
	m.mu.Unlock()
	m.log.Info("group generation", "generation", g.ID, "member", g.MemberID, "partitions", g.Partitions)
	s.wg.Go(func() {
		m.initialOffsets(sctx, s)
		if m.check(sctx, "assigned", m.h.Assigned(sctx, g)) != nil || sctx.Err() != nil {
			return
		}
		for _, c := range s.claims {
			s.wg.Go(func() {
				m.check(sctx, fmt.Sprintf("consume %s/%d", c.Topic, c.Partition), m.h.Consume(sctx, c))
			})
		}
	})
}

// initialOffsets tells the claims the group's committed offsets. They are
// only shown (Claim.InitialOffset): kgo itself fetches where to start.
func (m *membership) initialOffsets(ctx context.Context, s *session) {
	if len(s.claims) == 0 {
		return
	}
	offs, err := kadm.NewClient(m.cl).FetchOffsets(ctx, m.group)
	if err != nil {
		m.log.Debug("fetching committed offsets", "err", err)
		return
	}
	for tp, c := range s.claims {
		if o, ok := offs.Lookup(tp.topic, tp.partition); ok && o.Err == nil && o.At >= 0 {
			c.initial.Store(o.At)
		}
	}
}

// revoked is kgo's OnPartitionsRevoked and OnPartitionsLost.
func (m *membership) revoked(context.Context, *kgo.Client, map[string][]int32) { m.endSession() }

// endSession ends the current generation, if any: its contexts end, its
// Consumes return, and Revoked runs, with the time the coordinator gives a
// member to rejoin.
func (m *membership) endSession() {
	m.mu.Lock()
	s := m.cur
	m.cur = nil
	m.mu.Unlock()
	if s == nil {
		return
	}
	s.cancel()
	s.wg.Wait()
	paused := map[string][]int32{}
	for tp, c := range s.claims {
		c.mu.Lock()
		if c.paused {
			paused[tp.topic] = append(paused[tp.topic], tp.partition)
		}
		c.mu.Unlock()
	}
	if len(paused) > 0 {
		m.cl.ResumeFetchPartitions(paused)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), m.cfg.RebalanceTimeout)
	defer cancel()
	err := m.h.Revoked(ctx, s.gen)
	s.gen.end()
	m.check(ctx, "revoked", err)
}

// commitVersions is the stable protocol versions with OffsetCommit held at
// v9.
func commitVersions() *kversion.Versions {
	v := kversion.Stable()
	v.SetMaxKeyVersion(kmsg.OffsetCommit.Int16(), 9)
	return v
}

// commit sends one OffsetCommit for g's member and generation, retrying
// through a moved or unavailable coordinator, or an unreachable broker, up
// to Config.DeliveryTimeout. An error that retrying cannot cure (the
// generation is over: ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
// REBALANCE_IN_PROGRESS) returns at once.
func (m *membership) commit(ctx context.Context, g *Generation, offsets map[topicPartition]int64) error {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = m.group
	req.Generation = g.ID
	req.MemberID = g.MemberID
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
	err := retry(ctx, m.cfg, m.log, func(ctx context.Context) error {
		resp, err := req.RequestWith(ctx, m.cl)
		if err != nil {
			return err
		}
		var errs []error
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					errs = append(errs, fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err))
				}
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("kafka: commit group %q generation %d: %w", m.group, g.ID, err)
	}
	return nil
}
