package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker/internal/group"
	"github.com/runnel-io/runnel/broker/storage"
)

// Consumer groups: the coordinator (broker/internal/group) keeps group
// state in memory and every change that must survive a restart (committed
// offsets, group metadata) in the compacted internal topic
// __consumer_offsets, written durably before the request that made it is
// answered and replayed in order on start.

// offsetsPartitions is the partition count of __consumer_offsets. One
// partition keeps the replay a single ordered pass; commits of all groups
// share its group commit.
const offsetsPartitions = 1

// startGroups creates __consumer_offsets if needed, builds the coordinator
// and replays the topic into it.
func (b *Broker) startGroups() error {
	if b.log.Topic(group.OffsetsTopic) == nil {
		_, err := b.log.CreateTopic(group.OffsetsTopic, offsetsPartitions, map[string]string{
			storage.ConfigCleanupPolicy: "compact",
			storage.ConfigSegmentBytes:  "104857600",
		})
		if err != nil && !errors.Is(err, storage.ErrTopicExists) {
			return fmt.Errorf("create %s: %w", group.OffsetsTopic, err)
		}
	}
	b.groups = group.New(group.Config{
		Store:                 offsetsStore{b},
		Logger:                b.logger,
		InitialRebalanceDelay: b.cfg.GroupInitialRebalanceDelay,
		PartitionExists: func(topic string, partition int32) bool {
			_, err := b.log.Partition(topic, partition)
			return err == nil
		},
	})
	start := time.Now()
	var n int
	for _, p := range b.log.Topic(group.OffsetsTopic).Partitions() {
		m, err := replayLog(p, replayer{
			record: func(h storage.BatchHeader, key, value []byte) error {
				if h.Transactional() {
					return b.groups.LoadTxn(h.ProducerID, key, value)
				}
				return b.groups.Load(key, value)
			},
			marker: func(h storage.BatchHeader, commit bool) error {
				b.groups.LoadMarker(h.ProducerID, commit)
				return nil
			},
		})
		if err != nil {
			return fmt.Errorf("load %s: %w", p, err)
		}
		n += m
	}
	b.logger.Info("consumer groups loaded", "records", n, "took", time.Since(start))
	return nil
}

// offsetsStore writes the coordinator's records to __consumer_offsets as
// one batch and returns once it is durable.
type offsetsStore struct{ b *Broker }

func (s offsetsStore) Append(ctx context.Context, grp string, recs []group.Record) error {
	return s.write(grp, recs, func(ts int64, rs []storage.Record) ([]byte, error) {
		return storage.NewBatch(storage.CompressionNone, ts, rs...)
	}, func(p *storage.Partition, last int64) error { return p.WaitDurable(ctx, last) })
}

// AppendTxn writes a transaction's offset commits to __consumer_offsets as
// one transactional batch of the producer, pending until its marker, and
// returns once it is durable. It is synced at once, as the transaction's
// own state is (txnStore): the transaction waits on it.
func (s offsetsStore) AppendTxn(ctx context.Context, grp string, pid int64, epoch int16, recs []group.Record) error {
	return s.write(grp, recs, func(ts int64, rs []storage.Record) ([]byte, error) {
		return storage.NewTxnBatch(pid, epoch, ts, rs...)
	}, func(p *storage.Partition, last int64) error { return p.SyncTo(last + 1) })
}

// write encodes recs as one batch, appends it to the group's partition and
// waits until durable says it is.
func (s offsetsStore) write(grp string, recs []group.Record,
	encode func(ts int64, rs []storage.Record) ([]byte, error), durable func(p *storage.Partition, last int64) error) error {
	p, err := s.b.log.Partition(group.OffsetsTopic, offsetsPartition(grp))
	if err != nil {
		return err
	}
	srecs := make([]storage.Record, len(recs))
	for i, r := range recs {
		srecs[i] = storage.Record{Key: r.Key, Value: r.Value}
	}
	batch, err := encode(time.Now().UnixMilli(), srecs)
	if err != nil {
		return fmt.Errorf("encode group %s records: %w", grp, err)
	}
	res, err := p.Append(batch)
	if err != nil {
		return fmt.Errorf("write group %s records: %w", grp, err)
	}
	if err := durable(p, res.LastOffset); err != nil {
		return fmt.Errorf("write group %s records: %w", grp, err)
	}
	return nil
}

// offsetsPartition picks a group's partition of __consumer_offsets (FNV-1a
// of the name; stable, which is all the coordinator needs).
func offsetsPartition(grp string) int32 {
	h := uint32(2166136261)
	for i := 0; i < len(grp); i++ {
		h = (h ^ uint32(grp[i])) * 16777619
	}
	return int32(h % offsetsPartitions)
}

func (b *Broker) handleJoinGroup(ctx context.Context, req kmsg.Request) answer {
	ci := clientOf(ctx)
	r := req.(*kmsg.JoinGroupRequest)
	return answer{later: func(ctx context.Context) kmsg.Response {
		return b.groups.JoinGroup(ctx, group.Client{ID: ci.ID, Host: ci.Host}, r)
	}}
}

// groupAPIs are the dispatch table's group entries: the coordinator's own
// methods, which is why the table is built after startGroups. Every handler
// that may wait (on other members, or on the durable write of a commit)
// runs deferred, so the connection goes on reading.
func (b *Broker) groupAPIs() []api {
	maxv := func(k kmsg.Key) int16 {
		v, _ := group.MaxVersion(k.Int16())
		return v
	}
	return []api{
		{key: kmsg.JoinGroup, min: 0, max: maxv(kmsg.JoinGroup), handle: b.handleJoinGroup},
		{key: kmsg.SyncGroup, min: 0, max: maxv(kmsg.SyncGroup), handle: deferred(b.groups.SyncGroup)},
		{key: kmsg.Heartbeat, min: 0, max: maxv(kmsg.Heartbeat), handle: deferred(b.groups.Heartbeat)},
		{key: kmsg.LeaveGroup, min: 0, max: maxv(kmsg.LeaveGroup), handle: deferred(b.groups.LeaveGroup)},
		{key: kmsg.OffsetCommit, min: 0, max: maxv(kmsg.OffsetCommit), handle: deferred(b.groups.OffsetCommit)},
		{key: kmsg.OffsetFetch, min: 0, max: maxv(kmsg.OffsetFetch), handle: deferred(b.groups.OffsetFetch)},
		{key: kmsg.OffsetDelete, min: 0, max: maxv(kmsg.OffsetDelete), handle: deferred(b.groups.OffsetDelete)},
		{key: kmsg.DescribeGroups, min: 0, max: maxv(kmsg.DescribeGroups), handle: deferred(b.groups.DescribeGroups)},
		{key: kmsg.ListGroups, min: 0, max: maxv(kmsg.ListGroups), handle: deferred(b.groups.ListGroups)},
		{key: kmsg.DeleteGroups, min: 0, max: maxv(kmsg.DeleteGroups), handle: deferred(b.groups.DeleteGroups)},
	}
}
