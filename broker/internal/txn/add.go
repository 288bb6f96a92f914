package txn

import (
	"context"
	"log/slog"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AddPartitionsToTxn handles an AddPartitionsToTxn request. Versions 0–3 come from producers
// and add partitions to their transaction, starting it if none is open. Versions 4 and 5 come
// from brokers and batch several transactional ids; a transaction marked VerifyOnly is only
// checked: each partition answers 0 if it is in the transaction, TRANSACTION_ABORTABLE if not.
// If any partition of a transaction does not exist, none is added: those answer
// UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED. Partitions are added
// durably before the answer. A producer whose epoch is not the current one gets
// PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v2); a transaction being completed gets
// CONCURRENT_TRANSACTIONS, which clients retry.
func (c *Coordinator) AddPartitionsToTxn(ctx context.Context, req *kmsg.AddPartitionsToTxnRequest) *kmsg.AddPartitionsToTxnResponse {
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	if req.Version <= 3 {
		var topics []kmsg.AddPartitionsToTxnRequestTransactionTopic
		for _, rt := range req.Topics {
			topics = append(topics, kmsg.AddPartitionsToTxnRequestTransactionTopic{Topic: rt.Topic, Partitions: rt.Partitions})
		}
		res := c.addPartitions(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, false, false, topics)
		for _, rt := range res {
			t := kmsg.NewAddPartitionsToTxnResponseTopic()
			t.Topic = rt.topic
			for _, p := range rt.parts {
				rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				rp.Partition = p.partition
				rp.ErrorCode = p.code
				if rp.ErrorCode == kerr.ProducerFenced.Code && req.Version < 2 {
					rp.ErrorCode = kerr.InvalidProducerEpoch.Code
				}
				t.Partitions = append(t.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp
	}
	for _, rtx := range req.Transactions {
		res := c.addPartitions(ctx, rtx.TransactionalID, rtx.ProducerID, rtx.ProducerEpoch, rtx.VerifyOnly, req.Version >= 5, rtx.Topics)
		tx := kmsg.NewAddPartitionsToTxnResponseTransaction()
		tx.TransactionalID = rtx.TransactionalID
		for _, rt := range res {
			t := kmsg.NewAddPartitionsToTxnResponseTransactionTopic()
			t.Topic = rt.topic
			for _, p := range rt.parts {
				rp := kmsg.NewAddPartitionsToTxnResponseTransactionTopicPartition()
				rp.Partition = p.partition
				rp.ErrorCode = p.code
				t.Partitions = append(t.Partitions, rp)
			}
			tx.Topics = append(tx.Topics, t)
		}
		resp.Transactions = append(resp.Transactions, tx)
	}
	return resp
}

type partResult struct {
	partition int32
	code      int16
}

type topicResult struct {
	topic string
	parts []partResult
}

// addPartitions adds (or with verifyOnly checks) the partitions of one transaction and returns
// a code per distinct partition, in request order.
func (c *Coordinator) addPartitions(ctx context.Context, id string, pid int64, epoch int16, verifyOnly, tv2 bool,
	topics []kmsg.AddPartitionsToTxnRequestTransactionTopic) []topicResult {
	var res []topicResult
	var parts []TopicPartition
	index := make(map[TopicPartition][2]int)
	for _, rt := range topics {
		ti := slices.IndexFunc(res, func(r topicResult) bool { return r.topic == rt.Topic })
		if ti < 0 {
			ti = len(res)
			res = append(res, topicResult{topic: rt.Topic})
		}
		for _, p := range rt.Partitions {
			tp := TopicPartition{Topic: rt.Topic, Partition: p}
			if _, dup := index[tp]; dup {
				continue
			}
			index[tp] = [2]int{ti, len(res[ti].parts)}
			res[ti].parts = append(res[ti].parts, partResult{partition: p})
			parts = append(parts, tp)
		}
	}
	setAll := func(code int16) {
		for i := range res {
			for j := range res[i].parts {
				res[i].parts[j].code = code
			}
		}
	}
	if code := c.admit(); code != 0 {
		setAll(code)
		return res
	}
	defer c.exit()
	if id == "" {
		setAll(kerr.InvalidRequest.Code)
		return res
	}
	if c.cfg.PartitionExists != nil {
		missing := false
		for _, tp := range parts {
			if !c.cfg.PartitionExists(tp.Topic, tp.Partition) {
				at := index[tp]
				res[at[0]].parts[at[1]].code = kerr.UnknownTopicOrPartition.Code
				missing = true
			}
		}
		if missing {
			for i := range res {
				for j := range res[i].parts {
					if res[i].parts[j].code == 0 {
						res[i].parts[j].code = kerr.OperationNotAttempted.Code
					}
				}
			}
			return res
		}
	}
	t := c.lookup(id)
	if t == nil {
		setAll(kerr.InvalidProducerIDMapping.Code)
		return res
	}
	defer t.mu.Unlock()
	if verifyOnly {
		code := c.checkProducer(t, pid, epoch)
		if code == 0 && isPreparing(t.m.state) {
			code = kerr.ConcurrentTransactions.Code
		}
		if code != 0 {
			setAll(code)
			return res
		}
		for _, tp := range parts {
			if !ongoingWith(t.m, tp) {
				at := index[tp]
				res[at[0]].parts[at[1]].code = kerr.TransactionAbortable.Code
			}
		}
		return res
	}
	setAll(c.addLocked(ctx, t, pid, epoch, parts, tv2))
	return res
}

// checkProducer returns the error for a request of producer pid at epoch on t, or 0.
func (c *Coordinator) checkProducer(t *txn, pid int64, epoch int16) int16 {
	switch {
	case t.m.pid != pid:
		return kerr.InvalidProducerIDMapping.Code
	case t.m.epoch != epoch:
		return kerr.ProducerFenced.Code
	}
	return 0
}

// addLocked adds parts to t's transaction, starting one if none is open, and writes the new
// state. t must be locked.
func (c *Coordinator) addLocked(ctx context.Context, t *txn, pid int64, epoch int16, parts []TopicPartition, tv2 bool) int16 {
	if code := c.checkProducer(t, pid, epoch); code != 0 {
		return code
	}
	m := t.m
	if isPreparing(m.state) {
		return kerr.ConcurrentTransactions.Code
	}
	if m.state == kmsg.TransactionStateOngoing && containsAll(m.parts, parts) {
		return 0
	}
	next := m
	now := c.nowMs()
	if m.state != kmsg.TransactionStateOngoing {
		next.start = now
		next.tv = 0
		if tv2 {
			next.tv = 2
		}
	}
	next.state = kmsg.TransactionStateOngoing
	next.parts = sortParts(append(slices.Clone(m.parts), cloneParts(parts)...))
	next.update = now
	if err := c.write(ctx, t, next); err != nil {
		c.log.Warn("adding partitions to transaction failed", slog.String("transactional_id", t.id), slog.Any("error", err))
		return storeErrCode(err)
	}
	return 0
}

func cloneParts(parts []TopicPartition) []TopicPartition {
	out := make([]TopicPartition, len(parts))
	for i, tp := range parts {
		out[i] = TopicPartition{Topic: strings.Clone(tp.Topic), Partition: tp.Partition}
	}
	return out
}

func contains(sorted []TopicPartition, tp TopicPartition) bool {
	_, ok := slices.BinarySearchFunc(sorted, tp, cmpPart)
	return ok
}

func containsAll(sorted, parts []TopicPartition) bool {
	for _, tp := range parts {
		if !contains(sorted, tp) {
			return false
		}
	}
	return true
}

// AddOffsetsToTxn handles an AddOffsetsToTxn request (v0–v4): it adds the partition of
// __consumer_offsets that holds the group's offsets to the transaction, so that the producer
// may then commit offsets with TxnOffsetCommit. Errors are AddPartitionsToTxn's.
func (c *Coordinator) AddOffsetsToTxn(ctx context.Context, req *kmsg.AddOffsetsToTxnRequest) *kmsg.AddOffsetsToTxnResponse {
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	resp.ErrorCode = c.addOffsets(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group, false)
	if resp.ErrorCode == kerr.ProducerFenced.Code && req.Version < 2 {
		resp.ErrorCode = kerr.InvalidProducerEpoch.Code
	}
	return resp
}

func (c *Coordinator) addOffsets(ctx context.Context, id string, pid int64, epoch int16, group string, tv2 bool) int16 {
	if code := c.admit(); code != 0 {
		return code
	}
	defer c.exit()
	if id == "" {
		return kerr.InvalidRequest.Code
	}
	t := c.lookup(id)
	if t == nil {
		return kerr.InvalidProducerIDMapping.Code
	}
	defer t.mu.Unlock()
	return c.addLocked(ctx, t, pid, epoch, []TopicPartition{c.cfg.OffsetsPartition(group)}, tv2)
}

// CheckProduce is asked by Produce for each transactional batch: may producer pid at epoch of
// transactional id tid write to tp now? It may if tp is in its ongoing transaction; with
// implicitAdd (Produce v12+, KIP-890 part 2) a partition not yet in the transaction, or a
// transaction not yet begun, is added durably first. It returns a code for the Produce
// response, 0 if the batch may be written: INVALID_PRODUCER_ID_MAPPING for an unknown id or a
// producer id not the id's, INVALID_PRODUCER_EPOCH for a fenced epoch, INVALID_TXN_STATE for a
// partition outside the transaction, and NOT_ENOUGH_REPLICAS (which every client retries) while
// the coordinator is loading or the transaction is being completed, as Kafka maps those for
// Produce.
func (c *Coordinator) CheckProduce(ctx context.Context, tid string, pid int64, epoch int16, tp TopicPartition, implicitAdd bool) int16 {
	if code := c.admit(); code != 0 {
		return kerr.NotEnoughReplicas.Code
	}
	defer c.exit()
	t := c.lookup(tid)
	if t == nil {
		return kerr.InvalidProducerIDMapping.Code
	}
	defer t.mu.Unlock()
	code := c.checkProducer(t, pid, epoch)
	switch {
	case code == 0 && ongoingWith(t.m, tp):
		return 0
	case code == 0 && isPreparing(t.m.state):
		return kerr.NotEnoughReplicas.Code
	case code == 0 && !implicitAdd:
		return kerr.InvalidTxnState.Code
	case code == 0:
		code = c.addLocked(ctx, t, pid, epoch, []TopicPartition{tp}, true)
	}
	switch code {
	case kerr.ProducerFenced.Code:
		return kerr.InvalidProducerEpoch.Code
	case kerr.CoordinatorNotAvailable.Code, kerr.ConcurrentTransactions.Code:
		return kerr.NotEnoughReplicas.Code
	}
	return code
}

// CheckTxnOffsetCommit is asked before a TxnOffsetCommit: may producer pid at epoch of
// transactional id tid commit offsets for group now? It may if the group's offsets partition
// is in its ongoing transaction (AddOffsetsToTxn). It returns 0 or INVALID_PRODUCER_ID_MAPPING,
// PRODUCER_FENCED (the broker answers INVALID_PRODUCER_EPOCH to TxnOffsetCommit before v3),
// CONCURRENT_TRANSACTIONS while the transaction is being completed, INVALID_TXN_STATE, or
// COORDINATOR_LOAD_IN_PROGRESS / COORDINATOR_NOT_AVAILABLE.
func (c *Coordinator) CheckTxnOffsetCommit(tid string, pid int64, epoch int16, group string) int16 {
	if code := c.admit(); code != 0 {
		return code
	}
	defer c.exit()
	t := c.lookup(tid)
	if t == nil {
		return kerr.InvalidProducerIDMapping.Code
	}
	defer t.mu.Unlock()
	if code := c.checkProducer(t, pid, epoch); code != 0 {
		return code
	}
	switch {
	case ongoingWith(t.m, c.cfg.OffsetsPartition(group)):
		return 0
	case isPreparing(t.m.state):
		return kerr.ConcurrentTransactions.Code
	}
	return kerr.InvalidTxnState.Code
}

// AddTxnOffsetCommit is CheckTxnOffsetCommit for TxnOffsetCommit v5+ (KIP-890 part 2), whose
// producers skip AddOffsetsToTxn: the group's offsets partition is added to the transaction
// durably (starting it if none is open) instead of being required.
func (c *Coordinator) AddTxnOffsetCommit(ctx context.Context, tid string, pid int64, epoch int16, group string) int16 {
	return c.addOffsets(ctx, tid, pid, epoch, group, true)
}

// ongoingWith reports whether m is an ongoing transaction that includes tp.
func ongoingWith(m meta, tp TopicPartition) bool {
	return m.state == kmsg.TransactionStateOngoing && contains(m.parts, tp)
}
