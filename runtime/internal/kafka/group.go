package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
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
//     and every Claim's Records channel is closed; Consume finishes the
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
// ended, which is taken as the method obeying ctx. A Consume that returns
// nil before its Records channel is closed ends the generation (sarama
// then rejoins the group), so Consume returns early only with an error.
type GroupHandler interface {
	// Assigned starts generation g, before any of its records arrive.
	Assigned(ctx context.Context, g *Generation) error
	// Consume processes the records of one claim until its Records
	// channel closes.
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
type Claim struct {
	// Topic and Partition name the claimed topic-partition.
	Topic     string
	Partition int32

	gen     *Generation
	msgs    <-chan *sarama.ConsumerMessage
	hw      func() int64
	initial int64
}

// Poll waits for the claim's next records and returns them in offset
// order, appended to buf[:0]: at least one, and as many more as are
// already fetched, up to cap(buf) (at least one). ok is false once the
// claim has ended with the generation; it may return records with ok
// true, then none with ok false. If wake is closed first, Poll returns no
// records and ok true.
//
// Records are taken in batches, straight from the client's buffer, so
// that the caller pays for one wake-up (and one lock, say) per batch
// rather than per record.
func (c *Claim) Poll(wake <-chan struct{}, buf []*Record) (recs []*Record, ok bool) {
	recs = buf[:0]
	select {
	case m, ok := <-c.msgs:
		if !ok {
			return recs, false
		}
		recs = append(recs, fromConsumerMessage(m))
	case <-wake:
		return recs, true
	}
	for len(recs) < cap(recs) {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				return recs, true // the next Poll reports the end
			}
			recs = append(recs, fromConsumerMessage(m))
		default:
			return recs, true
		}
	}
	return recs, true
}

// HighWatermark returns the partition's high watermark as of the last
// fetch: how far the claim has to read to catch up.
func (c *Claim) HighWatermark() int64 { return c.hw() }

// InitialOffset returns the offset the claim reads from: the group's
// committed offset, or -1 if it has none and the claim starts at the
// partition's log start offset.
func (c *Claim) InitialOffset() int64 { return max(c.initial, -1) }

// MarkOffset marks next, the offset after the last record done, for commit:
// see Generation.MarkOffset.
func (c *Claim) MarkOffset(next int64) { c.gen.MarkOffset(c.Topic, c.Partition, next) }

// Commit commits every offset marked in the generation: see
// Generation.Commit.
func (c *Claim) Commit(ctx context.Context) error { return c.gen.Commit(ctx) }

// Generation returns the generation the claim belongs to.
func (c *Claim) Generation() *Generation { return c.gen }

