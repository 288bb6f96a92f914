package txn

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// completion finishes a transaction whose decision (PrepareCommit or PrepareAbort) is durable:
// it writes the markers, retrying until they are durable, then writes CompleteCommit or
// CompleteAbort, retrying likewise.
type completion struct {
	commit bool
	pid    int64
	epoch  int16
	parts  []TopicPartition

	// settled is closed once the markers are durable and the first attempt at the Complete
	// record has been made, or once the Coordinator closed; marked tells which.
	settled chan struct{}
	marked  bool
	// done is closed once the Complete record is durable, or once the Coordinator closed.
	done chan struct{}
}

// startCompletion starts completing t, which must be locked, in PrepareCommit or PrepareAbort,
// and registered as a call in progress by the caller (so that the Coordinator is not closed).
func (c *Coordinator) startCompletion(t *txn) *completion {
	comp := &completion{
		commit:  t.m.state == kmsg.TransactionStatePrepareCommit,
		pid:     t.m.pid,
		epoch:   t.m.epoch,
		parts:   slices.Clone(t.m.parts),
		settled: make(chan struct{}),
		done:    make(chan struct{}),
	}
	t.comp = comp
	c.inflight.Add(1)
	go c.runCompletion(t, comp)
	return comp
}

func (c *Coordinator) runCompletion(t *txn, comp *completion) {
	defer c.exit()
	settle := sync.OnceFunc(func() { close(comp.settled) })
	// done closes before settled, so that a waiter woken by settled sees a success as done.
	defer settle()
	defer close(comp.done)

	for n := 0; ; n++ {
		err := c.writeMarkers(comp)
		if err == nil {
			break
		}
		c.log.Warn("writing transaction markers failed; retrying", slog.String("transactional_id", t.id),
			slog.Int64("producer_id", comp.pid), slog.Int("epoch", int(comp.epoch)),
			slog.Bool("commit", comp.commit), slog.Any("error", err))
		if !c.sleep(retryBackoff(n)) {
			return
		}
	}
	comp.marked = true
	for n := 0; ; n++ {
		t.mu.Lock()
		err := c.write(c.storeCtx, t, completed(t.m, c.nowMs()))
		if err == nil {
			t.comp = nil
			t.mu.Unlock()
			c.count(func(s *Stats) {
				if comp.commit {
					s.Commits++
				} else {
					s.Aborts++
				}
			})
			return
		}
		t.mu.Unlock()
		settle()
		c.log.Warn("writing transaction completion failed; retrying", slog.String("transactional_id", t.id), slog.Any("error", err))
		if !c.sleep(retryBackoff(n)) {
			return
		}
	}
}

func (c *Coordinator) writeMarkers(comp *completion) error {
	if c.cfg.Markers == nil || len(comp.parts) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(c.storeCtx)
	defer cancel()
	stop := context.AfterFunc(c.storeCtx, cancel)
	defer stop()
	return c.cfg.Markers.WriteMarkers(ctx, comp.pid, comp.epoch, comp.commit, comp.parts)
}

// completed is the state after m's markers are durable: the transaction is over, and under
// KIP-890 a producer whose epochs ran out moves to its next producer id.
func completed(m meta, now int64) meta {
	next := m
	next.state = kmsg.TransactionStateCompleteAbort
	if m.state == kmsg.TransactionStatePrepareCommit {
		next.state = kmsg.TransactionStateCompleteCommit
	}
	next.parts = nil
	next.update = now
	if m.nextPid >= 0 {
		next.prevPid = m.pid
		next.pid = m.nextPid
		next.epoch = 0
	}
	next.nextPid = -1
	return next
}

