package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker/internal/group"
	"github.com/runnel-io/runnel/broker/internal/txn"
	"github.com/runnel-io/runnel/broker/storage"
)

// Transactions: the coordinator (broker/internal/txn) keeps each
// transactional id's state in memory and every change of it in the
// compacted internal topic __transaction_state, durable before the request
// that made it is answered. Ending a transaction writes a commit or abort
// marker (a control batch) into every partition the transaction touched,
// __consumer_offsets included when it committed offsets; the partitions
// (broker/storage) then know their last stable offset and their aborted
// transactions, which read_committed fetches need. On start the state is
// replayed and every transaction that was past its decision is finished,
// every other one aborted (Coordinator.Recover).

// txnStatePartitions is the partition count of __transaction_state: one,
// for the same reason as __consumer_offsets.
const txnStatePartitions = 1

// recoverWait bounds how long Start waits for the transactions the last
// run left open to be finished.
const recoverWait = 30 * time.Second

// DefaultMaxTransactionTimeout bounds the transaction.timeout.ms a producer
// may ask for (Kafka's transaction.max.timeout.ms).
const DefaultMaxTransactionTimeout = 15 * time.Minute

// startTxns creates __transaction_state if needed, builds the coordinator,
// replays the topic into it and finishes what the last run left open. It
// runs after startGroups: finishing a transaction may complete offsets the
// group coordinator holds pending.
func (b *Broker) startTxns(ctx context.Context) error {
	if b.log.Topic(transactionTopic) == nil {
		_, err := b.log.CreateTopic(transactionTopic, txnStatePartitions, map[string]string{
			storage.ConfigCleanupPolicy: "compact",
			storage.ConfigSegmentBytes:  "104857600",
		})
		if err != nil && !errors.Is(err, storage.ErrTopicExists) {
			return fmt.Errorf("create %s: %w", transactionTopic, err)
		}
	}
	b.txns = txn.New(txn.Config{
		Store:                 txnStore{b},
		Markers:               markerWriter{b},
		AllocateProducerID:    b.meta.allocate,
		MaxTransactionTimeout: b.cfg.MaxTransactionTimeout,
		AbortTimedOutInterval: b.cfg.hooks.txnAbortInterval,
		Logger:                b.logger,
		PartitionExists: func(topic string, partition int32) bool {
			if isInternal(topic) {
				return false
			}
			_, err := b.log.Partition(topic, partition)
			return err == nil
		},
		OffsetsPartition: func(grp string) txn.TopicPartition {
			return txn.TopicPartition{Topic: group.OffsetsTopic, Partition: offsetsPartition(grp)}
		},
	})
	start := time.Now()
	var n int
	for _, p := range b.log.Topic(transactionTopic).Partitions() {
		m, err := replayLog(p, replayer{record: func(_ storage.BatchHeader, key, value []byte) error {
			return b.txns.Load(key, value)
		}})
		if err != nil {
			return fmt.Errorf("load %s: %w", p, err)
		}
		n += m
	}
	// Finishing what the last run left open writes markers; a start waits
	// for that a while, so that consumers find the log settled, but not for
	// ever: past recoverWait the completions go on in the background (their
	// transactional ids answer CONCURRENT_TRANSACTIONS meanwhile).
	rctx, cancel := context.WithTimeout(ctx, recoverWait)
	defer cancel()
	if err := b.txns.Recover(rctx); errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		b.logger.Warn("transactions left open by the last run are still being finished; serving meanwhile", "waited", recoverWait)
	} else if err != nil {
		return fmt.Errorf("recover transactions: %w", err)
	}
	b.logger.Info("transactions loaded", "records", n, "open", b.txns.Stats().Open, "took", time.Since(start))
	return nil
}

// replayer receives what replayLog reads: every record with a key (from
// data batches) and every transaction marker.
type replayer struct {
	record func(h storage.BatchHeader, key, value []byte) error
	marker func(h storage.BatchHeader, commit bool) error // nil: markers are skipped
}