// Join implements Group. Each Join has a sarama client and consumer group
// of its own (sarama cannot share them between groups); the member leaves
// the group when Join returns, unless Config.InstanceID makes it static.
func (c *Client) Join(ctx context.Context, group string, topics []string, h GroupHandler) error {
	if len(topics) == 0 {
		return fmt.Errorf("kafka: join group %q: no topics", group)
	}
	log := c.log.With("group", group)
	strategy := newCopartitionStrategy(log)
	var client sarama.Client
	err := c.retry(ctx, func() (err error) {
		client, err = newSaramaClient(ctx, c.cfg.Brokers, c.cfg.saramaGroup(strategy))
		if err != nil {
			return fmt.Errorf("kafka: join group %q: connect: %w", group, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer client.Close()
	cg, err := sarama.NewConsumerGroupFromClient(group, client)
	if err != nil {
		return fmt.Errorf("kafka: join group %q: %w", group, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := &membership{
		client: client,
		group:  group,
		topics: topics,
		h:      h,
		cfg:    c.cfg,
		log:    log,
		stop:   cancel,
	}
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		for err := range cg.Errors() {
			log.Warn("consumer group", "err", err)
		}
	}()
	defer func() {
		// Close leaves the group (for a dynamic member) and closes Errors.
		if err := cg.Close(); err != nil {
			log.Warn("leaving group", "err", err)
		}
		<-logged
	}()

	// A broker outage fails joins, and ends a generation whose heartbeats
	// fail; Join rejoins through it. Only joins failing, with no
	// generation in between, for Config.DeliveryTimeout end it.
	backoff := 100 * time.Millisecond
	var failingSince time.Time
	gens := 0
	for {
		began := time.Now()
		err := cg.Consume(ctx, topics, m)
		if ferr := m.failure(); ferr != nil {
			return ferr
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if n := m.generations(); n != gens {
			// A generation ran during this Consume: failures, if any,
			// began after it.
			gens, failingSince, began = n, time.Time{}, time.Now()
		}
		if err == nil {
			// A generation ended with a rebalance: join the next.
			backoff = 100 * time.Millisecond
			continue
		}
		if permanent(err) {
			return fmt.Errorf("kafka: group %q: %w", group, err)
		}
		if failingSince.IsZero() {
			failingSince = began
		}
		if failing := time.Since(failingSince); failing >= c.cfg.DeliveryTimeout {
			return fmt.Errorf("kafka: group %q: %w (%w: failing for %v)", group, err, ErrDeliveryTimeout, failing.Round(time.Millisecond))
		}
		log.Warn("joining group; retrying", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// permanent reports whether a failed join cannot succeed by retrying.
func permanent(err error) bool {
	var cfgErr sarama.ConfigurationError
	return errors.As(err, &cfgErr) ||
		errors.Is(err, ErrNotCopartitioned) ||
		errors.Is(err, sarama.ErrClosedConsumerGroup) ||
		errors.Is(err, sarama.ErrInconsistentGroupProtocol) ||
		errors.Is(err, sarama.ErrGroupAuthorizationFailed) ||
		errors.Is(err, sarama.ErrInvalidSessionTimeout) ||
		errors.Is(err, sarama.ErrFencedInstancedId)
}

// membership adapts a GroupHandler to sarama's ConsumerGroupHandler, for one
// Join.
type membership struct {
	client sarama.Client
	group  string
	topics []string
	h      GroupHandler
	cfg    Config
	log    *slog.Logger
	stop   context.CancelFunc

	// gen and assigned are set by Setup and read by ConsumeClaim and
	// Cleanup, which sarama calls after Setup returns.
	gen      *Generation
	assigned bool

	mu   sync.Mutex
	err  error // the first handler error
	gens int   // generations set up
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

// Setup implements sarama.ConsumerGroupHandler: it starts a generation.
func (m *membership) Setup(s sarama.ConsumerGroupSession) error {
	g := &Generation{
		ID:         s.GenerationID(),
		MemberID:   s.MemberID(),
		Topics:     m.topics,
		Partitions: assignedPartitions(s.Claims()),
		commit:     m.commit,
		marked:     make(map[topicPartition]int64),
		committed:  make(map[topicPartition]int64),
	}
	if g.Partitions == nil {
		g.Partitions = []int32{}
	}
	m.gen, m.assigned = g, true
	m.mu.Lock()
	m.gens++
	m.mu.Unlock()
	m.log.Info("group generation", "generation", g.ID, "member", g.MemberID, "partitions", g.Partitions)
	return m.check(s.Context(), "assigned", m.h.Assigned(s.Context(), g))
}

// ConsumeClaim implements sarama.ConsumerGroupHandler: it hands one
// topic-partition's records to Consume, converted on a goroutine of their
// own.
func (m *membership) ConsumeClaim(s sarama.ConsumerGroupSession, sc sarama.ConsumerGroupClaim) error {
	c := &Claim{
		Topic:     sc.Topic(),
		Partition: sc.Partition(),
		gen:       m.gen,
		msgs:      sc.Messages(),
		hw:        sc.HighWaterMarkOffset,
		// Without a committed offset, sarama gives its OffsetOldest (-2).
		initial: sc.InitialOffset(),
	}
	err := m.h.Consume(s.Context(), c)
	return m.check(s.Context(), fmt.Sprintf("consume %s/%d", c.Topic, c.Partition), err)
}

// Cleanup implements sarama.ConsumerGroupHandler: it ends a generation.
func (m *membership) Cleanup(s sarama.ConsumerGroupSession) error {
	if !m.assigned {
		return nil
	}
	m.assigned = false
	// The session's context has ended; Revoked gets the time the
	// coordinator gives a member to rejoin.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.Context()), m.cfg.RebalanceTimeout)
	defer cancel()
	err := m.h.Revoked(ctx, m.gen)
	m.gen.end()
	return m.check(ctx, "revoked", err)
}

// commit sends one OffsetCommit for g's member and generation, retrying
// through a moved or unavailable coordinator, or an unreachable broker, up
// to Config.DeliveryTimeout. An error that retrying cannot cure (the
// generation is over: ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
// REBALANCE_IN_PROGRESS) returns at once.
//
// sarama's own commit (session.Commit) reports failures only on the
// group's error channel, and not to its caller; the runtime needs to know.
func (m *membership) commit(ctx context.Context, g *Generation, offsets map[topicPartition]int64) error {
	req := &sarama.OffsetCommitRequest{
		// v8 is what sarama sends at kafkaVersion (2.8).
		Version:                 8,
		ConsumerGroup:           m.group,
		ConsumerGroupGeneration: g.ID,
		ConsumerID:              g.MemberID,
	}
	if m.cfg.InstanceID != "" {
		req.GroupInstanceId = &m.cfg.InstanceID
	}
	for tp, off := range offsets {
		req.AddBlockWithLeaderEpoch(tp.topic, tp.partition, off, -1, 0, "")
	}
	err := retry(ctx, m.cfg, m.log, func() error {
		err := m.commitOnce(ctx, req)
		if errors.Is(err, errRetryCommit) {
			if rerr := m.client.RefreshCoordinator(m.group); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("kafka: commit group %q generation %d: %w", m.group, g.ID, err)
	}
	return nil
}

// errRetryCommit marks a commit error that a new coordinator may not have.
var errRetryCommit = errors.New("coordinator moved or unavailable")

func (m *membership) commitOnce(ctx context.Context, req *sarama.OffsetCommitRequest) error {
	resp, err := call(ctx, func() (*sarama.OffsetCommitResponse, error) {
		coord, err := m.client.Coordinator(m.group)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errRetryCommit, err)
		}
		resp, err := coord.CommitOffset(req)
		if err != nil {
			// A broken connection: sarama reopens it on the next request.
			_ = coord.Close()
			return nil, fmt.Errorf("%w: %w", errRetryCommit, err)
		}
		return resp, nil
	})
	if err != nil {
		return err
	}
	var errs []error
	moved := false
	for topic, parts := range resp.Errors {
		for p, kerr := range parts {
			switch {
			case errors.Is(kerr, sarama.ErrNoError):
			case errors.Is(kerr, sarama.ErrNotCoordinatorForConsumer), errors.Is(kerr, sarama.ErrConsumerCoordinatorNotAvailable):
				moved = true
			default:
				errs = append(errs, fmt.Errorf("%s/%d: %w", topic, p, kerr))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if moved {
		return errRetryCommit
	}
	return nil
}