// fenceAbort aborts t's Ongoing transaction on the coordinator's own initiative (timeout,
// recovery, a new producer instance): it bumps the epoch, so the producer is fenced and its
// late writes are rejected by the partitions, and writes PrepareAbort at that epoch. t must be
// locked and the caller registered as a call in progress.
func (c *Coordinator) fenceAbort(ctx context.Context, t *txn) (*completion, error) {
	next := t.m
	next.state = kmsg.TransactionStatePrepareAbort
	next.update = c.nowMs()
	// Like Kafka, a KIP-890 producer's epoch moves by two, so that its retried EndTxn (which
	// recognises epoch+1 as its own completed transaction) is fenced too.
	switch e := t.m.epoch; {
	case t.m.tv >= 2 && e <= math.MaxInt16-2:
		next.epoch = e + 2
	case e < math.MaxInt16:
		next.epoch = e + 1
	default:
		c.log.Warn("cannot fence producer at the last epoch", slog.String("transactional_id", t.id))
	}
	if err := c.write(ctx, t, next); err != nil {
		return nil, err
	}
	t.lastEpoch = -1
	return c.startCompletion(t), nil
}

// Recover finishes what Load found unfinished: every transaction in PrepareCommit or
// PrepareAbort gets its markers and its Complete record, and every Ongoing one is aborted with
// a bumped epoch (its producer is fenced: a restart is a coordinator failover, and the
// producer re-initialises). From then on requests are served and timeouts enforced. Recover
// returns once every such transaction is complete, or with ctx's error when ctx is done first
// (the completions go on). If writing an abort decision fails, Recover returns the error and
// requests stay refused; calling Recover again retries.
func (c *Coordinator) Recover(ctx context.Context) error {
	if !c.enter() {
		return ErrClosed
	}
	defer c.exit()
	c.mu.Lock()
	if !c.recovered {
		c.recovered = true
		c.armSweep()
	}
	c.mu.Unlock()

	var comps []*completion
	var errs []error
	for _, t := range c.snapshot() {
		t.mu.Lock()
		switch {
		case t.removed:
		case t.comp != nil:
			comps = append(comps, t.comp)
		case isPreparing(t.m.state):
			comps = append(comps, c.startCompletion(t))
		case t.m.state == kmsg.TransactionStateOngoing:
			comp, err := c.fenceAbort(ctx, t)
			if err != nil {
				errs = append(errs, err)
				break
			}
			c.log.Info("aborting transaction left open by the previous run", slog.String("transactional_id", t.id))
			comps = append(comps, comp)
		}
		t.mu.Unlock()
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.mu.Lock()
	c.ready = true
	c.mu.Unlock()
	for _, comp := range comps {
		select {
		case <-comp.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// armSweep schedules the next check of timeouts and expirations. c.mu must be held.
func (c *Coordinator) armSweep() {
	if c.closed {
		return
	}
	c.sweep = c.clock.AfterFunc(c.cfg.AbortTimedOutInterval, func() {
		if !c.enter() {
			return
		}
		defer c.exit()
		c.sweepOnce()
		c.mu.Lock()
		c.armSweep()
		c.mu.Unlock()
	})
}

// sweepOnce aborts every transaction past its timeout, fencing its producer, and forgets every
// transactional id idle past TransactionalIDExpiration.
func (c *Coordinator) sweepOnce() {
	now := c.nowMs()
	expiry := c.cfg.TransactionalIDExpiration.Milliseconds()
	for _, t := range c.snapshot() {
		t.mu.Lock()
		switch {
		case t.removed:
		case t.m.state == kmsg.TransactionStateOngoing && t.m.start+int64(t.m.timeoutMs) < now:
			if _, err := c.fenceAbort(c.storeCtx, t); err != nil {
				c.log.Warn("aborting timed-out transaction failed", slog.String("transactional_id", t.id), slog.Any("error", err))
				break
			}
			c.log.Info("aborted transaction past its timeout", slog.String("transactional_id", t.id),
				slog.Int64("producer_id", t.m.pid), slog.Int("fenced_epoch", int(t.m.epoch)))
			c.count(func(s *Stats) { s.Timeouts++ })
		case expiry > 0 && !isOpen(t.m.state) && t.m.update+expiry <= now:
			if err := c.writeTombstone(c.storeCtx, t); err != nil {
				c.log.Warn("expiring transactional id failed", slog.String("transactional_id", t.id), slog.Any("error", err))
				break
			}
			c.log.Info("expired idle transactional id", slog.String("transactional_id", t.id))
		}
		t.mu.Unlock()
	}
}
