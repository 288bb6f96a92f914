package group

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runnel-io/runnel/broker/internal/clock"
)

// Kafka's defaults for the settings below.
const (
	DefaultInitialRebalanceDelay = 3 * time.Second
	DefaultMinSessionTimeout     = 6 * time.Second
	DefaultMaxSessionTimeout     = 30 * time.Minute
	DefaultNewMemberJoinTimeout  = 5 * time.Minute
	DefaultMaxMetadataBytes      = 4096
)

// Config configures a Coordinator. The zero value is usable: offsets then live in memory only,
// and every other field takes Kafka's default.
type Config struct {
	// Store receives every change to committed offsets and group metadata before the request
	// that made it is answered. Nil keeps everything in memory only, which suits tests.
	Store Store

	// Logger receives the coordinator's logs: rebalances at Info, member comings and goings at
	// Debug, failed writes at Warn. Nil discards them.
	Logger *slog.Logger

	// Clock schedules timeouts. Nil is the wall clock.
	Clock Clock

	// InitialRebalanceDelay is how long the first rebalance of an empty group waits for more
	// members before it completes; each member that joins meanwhile extends the wait by the
	// same delay, up to the group's rebalance timeout (Kafka's
	// group.initial.rebalance.delay.ms). Zero means 3s; a negative value means no delay.
	InitialRebalanceDelay time.Duration

	// MinSessionTimeout and MaxSessionTimeout bound the session timeout a member may ask for;
	// a JoinGroup outside them gets INVALID_SESSION_TIMEOUT (Kafka's
	// group.min.session.timeout.ms and group.max.session.timeout.ms). Zero means 6s and 30m.
	MinSessionTimeout time.Duration
	MaxSessionTimeout time.Duration

	// NewMemberJoinTimeout is how long a member that has just joined may wait for the
	// rebalance to complete before it is dropped, so that a client that vanishes mid-join does
	// not hold the group hostage. Zero means 5m, Kafka's fixed value.
	NewMemberJoinTimeout time.Duration

	// MaxGroupSize is the most members a group admits; a new member beyond it gets
	// GROUP_MAX_SIZE_REACHED (Kafka's group.max.size). Zero means no limit.
	MaxGroupSize int

	// MaxMetadataBytes is the longest metadata string a commit may carry; a longer one gets
	// OFFSET_METADATA_TOO_LARGE (Kafka's offset.metadata.max.bytes). Zero means 4096.
	MaxMetadataBytes int

	// PartitionExists reports whether a topic partition exists. OffsetCommit and OffsetDelete
	// answer UNKNOWN_TOPIC_OR_PARTITION for partitions it rejects. Nil accepts every partition.
	PartitionExists func(topic string, partition int32) bool
}

// withDefaults returns cfg with its zero fields replaced by defaults.
func (cfg Config) withDefaults() Config {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.System{}
	}
	switch {
	case cfg.InitialRebalanceDelay == 0:
		cfg.InitialRebalanceDelay = DefaultInitialRebalanceDelay
	case cfg.InitialRebalanceDelay < 0:
		cfg.InitialRebalanceDelay = 0
	}
	if cfg.MinSessionTimeout == 0 {
		cfg.MinSessionTimeout = DefaultMinSessionTimeout
	}
	if cfg.MaxSessionTimeout == 0 {
		cfg.MaxSessionTimeout = DefaultMaxSessionTimeout
	}
	if cfg.NewMemberJoinTimeout == 0 {
		cfg.NewMemberJoinTimeout = DefaultNewMemberJoinTimeout
	}
	if cfg.MaxMetadataBytes == 0 {
		cfg.MaxMetadataBytes = DefaultMaxMetadataBytes
	}
	return cfg
}

// Client describes the connection a request came from, as the wire server knows it.
type Client struct {
	// ID is the client id of the request header; member ids are made from it.
	ID string
	// Host is the client's address, shown by DescribeGroups.
	Host string
}

// Coordinator coordinates every group of the broker. Its methods are safe for concurrent use;
// each group has its own lock, so groups never wait on each other. Methods that may wait for
// other members (JoinGroup, SyncGroup) return when the wait is over, when ctx is done (the
// client's connection closed), or when the Coordinator is closed.
//
// Requests may be decoded with kmsg's UnsafeReadFrom: the Coordinator copies whatever it keeps.
// Responses are built with the request's ResponseKind, so they have the request's version.
type Coordinator struct {
	cfg   Config
	log   *slog.Logger
	clock Clock

	mu     sync.RWMutex
	closed bool
	groups map[string]*group

	// inflight counts calls and timer callbacks in progress, so Close can wait for them.
	inflight sync.WaitGroup
	// done is closed by Close to wake every waiting JoinGroup and SyncGroup.
	done chan struct{}
	// storeCtx bounds writes to the Store. It is not a request's context: a write that has
	// begun should finish even if the client that caused it goes away, so that memory and log
	// agree. Close cancels it if in-flight calls outlive Close's context.
	storeCtx    context.Context
	cancelStore context.CancelFunc

	// seq numbers offset records in the order they reach the OffsetsTopic: every record that
	// Load or LoadTxn applies, and every one a request has written, takes the next number. The
	// records of one group are appended under its lock, so within a group (the only place
	// numbers are compared) the numbers follow the log, live as in replay.
	seq atomic.Int64

	// txnMu guards txnGroups, which names for each producer id the groups that may hold its
	// pending transactional offsets, so that CompleteTxn need not visit every group. An entry
	// may outlive the offsets it was made for; a visit then finds nothing.
	txnMu     sync.Mutex
	txnGroups map[int64]map[string]bool
}

