package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/runnel-io/runnel/broker/internal/auth"
	"github.com/runnel-io/runnel/broker/internal/txn"
	"github.com/runnel-io/runnel/broker/storage"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// durableWait is an acks=-1 partition append waiting to become durable.
type durableWait struct {
	p    *storage.Partition
	last int64 // offset of the batch's last record
	resp *kmsg.ProduceResponseTopicPartition
	// now syncs the partition at once instead of waiting for the group
	// commit: a transactional batch, whose transaction cannot end before
	// the batch is durable, so that its producer waits on every such sync
	// in series.
	now bool
}

// handleProduce appends each partition's batch on the reader goroutine, so
// that a connection's appends happen in the order it sent them. With
// acks=-1 the response then waits, off the reader goroutine, until every
// appended batch is durable or the request's timeout passes. With acks=0
// nothing is answered; as in Kafka, an error closes the connection instead,
// which is the only way such a producer can learn of it.
func (b *Broker) handleProduce(ctx context.Context, r kmsg.Request) answer {
	req := r.(*kmsg.ProduceRequest)
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	ackErr := int16(0)
	switch req.Acks {
	case 0, 1, -1:
	default:
		ackErr = kerr.InvalidRequiredAcks.Code
	}
	// Authorization, before anything is appended: the transactional id
	// fails the whole request; a topic, its partitions.
	z, authorizing := b.authzFor(ctx, kmsg.Produce)
	if authorizing && ackErr == 0 && req.TransactionID != nil && !z.may(auth.FromTransactionalID, auth.Transactional, *req.TransactionID) {
		ackErr = z.code(auth.FromTransactionalID, auth.Transactional)
	}

	var waits []durableWait
	var failed error
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		topicErr := ackErr
		if authorizing && topicErr == 0 && !z.may(auth.FromTopics, auth.Always, rt.Topic) {
			topicErr = z.code(auth.FromTopics, auth.Always)
			failed = kerr.ErrorForCode(topicErr)
		}
		st.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.BaseOffset, sp.LogAppendTime, sp.LogStartOffset = -1, -1, -1
			if topicErr != 0 {
				sp.ErrorCode = topicErr
				continue
			}
			p, res, txnl, err := b.appendBatch(ctx, req, rt.Topic, rp.Partition, rp.Records)
			if err != nil {
				sp.ErrorCode = errorCode(err)
				sp.ErrorMessage = errMessage(err)
				if sp.ErrorCode == kerr.UnknownServerError.Code {
					b.logger.Error("produce failed", "topic", rt.Topic, "partition", rp.Partition, "err", err)
				}
				failed = err
				continue
			}
			// A retried batch of an idempotent producer (res.Duplicate) is
			// answered like the first append, with its offsets; with
			// acks=-1 it too waits until those are durable.
			sp.BaseOffset = res.BaseOffset
			sp.LogAppendTime = res.LogAppendTime
			sp.LogStartOffset = res.LogStartOffset
			if req.Acks == -1 {
				waits = append(waits, durableWait{p: p, last: res.LastOffset, resp: sp, now: txnl})
			}
		}
	}
	if ackErr != 0 {
		failed = kerr.ErrorForCode(ackErr)
	}

	switch {
	case req.Acks == 0:
		if failed != nil {
			b.logger.Info("closing connection after a failed acks=0 produce", "peer", clientOf(ctx).Host, "err", failed)
			return answer{err: errRefused}
		}
		return answer{}
	case len(waits) == 0:
		return answer{resp: resp}
	}
	timeout := time.Duration(req.TimeoutMillis) * time.Millisecond
	return answer{later: func(ctx context.Context) kmsg.Response {
		// A timeout of zero or less sets no bound of its own: the wait
		// still ends with the connection.
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		for _, w := range waits {
			wait := w.p.WaitDurable
			if w.now {
				wait = func(_ context.Context, last int64) error { return w.p.SyncTo(last + 1) }
			}
			if err := wait(ctx, w.last); err != nil {
				switch {
				case errors.Is(err, context.DeadlineExceeded):
					w.resp.ErrorCode = kerr.RequestTimedOut.Code
				default:
					w.resp.ErrorCode = errorCode(err)
				}
				w.resp.ErrorMessage = errMessage(err)
			}
		}
		return resp
	}}
}

