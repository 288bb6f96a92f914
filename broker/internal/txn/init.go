package txn

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// InitProducerID handles an InitProducerId request (v0–v5) that carries a transactional id;
// the broker answers idempotent producers (a null transactional id) itself, and this answers
// them INVALID_REQUEST. A new transactional id gets a new producer id at epoch 0. A known one
// gets its epoch bumped, which fences every older instance of the producer; if that instance
// left a transaction open, it is aborted first (at a bumped epoch, markers written). A producer
// whose epochs ran out gets a new producer id. From v3 the request may carry the producer's
// current id and epoch (KIP-360): a producer recovering from an error keeps its id, while one
// that was fenced meanwhile gets PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v4).
func (c *Coordinator) InitProducerID(ctx context.Context, req *kmsg.InitProducerIDRequest) *kmsg.InitProducerIDResponse {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	code, pid, epoch := c.initProducerID(ctx, req)
	if code == kerr.ProducerFenced.Code && req.Version < 4 {
		code = kerr.InvalidProducerEpoch.Code
	}
	resp.ErrorCode = code
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if code == 0 {
		resp.ProducerID, resp.ProducerEpoch = pid, epoch
	}
	return resp
}

// producerEpoch is a producer id and epoch a request claims.
type producerEpoch struct {
	pid   int64
	epoch int16
}

func (c *Coordinator) initProducerID(ctx context.Context, req *kmsg.InitProducerIDRequest) (int16, int64, int16) {
	if code := c.admit(); code != 0 {
		return code, -1, -1
	}
	defer c.exit()
	if req.TransactionalID == nil || *req.TransactionalID == "" {
		return kerr.InvalidRequest.Code, -1, -1
	}
	id := *req.TransactionalID
	timeout := time.Duration(req.TransactionTimeoutMillis) * time.Millisecond
	if req.TransactionTimeoutMillis <= 0 || timeout > c.cfg.MaxTransactionTimeout {
		return kerr.InvalidTransactionTimeout.Code, -1, -1
	}
	var expected *producerEpoch
	if req.Version >= 3 {
		switch {
		case req.ProducerID == -1 && req.ProducerEpoch == -1:
		case req.ProducerID < 0 || req.ProducerEpoch < 0:
			return kerr.InvalidRequest.Code, -1, -1
		default:
			expected = &producerEpoch{req.ProducerID, req.ProducerEpoch}
		}
	}

	// At most two rounds: an open transaction is aborted in the first, then the producer
	// is initialised in the second.
	for round := 0; ; round++ {
		t, err := c.lookupOrCreate(id, req.TransactionTimeoutMillis)
		if err != nil {
			return allocErrCode(err), -1, -1
		}
		if t.m.state == kmsg.TransactionStateOngoing && round == 0 {
			comp, code := c.fenceForInit(ctx, t, expected)
			t.mu.Unlock()
			if code != 0 {
				return code, -1, -1
			}
			if code := c.await(ctx, comp); code != 0 {
				return code, -1, -1
			}
			select {
			case <-comp.done:
			default:
				return kerr.ConcurrentTransactions.Code, -1, -1
			}
			if expected != nil && expected.epoch < comp.epoch {
				// The producer asked to recover its own epoch, which the abort just bumped.
				expected.epoch = comp.epoch
			}
			continue
		}
		code, pid, epoch := c.initLocked(ctx, t, req.TransactionTimeoutMillis, expected)
		t.mu.Unlock()
		return code, pid, epoch
	}
}

func allocErrCode(err error) int16 {
	if ke := (*kerr.Error)(nil); errors.As(err, &ke) {
		return ke.Code
	}
	return kerr.CoordinatorNotAvailable.Code
}

// validExpected reports whether a producer that claims to be expected may initialise t
// (Kafka's rules): t has no epoch yet, the producer id is t's, or it is the id t rotated away
// from and its epoch was the last one (a retry of the call that rotated it).
func validExpected(t *txn, expected *producerEpoch) bool {
	return expected == nil || t.m.epoch == -1 || expected.pid == t.m.pid ||
		(expected.pid == t.m.prevPid && exhausted(expected.epoch))
}

