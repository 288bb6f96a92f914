package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrOffsetOutOfRange is matched by ReadPartition's error when the offset to
// read from is no longer (or not yet) in the partition: below its log start
// offset, after retention or compaction removed it, or beyond its high
// watermark. A restore meeting it clears its store and restores from the
// log start offset.
var ErrOffsetOutOfRange = errors.New("offset out of range")

// Reads fetch with raw Fetch requests to the partition's leader, decoded by
// kgo.ProcessFetchPartition, rather than through kgo's consumer, because a
// read has to know its fetch position: the offset after the last batch a
// fetch returned, transaction markers and batches emptied by compaction
// included. kgo's consumer moves past those without telling; a read that
// waited for a record at until-1 would then wait forever.
const (
	// readMaxWait is how long a fetch waits at the end of the partition
	// for new records. A read has its connection to itself, so the wait
	// holds up nothing else.
	readMaxWait = 500 * time.Millisecond
	// readMaxBytes bounds what one fetch returns: large enough that a
	// restore makes few round trips, small enough that the fetches held
	// by the partitions restoring at once stay a modest amount of memory.
	readMaxBytes = 4 << 20
)

// ReadPartition implements Reader.
func (c *Client) ReadPartition(ctx context.Context, topic string, partition int32, from, until int64, fn func(*Record) error) error {
	return c.ReadBatches(ctx, topic, partition, from, until, func(recs []*Record, _ int64) error {
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReadBatches implements Reader. Each read has a franz-go client, and so
// connections, of its own, closed when it returns.
func (c *Client) ReadBatches(ctx context.Context, topic string, partition int32, from, until int64, fn func(recs []*Record, next int64) error) error {
	if from < 0 {
		return fmt.Errorf("kafka: read %s/%d from offset %d: offsets start at 0", topic, partition, from)
	}
	if until >= 0 && from >= until {
		return nil
	}
	cl, err := kgo.NewClient(c.cfg.kgoBase("reader")...)
	if err != nil {
		return fmt.Errorf("kafka: read %s/%d: %w", topic, partition, err)
	}
	defer cl.Close()
	r := &partitionReader{cl: cl, c: c, topic: topic, partition: partition, pos: from, leader: -1, decompress: kgo.DefaultDecompressor(),
		alloc: recordAlloc{pool: &c.records}}
	defer r.alloc.release()
	return r.run(ctx, until, fn)
}

// partitionReader is one read of one partition.
type partitionReader struct {
	cl        *kgo.Client
	c         *Client
	topic     string
	partition int32
	pos       int64 // the next offset to fetch

	leader  int32 // -1: to be looked up
	topicID [16]byte

	decompress kgo.Decompressor
	// alloc and out are reused by every fetch: the records are the
	// callback's only until it returns.
	alloc recordAlloc
	out   []*Record
}

func (r *partitionReader) run(ctx context.Context, until int64, fn func([]*Record, int64) error) error {
	fails := 0
	for until < 0 || r.pos < until {
		p, err := r.fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !transient(err) {
				return fmt.Errorf("kafka: read %s/%d at offset %d: %w", r.topic, r.partition, r.pos, err)
			}
			// A broker outage pauses the read; it resumes where it was.
			fails++
			if fails == 1 {
				r.c.log.Warn("reading partition; retrying", "topic", r.topic, "partition", r.partition, "offset", r.pos, "err", err)
			}
			r.leader = -1
			t := time.NewTimer(backoff(fails))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			continue
		}
		fails = 0
		// The fetch goes to fn in pieces of about readPiece records,
		// decoded into the same Records piece after piece, which then stay
		// in the processor's cache.
		raw := p.RecordBatches
		for {
			r.alloc.reset()
			recs, next, rest, err := decodeBatches(raw, r.pos, r.topic, r.partition, r.decompress, &r.alloc, r.out[:0], readPiece)
			if errors.Is(err, errOldMagic) {
				recs, next, rest, err = r.decodeOld(p)
			}
			if err != nil {
				return fmt.Errorf("kafka: read %s/%d at offset %d: %w", r.topic, r.partition, r.pos, err)
			}
			r.out = recs
			if until >= 0 {
				for i, rec := range recs {
					if rec.Offset >= until {
						recs = recs[:i]
						break
					}
				}
				next = min(next, until)
			}
			prev := r.pos
			r.pos = max(next, r.pos)
			if len(recs) > 0 || r.pos > prev {
				if err := fn(recs, r.pos); err != nil {
					return err
				}
			}
			if len(rest) == 0 || until >= 0 && r.pos >= until {
				break
			}
			raw = rest
		}
	}
	return nil
}

// readPiece is about how many records a read hands to its callback at a
// time.
const readPiece = 1024

// fetch sends one Fetch for the partition at r.pos and returns the
// partition's answer, unless it holds an error.
func (r *partitionReader) fetch(ctx context.Context) (*kmsg.FetchResponseTopicPartition, error) {
	if r.leader < 0 {
		if err := r.lookupLeader(ctx); err != nil {
			return nil, err
		}
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = int32(readMaxWait / time.Millisecond)
	req.MinBytes = 1
	req.MaxBytes = readMaxBytes
	req.SessionEpoch = -1 // no fetch session
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = r.topic, r.topicID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = r.partition
	rp.CurrentLeaderEpoch = -1 // no fencing: a stale leader answers NOT_LEADER
	rp.FetchOffset = r.pos
	rp.LogStartOffset = -1
	rp.PartitionMaxBytes = readMaxBytes
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, r.cl.Broker(int(r.leader)))
	if err != nil {
		return nil, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, err
	}
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			p := &resp.Topics[i].Partitions[j]
			if p.Partition != r.partition {
				continue
			}
			switch err := kerr.ErrorForCode(p.ErrorCode); {
			case errors.Is(err, kerr.OffsetOutOfRange):
				return nil, fmt.Errorf("%w (log start %d, high watermark %d): %w", ErrOffsetOutOfRange, p.LogStartOffset, p.HighWatermark, err)
			case err != nil:
				// NOT_LEADER_OR_FOLLOWER and the like are retriable:
				// the leader is looked up again.
				return nil, err
			}
			return p, nil
		}
	}
	return nil, fmt.Errorf("fetch answer without partition %d: %w", r.partition, kerr.UnknownServerError)
}