// replayLog feeds every keyed record and every marker of one internal
// partition, in offset order, to r, and returns how many records it fed.
func replayLog(p *storage.Partition, r replayer) (int, error) {
	n := 0
	off, hw := p.LogStartOffset(), p.HighWatermark()
	var buf []byte
	for off < hw {
		recs, err := p.Read(off, 1<<20, -1)
		if err != nil {
			return n, err
		}
		if recs.Len() == 0 {
			break
		}
		if buf, err = recs.AppendTo(buf[:0]); err != nil {
			return n, err
		}
		for rest := buf; len(rest) > 0; {
			h, err := storage.ParseBatchHeader(rest)
			if err != nil {
				return n, err
			}
			batch := rest[:h.Size()]
			rest = rest[h.Size():]
			_, rs, err := storage.DecodeRecords(batch)
			if err != nil {
				return n, fmt.Errorf("batch at offset %d: %w", h.BaseOffset, err)
			}
			if h.Control() {
				if r.marker != nil && h.LastOffset() >= off && len(rs) > 0 {
					commit, ok := markerCommit(rs[0].Key)
					if !ok {
						return n, fmt.Errorf("batch at offset %d: unreadable control record", h.BaseOffset)
					}
					if err := r.marker(h, commit); err != nil {
						return n, fmt.Errorf("marker at offset %d: %w", h.BaseOffset, err)
					}
				}
				off = h.LastOffset() + 1
				continue
			}
			for _, rec := range rs {
				if h.BaseOffset+int64(rec.OffsetDelta) < off || rec.Key == nil {
					continue
				}
				if err := r.record(h, rec.Key, rec.Value); err != nil {
					return n, fmt.Errorf("record at offset %d: %w", h.BaseOffset+int64(rec.OffsetDelta), err)
				}
				n++
			}
			off = h.LastOffset() + 1
		}
	}
	return n, nil
}

// markerCommit reads a control record's key (version int16, type int16):
// type 1 is a commit, 0 an abort.
func markerCommit(key []byte) (commit, ok bool) {
	if len(key) < 4 {
		return false, false
	}
	switch int16(key[2])<<8 | int16(key[3]) {
	case 0:
		return false, true
	case 1:
		return true, true
	}
	return false, false
}

// txnStore writes the coordinator's records to __transaction_state, one
// record a batch, and returns once it is durable.
type txnStore struct{ b *Broker }

func (s txnStore) Append(ctx context.Context, key, value []byte) error {
	p, err := s.b.log.Partition(transactionTopic, 0)
	if err != nil {
		return err
	}
	batch, err := storage.NewBatch(storage.CompressionNone, time.Now().UnixMilli(), storage.Record{Key: key, Value: value})
	if err != nil {
		return fmt.Errorf("encode transaction state: %w", err)
	}
	res, err := p.Append(batch)
	if err != nil {
		return fmt.Errorf("write transaction state: %w", err)
	}
	// Synced at once rather than at the next group commit: a transaction
	// waits on several of these writes in a row.
	if err := p.SyncTo(res.LastOffset + 1); err != nil {
		return fmt.Errorf("write transaction state: %w", err)
	}
	return nil
}

// markerWriter ends a transaction in its partitions.
type markerWriter struct{ b *Broker }

