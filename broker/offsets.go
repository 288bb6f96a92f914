package broker

import (
	"context"
	"fmt"
	"math"

	"github.com/runnel-io/runnel/broker/storage"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Special ListOffsets timestamps.
const (
	listLatest       = -1 // the high watermark, or the last stable offset at isolation level 1
	listEarliest     = -2 // the log start offset
	listMaxTimestamp = -3 // the record with the largest timestamp (v7+, KIP-734)
)

// handleListOffsets answers earliest, latest, max-timestamp and
// by-timestamp lookups.
func (b *Broker) handleListOffsets(ctx context.Context, req *kmsg.ListOffsetsRequest) *kmsg.ListOffsetsResponse {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	resp.Topics = make([]kmsg.ListOffsetsResponseTopic, len(req.Topics))
	z, _ := b.authzFor(ctx, kmsg.ListOffsets)
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		denied := z.deniedTopic(rt.Topic)
		st.Partitions = make([]kmsg.ListOffsetsResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset, sp.LeaderEpoch = -1, -1, 0
			if denied != 0 {
				sp.ErrorCode, sp.LeaderEpoch = denied, -1
				continue
			}
			p, err := b.log.Partition(rt.Topic, rp.Partition)
			if err != nil {
				sp.ErrorCode, sp.LeaderEpoch = errorCode(err), -1
				continue
			}
			if req.Version >= 4 {
				if code := leaderEpochError(rp.CurrentLeaderEpoch); code != 0 {
					sp.ErrorCode = code
					continue
				}
			}
			offset, ts, err := listOffset(p, rp.Timestamp, req.Version >= 2 && req.IsolationLevel == 1)
			if err != nil {
				sp.ErrorCode = errorCode(err)
				if sp.ErrorCode == kerr.UnknownServerError.Code {
					b.logger.Error("list offsets failed", "partition", p.String(), "timestamp", rp.Timestamp, "err", err)
				}
				continue
			}
			sp.Offset, sp.Timestamp = offset, ts
		}
	}
	return resp
}

// listOffset answers one ListOffsets lookup: an offset and the timestamp
// found with it, or -1, -1 when no record has a timestamp that late. A
// read_committed consumer (committed) is told the last stable offset as
// the latest: it can read no further.
func listOffset(p *storage.Partition, ts int64, committed bool) (int64, int64, error) {
	switch ts {
	case listEarliest:
		return p.LogStartOffset(), -1, nil
	case listLatest:
		if committed {
			return p.LastStableOffset(), -1, nil
		}
		return p.HighWatermark(), -1, nil
	case listMaxTimestamp:
		return maxTimestampOffset(p)
	}
	return p.OffsetForTimestamp(ts)
}