// fenceForInit aborts t's Ongoing transaction for InitProducerId. t must be locked.
func (c *Coordinator) fenceForInit(ctx context.Context, t *txn, expected *producerEpoch) (*completion, int16) {
	if !validExpected(t, expected) {
		return nil, kerr.ProducerFenced.Code
	}
	if expected != nil && expected.epoch != t.m.epoch {
		// Not the producer of the open transaction, nor its retry.
		return nil, kerr.ProducerFenced.Code
	}
	comp, err := c.fenceAbort(ctx, t)
	if err != nil {
		c.log.Warn("aborting open transaction for InitProducerId failed", slog.String("transactional_id", t.id), slog.Any("error", err))
		return nil, storeErrCode(err)
	}
	c.log.Info("aborting open transaction of a re-initialised producer", slog.String("transactional_id", t.id),
		slog.Int64("producer_id", t.m.pid), slog.Int("fenced_epoch", int(t.m.epoch)))
	return comp, 0
}

// await waits until comp's markers are durable. It returns 0 then, or the code to answer if
// the wait ended otherwise.
func (c *Coordinator) await(ctx context.Context, comp *completion) int16 {
	select {
	case <-comp.settled:
		if !comp.marked {
			return kerr.CoordinatorNotAvailable.Code
		}
		return 0
	case <-ctx.Done():
		// The client is gone; the completion goes on.
		return kerr.ConcurrentTransactions.Code
	case <-c.done:
		return kerr.CoordinatorNotAvailable.Code
	}
}

// initLocked is InitProducerId on t, which must be locked and not Ongoing.
func (c *Coordinator) initLocked(ctx context.Context, t *txn, timeoutMs int32, expected *producerEpoch) (int16, int64, int16) {
	fresh := t.m.epoch == -1
	fail := func(code int16) (int16, int64, int16) {
		if fresh {
			c.remove(t)
		}
		return code, -1, -1
	}
	if !validExpected(t, expected) {
		return fail(kerr.ProducerFenced.Code)
	}
	m := t.m
	switch m.state {
	case kmsg.TransactionStatePrepareCommit, kmsg.TransactionStatePrepareAbort, kmsg.TransactionStateOngoing:
		return fail(kerr.ConcurrentTransactions.Code)
	}
	next := m
	next.state = kmsg.TransactionStateEmpty
	next.parts = nil
	next.start = -1
	next.update = c.nowMs()
	next.timeoutMs = timeoutMs
	next.nextPid = -1
	lastEpoch := int16(-1)
	switch {
	case exhausted(m.epoch) && (expected == nil || expected.epoch == m.epoch):
		pid, err := c.allocate()
		if err != nil {
			return fail(allocErrCode(err))
		}
		next.prevPid, next.pid, next.epoch = m.pid, pid, 0
		if expected != nil {
			lastEpoch = m.epoch
		}
	case expected == nil:
		next.epoch = m.epoch + 1
	case m.epoch == -1 || expected.epoch == m.epoch:
		next.epoch = m.epoch + 1
		lastEpoch = m.epoch
	case expected.epoch == t.lastEpoch:
		// A retry of a call that already bumped the epoch: answer the same epoch again.
		next.epoch = m.epoch
		lastEpoch = t.lastEpoch
	default:
		return fail(kerr.ProducerFenced.Code)
	}
	if err := c.write(ctx, t, next); err != nil {
		c.log.Warn("InitProducerId: write failed", slog.String("transactional_id", t.id), slog.Any("error", err))
		return fail(storeErrCode(err))
	}
	t.lastEpoch = lastEpoch
	if !fresh && expected == nil {
		c.count(func(s *Stats) { s.Fencings++ })
		c.log.Debug("producer fenced by a new instance", slog.String("transactional_id", t.id),
			slog.Int64("producer_id", next.pid), slog.Int("epoch", int(next.epoch)))
	}
	return 0, next.pid, next.epoch
}