// New returns a Coordinator with no groups. Call Load for every record of the OffsetsTopic
// before serving requests.
func New(cfg Config) *Coordinator {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Coordinator{
		cfg:         cfg,
		log:         cfg.Logger,
		clock:       cfg.Clock,
		groups:      make(map[string]*group),
		txnGroups:   make(map[int64]map[string]bool),
		done:        make(chan struct{}),
		storeCtx:    ctx,
		cancelStore: cancel,
	}
}

// Close stops the Coordinator: it answers every waiting JoinGroup and SyncGroup with
// NOT_COORDINATOR, from then on answers every request with COORDINATOR_NOT_AVAILABLE, and
// cancels every timer. It waits until calls in progress have returned, so that the broker may
// close the Store afterwards, or until ctx is done, in which case it aborts their writes and
// returns ctx's error. Close is idempotent.
func (c *Coordinator) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()

	idle := make(chan struct{})
	go func() {
		c.inflight.Wait()
		// No call holds a group lock any more and none can start: stop the timers.
		for _, g := range c.snapshotGroups() {
			g.mu.Lock()
			g.stopTimers()
			g.mu.Unlock()
		}
		close(idle)
	}()
	select {
	case <-idle:
		c.cancelStore()
		return nil
	case <-ctx.Done():
		// A write is taking too long: abort it. Its call then returns on its own, and the
		// timers are stopped after it.
		c.cancelStore()
		return fmt.Errorf("group: close: waiting for calls in progress: %w", ctx.Err())
	}
}

// enter registers a call in progress; it reports false once the Coordinator is closed.
func (c *Coordinator) enter() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return false
	}
	c.inflight.Add(1)
	return true
}

func (c *Coordinator) exit() { c.inflight.Done() }

// lockGroup returns the named group, locked, or nil if there is none. A group that is Dead
// (being deleted) counts as none.
func (c *Coordinator) lockGroup(name string) *group {
	c.mu.RLock()
	g := c.groups[name]
	c.mu.RUnlock()
	if g == nil {
		return nil
	}
	g.mu.Lock()
	if g.state == stateDead {
		g.mu.Unlock()
		return nil
	}
	return g
}

// lockOrCreateGroup returns the named group, locked, creating it Empty if there is none.
func (c *Coordinator) lockOrCreateGroup(name string) *group {
	for {
		if g := c.lockGroup(name); g != nil {
			return g
		}
		c.mu.Lock()
		g := c.groups[name]
		if g == nil {
			g = newGroup(strings.Clone(name), c.clock.Now())
			c.groups[g.name] = g
		}
		c.mu.Unlock()
		g.mu.Lock()
		if g.state != stateDead {
			return g
		}
		// Deleted between the map look-up and the lock: look again.
		g.mu.Unlock()
	}
}

// removeGroup forgets g, which must be locked and Dead.
func (c *Coordinator) removeGroup(g *group) {
	c.mu.Lock()
	if c.groups[g.name] == g {
		delete(c.groups, g.name)
	}
	c.mu.Unlock()
}

// forgetIfVacant drops g, which must be locked, if it holds nothing worth keeping: no members,
// no offsets, and no generation that must survive. Such a group is left behind by a JoinGroup
// that failed or whose MEMBER_ID_REQUIRED id was never used, and by replayed tombstones.
func (c *Coordinator) forgetIfVacant(g *group) {
	if g.state == stateEmpty && len(g.members) == 0 && len(g.pending) == 0 && !g.hasOffsets() &&
		g.generation == 0 && g.protocolType == "" {
		g.setState(stateDead, c.clock.Now())
		c.removeGroup(g)
	}
}

// snapshotGroups returns the groups sorted by name, unlocked.
func (c *Coordinator) snapshotGroups() []*group {
	c.mu.RLock()
	groups := make([]*group, 0, len(c.groups))
	for _, g := range c.groups {
		groups = append(groups, g)
	}
	c.mu.RUnlock()
	sort.Slice(groups, func(i, j int) bool { return groups[i].name < groups[j].name })
	return groups
}

// nextSeq returns the number of the next offset record (see Coordinator.seq).
func (c *Coordinator) nextSeq() int64 { return c.seq.Add(1) }

// append writes recs for g through the Store, if there is one. g must be locked. The write
// carries ctx's values but not its cancellation: once begun it finishes even if the client
// goes away, so that memory and log agree, unless Close gives up waiting for it.
func (c *Coordinator) append(ctx context.Context, g *group, recs []Record) error {
	if c.cfg.Store == nil || len(recs) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(c.storeCtx, cancel)
	defer stop()
	if err := c.cfg.Store.Append(ctx, g.name, recs); err != nil {
		return fmt.Errorf("group %q: append %d record(s) to %s: %w", g.name, len(recs), OffsetsTopic, err)
	}
	return nil
}
