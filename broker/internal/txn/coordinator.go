package txn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker/internal/clock"
)

// Kafka's defaults for the settings below.
const (
	DefaultMaxTransactionTimeout     = 15 * time.Minute   // transaction.max.timeout.ms
	DefaultAbortTimedOutInterval     = 10 * time.Second   // transaction.abort.timed.out.transaction.cleanup.interval.ms
	DefaultTransactionalIDExpiration = 7 * 24 * time.Hour // transactional.id.expiration.ms
)

// Config configures a Coordinator. The zero value is usable in tests: state then lives in
// memory only, markers go nowhere, and every other field takes its default.
type Config struct {
	// Store receives every state change before the request that made it is answered. Nil
	// keeps the state in memory only.
	Store Store

	// Markers writes commit and abort markers. Nil writes none.
	Markers Markers

	// AllocateProducerID returns a producer id never handed out before, for a new
	// transactional id and when a producer's epochs run out. An error is answered with its
	// code if it is a *kerr.Error, COORDINATOR_NOT_AVAILABLE otherwise. Nil allocates one
	// above every producer id this Coordinator has loaded or allocated, which suits tests but
	// not a broker that also hands out idempotent producer ids.
	AllocateProducerID func() (int64, error)

	// PartitionExists reports whether a topic partition exists; AddPartitionsToTxn answers
	// UNKNOWN_TOPIC_OR_PARTITION for the others. Nil accepts every partition.
	PartitionExists func(topic string, partition int32) bool

	// OffsetsPartition names the partition of __consumer_offsets that holds group's offsets:
	// AddOffsetsToTxn adds it to the transaction. Nil means partition 0.
	OffsetsPartition func(group string) TopicPartition

	// MaxTransactionTimeout bounds the transaction timeout a producer may ask for; beyond it
	// InitProducerId answers INVALID_TRANSACTION_TIMEOUT. Zero means 15m.
	MaxTransactionTimeout time.Duration

	// AbortTimedOutInterval is how often open transactions are checked against their
	// timeouts (and idle transactional ids against TransactionalIDExpiration). Zero means 10s.
	AbortTimedOutInterval time.Duration

	// TransactionalIDExpiration is how long a transactional id with no open transaction is
	// kept after its last use; then it is forgotten (a tombstone is written). Zero means
	// 7 days; negative means never.
	TransactionalIDExpiration time.Duration

	// Clock schedules timeouts and retries. Nil is the wall clock.
	Clock Clock

	// Logger receives the coordinator's logs: fencings and timeouts at Info, failed writes at
	// Warn. Nil discards them.
	Logger *slog.Logger
}

func (cfg Config) withDefaults() Config {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.System{}
	}
	if cfg.MaxTransactionTimeout <= 0 {
		cfg.MaxTransactionTimeout = DefaultMaxTransactionTimeout
	}
	if cfg.AbortTimedOutInterval <= 0 {
		cfg.AbortTimedOutInterval = DefaultAbortTimedOutInterval
	}
	if cfg.TransactionalIDExpiration == 0 {
		cfg.TransactionalIDExpiration = DefaultTransactionalIDExpiration
	}
	if cfg.OffsetsPartition == nil {
		cfg.OffsetsPartition = func(string) TopicPartition { return TopicPartition{Topic: "__consumer_offsets"} }
	}
	return cfg
}

// Stats counts what the Coordinator did since it was created, for the broker's metrics.
type Stats struct {
	Commits  uint64 // transactions committed (markers durable, CompleteCommit written)
	Aborts   uint64 // transactions aborted, for whatever reason
	Timeouts uint64 // transactions aborted because they outlived their timeout
	Fencings uint64 // producers fenced by a new instance's InitProducerId
	Open     int    // transactional ids with a transaction Ongoing or being completed
}