// appendBatch validates and appends the records of one partition of a
// produce request. A transactional batch is appended only if the
// transaction coordinator knows its producer to be in a transaction that
// includes the partition (KIP-890 part 1's verification, which a single
// node can always do); from Produce v12 a partition is added to the
// transaction implicitly (KIP-890 part 2).
func (b *Broker) appendBatch(ctx context.Context, req *kmsg.ProduceRequest, topic string, partition int32, records []byte) (_ *storage.Partition, _ storage.AppendResult, transactional bool, _ error) {
	var none storage.AppendResult
	if isInternal(topic) {
		return nil, none, false, fmt.Errorf("%w: %s is internal; clients may not produce to it", storage.ErrInvalidTopicName, topic)
	}
	p, err := b.log.Partition(topic, partition)
	if err != nil {
		return nil, none, false, err
	}
	h, err := b.validateProduceBatch(ctx, records)
	if err != nil {
		return nil, none, false, err
	}
	if h.Transactional() {
		if req.TransactionID == nil {
			return nil, none, false, fmt.Errorf("%w: a transactional batch of producer %d came without a transactional id", errInvalidTxn, h.ProducerID)
		}
		tp := txn.TopicPartition{Topic: topic, Partition: partition}
		if code := b.txns.CheckProduce(ctx, *req.TransactionID, h.ProducerID, h.ProducerEpoch, tp, req.Version >= 12); code != 0 {
			return nil, none, false, fmt.Errorf("transactional batch of %q (producer %d, epoch %d) to %s-%d: %w",
				*req.TransactionID, h.ProducerID, h.ProducerEpoch, topic, partition, kerr.ErrorForCode(code))
		}
	}
	res, err := p.Append(records)
	if err != nil {
		return nil, none, false, err
	}
	return p, res, h.Transactional(), nil
}

// errInvalidRecord is a well-formed batch that a producer may not send; it
// maps to INVALID_RECORD.
var errInvalidRecord = errors.New("invalid record")

// validateProduceBatch checks what Kafka checks of a produce request's
// records beyond the batch header and CRC that Append checks: exactly one
// batch (v3+), not a control batch, and records that decode, decompressing
// them if needed, so that no consumer is handed a batch it cannot read.
//
// Decompression is streamed (storage.CheckRecords): records are checked as
// they are inflated, never held, and a batch inflating past MaxRequestSize
// is refused. The decompressor's memory is taken from the broker's
// decompression budget for the duration, waiting for it if need be.
func (b *Broker) validateProduceBatch(ctx context.Context, records []byte) (storage.BatchHeader, error) {
	// The header alone settles the cheap checks; CheckRecords then
	// validates the batch (CRC included) while streaming its records.
	h, err := storage.ParseBatchHeader(records)
	if err != nil {
		return h, err
	}
	switch {
	case h.Size() >= storage.BatchHeaderSize && h.Size() < len(records):
		return h, fmt.Errorf("%w: produce requests carry exactly one record batch per partition, this one has %d bytes after the first", errInvalidRecord, len(records)-h.Size())
	case h.Control():
		return h, fmt.Errorf("%w: producers may not write control batches", errInvalidRecord)
	case h.Transactional() && h.ProducerID < 0:
		return h, fmt.Errorf("%w: a transactional batch needs a producer id", errInvalidRecord)
	}
	if h.Compression() != storage.CompressionNone {
		need := storage.DecompressionMemory(records)
		if need > b.mem.half {
			return h, fmt.Errorf("%w: decompressing this %s batch needs %d bytes, more than the broker's decompression budget of %d (half of max-inflight-bytes)",
				errInvalidRecord, h.Compression(), need, b.mem.half)
		}
		release, err := b.mem.acquire(ctx, b.mem.decompress, need)
		if err != nil {
			return h, fmt.Errorf("waiting for memory to decompress a batch: %w", err)
		}
		defer release()
	}
	if _, err := storage.CheckRecords(records, int(b.cfg.MaxRequestSize)); err != nil {
		return h, err
	}
	return h, nil
}

// errInvalidTxn maps to INVALID_TXN_STATE.
var errInvalidTxn = errors.New("invalid transaction state")