// WriteMarkers appends a marker to every partition, waits until all are
// durable, and then tells the group coordinator, if the transaction
// committed offsets, that they are now committed (or dropped). A partition
// whose topic was deleted meanwhile is skipped, as Kafka does: there is
// nothing left there to end.
func (w markerWriter) WriteMarkers(ctx context.Context, pid int64, epoch int16, commit bool, parts []txn.TopicPartition) error {
	type written struct {
		p   *storage.Partition
		off int64
	}
	var offsets bool
	done := make([]written, 0, len(parts))
	for _, tp := range parts {
		p, err := w.b.log.Partition(tp.Topic, tp.Partition)
		if errors.Is(err, storage.ErrUnknownTopic) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write marker to %s-%d: %w", tp.Topic, tp.Partition, err)
		}
		off, err := p.AppendMarker(pid, epoch, commit, 0)
		if err != nil {
			return fmt.Errorf("write marker to %s: %w", p, err)
		}
		done = append(done, written{p, off})
		offsets = offsets || tp.Topic == group.OffsetsTopic
	}
	// Each partition is synced at once, in parallel, rather than at the
	// next group commit: EndTxn waits on this.
	errs := make([]error, len(done))
	var wg sync.WaitGroup
	for i, d := range done {
		wg.Go(func() { errs[i] = d.p.SyncTo(d.off + 1) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("write markers: %w", err)
	}
	if offsets {
		w.b.groups.CompleteTxn(pid, commit)
	}
	return nil
}

// handleInitProducerID gives an idempotent producer a new producer id at
// epoch 0; a transactional id goes to the transaction coordinator. As in
// Kafka, a producer without a transactional id that sends its old id and
// epoch (v3+, after a fatal sequence error) also gets a new id.
func (b *Broker) handleInitProducerID(ctx context.Context, r kmsg.Request) answer {
	req := r.(*kmsg.InitProducerIDRequest)
	if req.TransactionalID != nil {
		return answer{later: func(ctx context.Context) kmsg.Response { return b.txns.InitProducerID(ctx, req) }}
	}
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	id, err := b.meta.allocate()
	if err != nil {
		b.logger.Error("allocating a producer id failed", "err", err)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code // retriable
		return answer{resp: resp}
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return answer{resp: resp}
}

// handleTxnOffsetCommit checks with the transaction coordinator that the
// producer is in a transaction that added the group (from v5, KIP-890 part
// 2, the commit adds it), then lets the group coordinator hold the offsets
// pending until the transaction ends.
func (b *Broker) handleTxnOffsetCommit(ctx context.Context, req *kmsg.TxnOffsetCommitRequest) *kmsg.TxnOffsetCommitResponse {
	var code int16
	if req.Version >= 5 {
		code = b.txns.AddTxnOffsetCommit(ctx, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group)
	} else {
		code = b.txns.CheckTxnOffsetCommit(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group)
	}
	if code == kerr.ProducerFenced.Code && req.Version < 3 {
		code = kerr.InvalidProducerEpoch.Code // PRODUCER_FENCED is unknown to older clients
	}
	if code == 0 {
		return b.groups.TxnOffsetCommit(ctx, req)
	}
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewTxnOffsetCommitResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			sp.Partition, sp.ErrorCode = rp.Partition, code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// txnAPIs are the dispatch table's transaction entries. Each may wait for a
// durable write, so each runs deferred.
func (b *Broker) txnAPIs() []api {
	maxv := func(k kmsg.Key) int16 {
		v, _ := txn.MaxVersion(k.Int16())
		return v
	}
	tocMax, _ := group.MaxVersion(kmsg.TxnOffsetCommit.Int16())
	return []api{
		{key: kmsg.InitProducerID, min: 0, max: maxv(kmsg.InitProducerID), handle: b.handleInitProducerID},
		{key: kmsg.AddPartitionsToTxn, min: 0, max: maxv(kmsg.AddPartitionsToTxn), handle: deferred(b.txns.AddPartitionsToTxn)},
		{key: kmsg.AddOffsetsToTxn, min: 0, max: maxv(kmsg.AddOffsetsToTxn), handle: deferred(b.txns.AddOffsetsToTxn)},
		{key: kmsg.EndTxn, min: 0, max: maxv(kmsg.EndTxn), handle: deferred(b.txns.EndTxn)},
		{key: kmsg.TxnOffsetCommit, min: 0, max: tocMax, handle: deferred(b.handleTxnOffsetCommit)},
		{key: kmsg.DescribeTransactions, min: 0, max: maxv(kmsg.DescribeTransactions), handle: deferred(b.txns.DescribeTransactions)},
		{key: kmsg.ListTransactions, min: 0, max: maxv(kmsg.ListTransactions), handle: deferred(b.txns.ListTransactions)},
	}
}