// Coordinator coordinates every transactional id of the broker. Its methods are safe for
// concurrent use; each transactional id has its own lock, so ids never wait on each other.
//
// Requests may be decoded with kmsg's UnsafeReadFrom: the Coordinator copies whatever it keeps.
// Responses are built with the request's ResponseKind, so they have the request's version.
// Until Recover has run, requests are answered with COORDINATOR_LOAD_IN_PROGRESS.
type Coordinator struct {
	cfg   Config
	log   *slog.Logger
	clock Clock

	mu        sync.RWMutex
	closed    bool
	recovered bool // Recover ran: Load is over and the timeout sweep is armed
	ready     bool // Recover succeeded: requests are served
	txns      map[string]*txn
	maxPid    int64 // highest producer id seen, for the default allocator
	sweep     Timer
	stats     Stats

	inflight    sync.WaitGroup
	done        chan struct{} // closed by Close
	storeCtx    context.Context
	cancelStore context.CancelFunc
}

// txn is one transactional id.
type txn struct {
	mu sync.Mutex
	id string
	m  meta
	// lastEpoch is the epoch before the last bump by InitProducerId with the producer's own
	// epoch (KIP-360) or by EndTxn v5, so a retry of that call can be recognised. Volatile.
	lastEpoch int16
	// comp is the completion in progress while the state is PrepareCommit or PrepareAbort.
	comp *completion
	// removed is set when the id is dropped from the map; a caller that locked it must look
	// it up again.
	removed bool
}

// New returns a Coordinator with no transactional ids. Call Load for every record of the
// StateTopic and then Recover before serving requests.
func New(cfg Config) *Coordinator {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Coordinator{
		cfg:         cfg,
		log:         cfg.Logger,
		clock:       cfg.Clock,
		txns:        make(map[string]*txn),
		maxPid:      -1,
		done:        make(chan struct{}),
		storeCtx:    ctx,
		cancelStore: cancel,
	}
}

// Close stops the Coordinator: from then on every request is answered with
// COORDINATOR_NOT_AVAILABLE, requests waiting for markers are answered so, marker retries stop
// (a transaction left in PrepareCommit or PrepareAbort is finished by the next Recover), and
// timers are cancelled. It waits until calls in progress have returned, or until ctx is done,
// in which case it aborts their writes and returns ctx's error. Close is idempotent.
func (c *Coordinator) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	if c.sweep != nil {
		c.sweep.Stop()
	}
	c.mu.Unlock()

	idle := make(chan struct{})
	go func() {
		c.inflight.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		c.cancelStore()
		return nil
	case <-ctx.Done():
		c.cancelStore()
		return fmt.Errorf("txn: close: waiting for calls in progress: %w", ctx.Err())
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

// admit is enter for requests: it returns 0 and registers the call, or the error code to
// answer with (and registers nothing).
func (c *Coordinator) admit() int16 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	switch {
	case c.closed:
		return kerr.CoordinatorNotAvailable.Code
	case !c.ready:
		return kerr.CoordinatorLoadInProgress.Code
	}
	c.inflight.Add(1)
	return 0
}

// Stats returns the counters and the number of open transactions.
func (c *Coordinator) Stats() Stats {
	c.mu.RLock()
	s := c.stats
	c.mu.RUnlock()
	for _, t := range c.snapshot() {
		t.mu.Lock()
		if !t.removed && isOpen(t.m.state) {
			s.Open++
		}
		t.mu.Unlock()
	}
	return s
}

