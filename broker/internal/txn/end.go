package txn

import (
	"context"
	"log/slog"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// EndTxn handles an EndTxn request (v0–v5): it commits or aborts the producer's ongoing
// transaction. The decision (PrepareCommit or PrepareAbort) is written first, then the markers
// into every partition of the transaction, and the answer goes out once the markers are
// durable, so a committed transaction is visible to read_committed consumers at once; the
// CompleteCommit or CompleteAbort record follows.
//
// Before v5 the epoch is unchanged; a retry of a completed EndTxn with the same decision
// answers 0, and EndTxn without a transaction answers INVALID_TXN_STATE. From v5 (KIP-890
// part 2) every transaction ends with an epoch bump, whose result the response carries, and
// the markers carry the bumped epoch, so late writes of the ended transaction are rejected; a
// retry is recognised by its epoch being one less than the current one, an abort without a
// transaction is allowed (it bumps the epoch), and a producer whose epochs ran out moves to a
// new producer id. A fenced producer gets PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v2).
func (c *Coordinator) EndTxn(ctx context.Context, req *kmsg.EndTxnRequest) *kmsg.EndTxnResponse {
	resp := req.ResponseKind().(*kmsg.EndTxnResponse)
	code, pid, epoch := c.endTxn(ctx, req)
	if code == kerr.ProducerFenced.Code && req.Version < 2 {
		code = kerr.InvalidProducerEpoch.Code
	}
	resp.ErrorCode = code
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if code == 0 && req.Version >= 5 {
		resp.ProducerID, resp.ProducerEpoch = pid, epoch
	}
	return resp
}

func (c *Coordinator) endTxn(ctx context.Context, req *kmsg.EndTxnRequest) (int16, int64, int16) {
	if code := c.admit(); code != 0 {
		return code, -1, -1
	}
	defer c.exit()
	if req.TransactionalID == "" {
		return kerr.InvalidRequest.Code, -1, -1
	}
	t := c.lookup(req.TransactionalID)
	if t == nil {
		return kerr.InvalidProducerIDMapping.Code, -1, -1
	}
	var comp *completion
	var code int16
	if req.Version >= 5 {
		comp, code = c.endTxnV2(ctx, t, req.ProducerID, req.ProducerEpoch, req.Commit)
	} else {
		comp, code = c.endTxnV1(ctx, t, req.ProducerID, req.ProducerEpoch, req.Commit)
	}
	// The producer id and epoch to use next: after a completion they are those of the
	// Complete state, computed now from the Prepare state.
	after := t.m
	if comp != nil {
		after = completed(t.m, 0)
	}
	t.mu.Unlock()
	if code != 0 {
		return code, -1, -1
	}
	if comp != nil {
		if code := c.await(ctx, comp); code != 0 {
			return code, -1, -1
		}
	}
	return 0, after.pid, after.epoch
}

// endTxnV1 is EndTxn before KIP-890 part 2 (Kafka's transaction version 1). t must be locked.
func (c *Coordinator) endTxnV1(ctx context.Context, t *txn, pid int64, epoch int16, commit bool) (*completion, int16) {
	if code := c.checkProducer(t, pid, epoch); code != 0 {
		return nil, code
	}
	switch t.m.state {
	case kmsg.TransactionStateOngoing:
		return c.prepare(ctx, t, commit, false, false)
	case kmsg.TransactionStateCompleteCommit:
		return nil, retryCode(commit)
	case kmsg.TransactionStateCompleteAbort:
		return nil, retryCode(!commit)
	case kmsg.TransactionStatePrepareCommit:
		return nil, concurrentCode(commit)
	case kmsg.TransactionStatePrepareAbort:
		return nil, concurrentCode(!commit)
	}
	return nil, kerr.InvalidTxnState.Code
}

// retryCode answers a repeated EndTxn: 0 if it asks for what was done, INVALID_TXN_STATE if not.
func retryCode(same bool) int16 {
	if same {
		return 0
	}
	return kerr.InvalidTxnState.Code
}

// concurrentCode answers an EndTxn during completion: CONCURRENT_TRANSACTIONS (retry later)
// if it asks for what is being done, INVALID_TXN_STATE if not.
func concurrentCode(same bool) int16 {
	if same {
		return kerr.ConcurrentTransactions.Code
	}
	return kerr.InvalidTxnState.Code
}

// endTxnV2 is EndTxn under KIP-890 part 2 (Kafka's transaction version 2), where every EndTxn
// bumps the epoch, so a request one epoch behind is a retry. t must be locked.
func (c *Coordinator) endTxnV2(ctx context.Context, t *txn, pid int64, epoch int16, commit bool) (*completion, int16) {
	m := t.m
	retryOnBump := int(m.epoch) == int(epoch)+1
	retryOnRotation := m.prevPid == pid && epoch == math.MaxInt16-1 && m.epoch == 0
	if m.pid != pid && !retryOnRotation {
		return nil, kerr.InvalidProducerIDMapping.Code
	}
	var valid bool
	switch m.state {
	case kmsg.TransactionStateOngoing, kmsg.TransactionStateEmpty:
		valid = epoch == m.epoch
	case kmsg.TransactionStatePrepareCommit, kmsg.TransactionStatePrepareAbort:
		valid = retryOnBump
	default:
		valid = retryOnBump || retryOnRotation || epoch == m.epoch
	}
	if !valid {
		return nil, kerr.ProducerFenced.Code
	}
	retry := retryOnBump || retryOnRotation
	switch m.state {
	case kmsg.TransactionStateOngoing:
		return c.prepare(ctx, t, commit, true, false)
	case kmsg.TransactionStateCompleteCommit:
		switch {
		case commit:
			return nil, retryCode(retry)
		case retry:
			return nil, kerr.InvalidTxnState.Code
		}
		return c.prepare(ctx, t, false, true, true)
	case kmsg.TransactionStateCompleteAbort:
		switch {
		case commit:
			return nil, kerr.InvalidTxnState.Code
		case retry:
			return nil, 0
		}
		return c.prepare(ctx, t, false, true, true)
	case kmsg.TransactionStatePrepareCommit:
		return nil, concurrentCode(commit)
	case kmsg.TransactionStatePrepareAbort:
		return nil, concurrentCode(!commit)
	case kmsg.TransactionStateEmpty:
		if !commit {
			return c.prepare(ctx, t, false, true, true)
		}
	}
	return nil, kerr.InvalidTxnState.Code
}

// prepare writes the decision to commit or abort t's transaction and starts its completion.
// Under KIP-890 (tv2) the epoch is bumped, and a producer whose epochs ran out gets its next
// producer id, taken when the transaction completes. empty is an abort with no transaction
// (allowed under KIP-890). t must be locked.
func (c *Coordinator) prepare(ctx context.Context, t *txn, commit, tv2, empty bool) (*completion, int16) {
	m := t.m
	next := m
	next.state = kmsg.TransactionStatePrepareAbort
	if commit {
		next.state = kmsg.TransactionStatePrepareCommit
	}
	now := c.nowMs()
	next.update = now
	if empty {
		next.start = now
		next.parts = nil
	}
	next.tv = 0
	lastEpoch := t.lastEpoch
	if tv2 {
		next.tv = 2
		if exhausted(m.epoch) {
			pid, err := c.allocate()
			if err != nil {
				return nil, allocErrCode(err)
			}
			next.nextPid = pid
		}
		if m.epoch < math.MaxInt16 {
			next.epoch = m.epoch + 1
		}
		lastEpoch = m.epoch
	}
	if err := c.write(ctx, t, next); err != nil {
		c.log.Warn("EndTxn: write failed", slog.String("transactional_id", t.id), slog.Any("error", err))
		return nil, storeErrCode(err)
	}
	t.lastEpoch = lastEpoch
	return c.startCompletion(t), 0
}