// maxTimestampOffset finds the record with the largest timestamp. The
// largest timestamp T is the largest ts for which OffsetForTimestamp finds
// a batch, which a binary search over int64 finds in 64 index lookups; that
// batch is then decoded for the offset of its (first) record stamped T.
func maxTimestampOffset(p *storage.Partition) (int64, int64, error) {
	found := func(ts int64) (bool, error) {
		off, _, err := p.OffsetForTimestamp(ts)
		return off >= 0, err
	}
	ok, err := found(math.MinInt64)
	if err != nil || !ok {
		return -1, -1, err
	}
	// Invariant: found(lo), and hi is past the largest ts found.
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if ok, err := found(hi); err != nil {
		return -1, -1, err
	} else if ok {
		lo = hi
	}
	for lo < hi && uint64(hi-lo) > 1 {
		mid := lo + int64(uint64(hi-lo)/2)
		ok, err := found(mid)
		if err != nil {
			return -1, -1, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	base, maxTS, err := p.OffsetForTimestamp(lo)
	if err != nil || base < 0 {
		return -1, -1, err
	}
	recs, err := p.Read(base, 1, -1)
	if err != nil {
		return -1, -1, err
	}
	batch, err := recs.AppendTo(nil)
	if err != nil {
		return -1, -1, err
	}
	h, err := storage.ParseBatchHeader(batch)
	if err != nil {
		return -1, -1, err
	}
	_, rs, err := storage.DecodeRecords(batch[:h.Size()])
	if err != nil {
		return -1, -1, fmt.Errorf("max timestamp of %s: %w", p, err)
	}
	for _, r := range rs {
		off := h.BaseOffset + int64(r.OffsetDelta)
		if off < base {
			continue
		}
		if h.LogAppendTime() || h.BaseTimestamp+r.TimestampDelta == maxTS {
			return off, maxTS, nil
		}
	}
	return base, maxTS, nil
}

// handleOffsetForLeaderEpoch answers for the only epoch there is, 0: it
// ends at the log end offset. Later epochs are unknown (-1, -1).
func (b *Broker) handleOffsetForLeaderEpoch(ctx context.Context, req *kmsg.OffsetForLeaderEpochRequest) *kmsg.OffsetForLeaderEpochResponse {
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	resp.Topics = make([]kmsg.OffsetForLeaderEpochResponseTopic, len(req.Topics))
	z, _ := b.authzFor(ctx, kmsg.OffsetForLeaderEpoch)
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewOffsetForLeaderEpochResponseTopic()
		st.Topic = rt.Topic
		denied := z.deniedTopic(rt.Topic)
		st.Partitions = make([]kmsg.OffsetForLeaderEpochResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.LeaderEpoch, sp.EndOffset = -1, -1
			if denied != 0 {
				sp.ErrorCode = denied
				continue
			}
			p, err := b.log.Partition(rt.Topic, rp.Partition)
			if err != nil {
				sp.ErrorCode = errorCode(err)
				continue
			}
			if req.Version >= 2 {
				if code := leaderEpochError(rp.CurrentLeaderEpoch); code != 0 {
					sp.ErrorCode = code
					continue
				}
			}
			if rp.LeaderEpoch == 0 {
				sp.LeaderEpoch, sp.EndOffset = 0, p.LogEndOffset()
			}
		}
	}
	return resp
}

// handleDeleteRecords moves log start offsets forward.
func (b *Broker) handleDeleteRecords(ctx context.Context, req *kmsg.DeleteRecordsRequest) *kmsg.DeleteRecordsResponse {
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	resp.Topics = make([]kmsg.DeleteRecordsResponseTopic, len(req.Topics))
	z, _ := b.authzFor(ctx, kmsg.DeleteRecords)
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewDeleteRecordsResponseTopic()
		st.Topic = rt.Topic
		denied := z.deniedTopic(rt.Topic)
		st.Partitions = make([]kmsg.DeleteRecordsResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewDeleteRecordsResponseTopicPartition()
			sp.Partition, sp.LowWatermark = rp.Partition, -1
			if denied != 0 {
				sp.ErrorCode = denied
				continue
			}
			t := b.log.Topic(rt.Topic)
			if t == nil || t.Partition(rp.Partition) == nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				continue
			}
			if cfg := t.Config(); cfg.Compact && !cfg.Delete {
				// As Kafka: records of a compacted topic go by key, not by
				// offset.
				sp.ErrorCode = kerr.PolicyViolation.Code
				continue
			}
			low, err := t.Partition(rp.Partition).DeleteRecords(rp.Offset)
			if err != nil {
				sp.ErrorCode = errorCode(err)
				if sp.ErrorCode == kerr.UnknownServerError.Code {
					b.logger.Error("delete records failed", "topic", rt.Topic, "partition", rp.Partition, "offset", rp.Offset, "err", err)
				}
				continue
			}
			sp.LowWatermark = low
			b.logger.Info("deleted records", "topic", rt.Topic, "partition", rp.Partition, "log_start_offset", low)
		}
	}
	return resp
}