func (c *Coordinator) count(f func(*Stats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

func isOpen(s kmsg.TransactionState) bool {
	return s == kmsg.TransactionStateOngoing || isPreparing(s)
}

func isPreparing(s kmsg.TransactionState) bool {
	return s == kmsg.TransactionStatePrepareCommit || s == kmsg.TransactionStatePrepareAbort
}

// lookup returns the transactional id's state, locked, or nil if there is none.
func (c *Coordinator) lookup(id string) *txn {
	for {
		c.mu.RLock()
		t := c.txns[id]
		c.mu.RUnlock()
		if t == nil {
			return nil
		}
		t.mu.Lock()
		if !t.removed {
			return t
		}
		t.mu.Unlock()
	}
}

// lookupOrCreate returns the transactional id's state, locked, creating it (Empty, with a new
// producer id and no epoch yet) if there is none. The new state is not durable: the caller
// writes it or calls remove.
func (c *Coordinator) lookupOrCreate(id string, timeoutMs int32) (*txn, error) {
	for {
		if t := c.lookup(id); t != nil {
			return t, nil
		}
		pid, err := c.allocate()
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		t := c.txns[id]
		if t == nil {
			now := c.nowMs()
			t = &txn{id: strings.Clone(id), lastEpoch: -1, m: meta{
				pid: pid, prevPid: -1, nextPid: -1, epoch: -1, timeoutMs: timeoutMs,
				state: kmsg.TransactionStateEmpty, start: -1, update: now,
			}}
			c.txns[t.id] = t
		}
		c.mu.Unlock()
		t.mu.Lock()
		if !t.removed {
			return t, nil
		}
		t.mu.Unlock()
	}
}

// remove drops t, which must be locked.
func (c *Coordinator) remove(t *txn) {
	t.removed = true
	c.mu.Lock()
	if c.txns[t.id] == t {
		delete(c.txns, t.id)
	}
	c.mu.Unlock()
}

// snapshot returns every transactional id's state, unlocked, sorted by id.
func (c *Coordinator) snapshot() []*txn {
	c.mu.RLock()
	ts := make([]*txn, 0, len(c.txns))
	for _, t := range c.txns {
		ts = append(ts, t)
	}
	c.mu.RUnlock()
	slices.SortFunc(ts, func(a, b *txn) int { return strings.Compare(a.id, b.id) })
	return ts
}

func (c *Coordinator) seenPid(pid int64) {
	if pid > c.maxPid {
		c.maxPid = pid
	}
}

// allocate returns a new producer id.
func (c *Coordinator) allocate() (int64, error) {
	if c.cfg.AllocateProducerID != nil {
		pid, err := c.cfg.AllocateProducerID()
		if err != nil {
			return -1, fmt.Errorf("txn: allocate producer id: %w", err)
		}
		c.mu.Lock()
		c.seenPid(pid)
		c.mu.Unlock()
		return pid, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.maxPid == math.MaxInt64 {
		return -1, errors.New("txn: producer ids exhausted")
	}
	c.maxPid++
	return c.maxPid, nil
}

func (c *Coordinator) nowMs() int64 { return c.clock.Now().UnixMilli() }

// write makes next the durable state of t, which must be locked: it appends the record and
// only then changes t. The write carries ctx's values but not its cancellation: once begun it
// finishes even if the client goes away, so that memory and log agree, unless Close gives up
// waiting for it.
func (c *Coordinator) write(ctx context.Context, t *txn, next meta) error {
	if c.cfg.Store != nil {
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		stop := context.AfterFunc(c.storeCtx, cancel)
		defer stop()
		if err := c.cfg.Store.Append(ctx, txnKey(t.id), txnValue(next)); err != nil {
			return fmt.Errorf("txn %q: append %s to %s: %w", t.id, next.state, StateTopic, err)
		}
	}
	t.m = next
	return nil
}

// writeTombstone forgets t, which must be locked, durably.
func (c *Coordinator) writeTombstone(ctx context.Context, t *txn) error {
	if c.cfg.Store != nil {
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		stop := context.AfterFunc(c.storeCtx, cancel)
		defer stop()
		if err := c.cfg.Store.Append(ctx, txnKey(t.id), nil); err != nil {
			return fmt.Errorf("txn %q: append tombstone to %s: %w", t.id, StateTopic, err)
		}
	}
	c.remove(t)
	return nil
}

// exhausted reports whether a producer may not be given epoch+1: Kafka keeps the last epoch
// (32767) for the coordinator, so that it can always fence.
func exhausted(epoch int16) bool { return epoch >= math.MaxInt16-1 }

// sleep waits d on the Clock; it reports false if the Coordinator closed first.
func (c *Coordinator) sleep(d time.Duration) bool {
	ch := make(chan struct{})
	tm := c.clock.AfterFunc(d, func() { close(ch) })
	select {
	case <-ch:
		return true
	case <-c.done:
		tm.Stop()
		return false
	}
}

// retryBackoff is the wait before retry n (from 0) of a marker or Complete write.
func retryBackoff(n int) time.Duration {
	d := 50 * time.Millisecond << min(n, 6)
	return min(d, 2*time.Second)
}