// decodeOld decodes, with franz-go, what is left at r.pos of a fetch
// answer holding message sets of magic 0 or 1: all of it at once.
func (r *partitionReader) decodeOld(p *kmsg.FetchResponseTopicPartition) ([]*Record, int64, []byte, error) {
	fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		Offset:         r.pos,
		IsolationLevel: kgo.ReadUncommitted(),
		Topic:          r.topic,
		Partition:      r.partition,
	}, p, r.decompress, nil)
	if fp.Err != nil && len(fp.Records) == 0 {
		return nil, 0, nil, fp.Err
	}
	return fromKgo(fp.Records, nil), next, nil, nil
}

// lookupLeader asks the cluster for the partition's leader, its epoch and
// the topic's id (which Fetch v13 and later name topics by).
func (r *partitionReader) lookupLeader(ctx context.Context) error {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(r.topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, r.cl)
	if err != nil {
		return err
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != r.topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				return fmt.Errorf("%w %q: %w", ErrUnknownTopic, r.topic, err)
			}
			return err
		}
		for _, p := range t.Partitions {
			if p.Partition != r.partition {
				continue
			}
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil && p.Leader < 0 {
				return err
			}
			if p.Leader < 0 {
				return kerr.LeaderNotAvailable
			}
			r.leader, r.topicID = p.Leader, t.TopicID
			return nil
		}
		return fmt.Errorf("%w %q: no partition %d", ErrUnknownTopic, r.topic, r.partition)
	}
	return fmt.Errorf("%w %q", ErrUnknownTopic, r.topic)
}
