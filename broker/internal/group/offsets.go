package group

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetCommit handles an OffsetCommit request (v0–v9). A member of a group commits with its
// member id and generation, which must be current (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
// FENCED_INSTANCE_ID, or REBALANCE_IN_PROGRESS between JoinGroup and SyncGroup). A client that
// manages partitions itself commits with generation -1 and no member id, which is allowed
// while the group is Empty or unknown (it is then created Empty). The commit is written to the
// OffsetsTopic before it is answered.
func (c *Coordinator) OffsetCommit(ctx context.Context, req *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	resp.Topics = make([]kmsg.OffsetCommitResponseTopic, len(req.Topics))
	for i, rt := range req.Topics {
		t := kmsg.NewOffsetCommitResponseTopic()
		t.Topic = rt.Topic
		t.TopicID = rt.TopicID
		t.Partitions = make([]kmsg.OffsetCommitResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			p := kmsg.NewOffsetCommitResponseTopicPartition()
			p.Partition = rp.Partition
			t.Partitions[j] = p
		}
		resp.Topics[i] = t
	}
	// setAll gives every partition not yet failed the error code.
	setAll := func(code int16) {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				if p := &resp.Topics[i].Partitions[j]; p.ErrorCode == 0 {
					p.ErrorCode = code
				}
			}
		}
	}
	if req.Version >= 10 {
		// v10 names topics by id, which this coordinator does not know.
		setAll(kerr.UnsupportedVersion.Code)
		return resp
	}
	if !c.enter() {
		setAll(kerr.CoordinatorNotAvailable.Code)
		return resp
	}
	defer c.exit()
	c.checkPartitions(req.Topics, resp)

	g := c.lockGroup(req.Group)
	if g == nil {
		if req.Generation >= 0 {
			// A member of a generation of a group that does not exist: a zombie.
			setAll(kerr.IllegalGeneration.Code)
			return resp
		}
		g = c.lockOrCreateGroup(req.Group)
	}
	defer func() {
		c.forgetIfVacant(g)
		g.mu.Unlock()
	}()
	if code := c.validateCommit(g, req.Generation, req.MemberID, deref(req.InstanceID)); code != 0 {
		setAll(code)
		return resp
	}

	type commit struct {
		p     *kmsg.OffsetCommitResponseTopicPartition
		topic string
		part  int32
		entry offsetEntry
	}
	now := c.clock.Now().UnixMilli()
	var (
		commits []commit
		recs    []Record
	)
	for i, rt := range req.Topics {
		for j, rp := range rt.Partitions {
			p := &resp.Topics[i].Partitions[j]
			if p.ErrorCode != 0 {
				continue
			}
			if len(deref(rp.Metadata)) > c.cfg.MaxMetadataBytes {
				p.ErrorCode = kerr.OffsetMetadataTooLarge.Code
				continue
			}
			e := offsetEntry{offset: rp.Offset, leaderEpoch: rp.LeaderEpoch, metadata: strings.Clone(deref(rp.Metadata)), commitTime: now}
			if req.Version < 6 {
				e.leaderEpoch = -1
			}
			if req.Version == 1 && rp.Timestamp != -1 {
				// Only v1 let the client choose the commit timestamp.
				e.commitTime = rp.Timestamp
			}
			topic := strings.Clone(rt.Topic)
			commits = append(commits, commit{p: p, topic: topic, part: rp.Partition, entry: e})
			recs = append(recs, Record{Key: offsetCommitKey(g.name, topic, rp.Partition), Value: offsetCommitValue(e)})
		}
	}
	if err := c.append(ctx, g, recs); err != nil {
		c.log.Warn("could not persist offset commit", slog.String("group", g.name), slog.Any("error", err))
		code := storeErrCode(err)
		for _, cm := range commits {
			cm.p.ErrorCode = code
		}
		return resp
	}
	for _, cm := range commits {
		cm.entry.seq = c.nextSeq()
		g.setOffset(cm.topic, cm.part, cm.entry)
	}
	return resp
}

// validateCommit decides whether a commit with the given identity may proceed.
func (c *Coordinator) validateCommit(g *group, generation int32, memberID, instanceID string) int16 {
	if generation < 0 && memberID == "" && instanceID == "" {
		// Offsets of a group not managed by this coordinator: only while no member manages it.
		if g.state != stateEmpty {
			return kerr.UnknownMemberID.Code
		}
		return 0
	}
	if code := g.validateMember(memberID, instanceID); code != 0 {
		return code
	}
	if generation != g.generation {
		return kerr.IllegalGeneration.Code
	}
	switch g.state {
	case stateCompletingRebalance:
		// The member knows the new generation but not yet its assignment: it must not commit
		// for partitions it may no longer own.
		return kerr.RebalanceInProgress.Code
	case stateStable, statePreparingRebalance:
		// A commit proves the member alive. During PreparingRebalance it is still allowed: the
		// member learns of the rebalance from its next heartbeat.
		m := g.members[memberID]
		c.scheduleSession(g, m, m.sessionTimeout)
	}
	return 0
}

// checkPartitions fails partitions that Config.PartitionExists rejects.
func (c *Coordinator) checkPartitions(topics []kmsg.OffsetCommitRequestTopic, resp *kmsg.OffsetCommitResponse) {
	if c.cfg.PartitionExists == nil {
		return
	}
	for i, rt := range topics {
		for j, rp := range rt.Partitions {
			if !c.cfg.PartitionExists(rt.Topic, rp.Partition) {
				resp.Topics[i].Partitions[j].ErrorCode = kerr.UnknownTopicOrPartition.Code
			}
		}
	}
}

// fetchTopic is one topic of an OffsetFetch, of any version.
type fetchTopic struct {
	topic      string
	partitions []int32
}

// fetchedPartition is one answer of an OffsetFetch.
type fetchedPartition struct {
	partition int32
	entry     offsetEntry
	code      int16 // UNSTABLE_OFFSET_COMMIT, or 0
}

type fetchedTopic struct {
	topic      string
	partitions []fetchedPartition
}

// OffsetFetch handles an OffsetFetch request (v0–v9), including the several groups of v8+ and
// the null topic list of v2+ that asks for every committed offset. A partition with no
// committed offset gets offset -1. Offsets of open transactions are never returned; with
// RequireStable (v7+) a partition that has one is answered UNSTABLE_OFFSET_COMMIT instead of
// its committed offset, so the client retries until the transaction ends. As in Kafka, a
// request for every offset lists only partitions with a committed offset.
func (c *Coordinator) OffsetFetch(ctx context.Context, req *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			fg := kmsg.NewOffsetFetchResponseGroup()
			fg.Group = rg.Group
			var topics []fetchTopic
			if rg.Topics != nil {
				topics = make([]fetchTopic, len(rg.Topics))
				for i, rt := range rg.Topics {
					topics[i] = fetchTopic{topic: rt.Topic, partitions: rt.Partitions}
				}
			}
			if req.Version >= 10 {
				fg.ErrorCode = kerr.UnsupportedVersion.Code
				resp.Groups = append(resp.Groups, fg)
				continue
			}
			fetched, code := c.fetchOffsets(rg.Group, topics, rg.Topics == nil, req.RequireStable)
			fg.ErrorCode = code
			for _, ft := range fetched {
				t := kmsg.NewOffsetFetchResponseGroupTopic()
				t.Topic = ft.topic
				for _, fp := range ft.partitions {
					p := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					p.Partition = fp.partition
					p.Offset = fp.entry.offset
					p.LeaderEpoch = fp.entry.leaderEpoch
					p.Metadata = &fp.entry.metadata
					p.ErrorCode = fp.code
					t.Partitions = append(t.Partitions, p)
				}
				fg.Topics = append(fg.Topics, t)
			}
			resp.Groups = append(resp.Groups, fg)
		}
		return resp
	}

	topics := make([]fetchTopic, len(req.Topics))
	for i, rt := range req.Topics {
		topics[i] = fetchTopic{topic: rt.Topic, partitions: rt.Partitions}
	}
	all := req.Version >= 2 && req.Topics == nil
	fetched, code := c.fetchOffsets(req.Group, topics, all, req.Version >= 7 && req.RequireStable)
	if code != 0 {
		if req.Version >= 2 {
			resp.ErrorCode = code
			return resp
		}
		// v0 and v1 have no group-level error: every partition carries it.
		fetched = unknownOffsets(topics)
	}
	for _, ft := range fetched {
		t := kmsg.NewOffsetFetchResponseTopic()
		t.Topic = ft.topic
		for _, fp := range ft.partitions {
			p := kmsg.NewOffsetFetchResponseTopicPartition()
			p.Partition = fp.partition
			p.Offset = fp.entry.offset
			p.LeaderEpoch = fp.entry.leaderEpoch
			p.Metadata = &fp.entry.metadata
			p.ErrorCode = code
			if code == 0 {
				p.ErrorCode = fp.code
			}
			t.Partitions = append(t.Partitions, p)
		}
		resp.Topics = append(resp.Topics, t)
	}
	return resp
}

// fetchOffsets returns the committed offsets of the requested partitions, or of all of them;
// with requireStable, those with a pending transactional offset are marked unstable instead.
func (c *Coordinator) fetchOffsets(name string, topics []fetchTopic, all, requireStable bool) ([]fetchedTopic, int16) {
	if !c.enter() {
		return nil, kerr.CoordinatorNotAvailable.Code
	}
	defer c.exit()
	g := c.lockGroup(name)
	if g == nil {
		if all {
			return nil, 0
		}
		return unknownOffsets(topics), 0
	}
	defer g.mu.Unlock()
	var out []fetchedTopic
	if all {
		for _, t := range sortedTopics(g.offsets) {
			ft := fetchedTopic{topic: t}
			for _, p := range sortedPartitions(g.offsets[t]) {
				ft.partitions = append(ft.partitions, fetchedPartition{partition: p, entry: g.offsets[t][p]})
			}
			out = append(out, ft)
		}
	} else {
		out = unknownOffsets(topics)
		for i, t := range topics {
			for j, p := range t.partitions {
				if e, ok := g.offsets[t.topic][p]; ok {
					out[i].partitions[j].entry = e
				}
			}
		}
	}
	if requireStable && len(g.txnOffsets) > 0 {
		for i := range out {
			for j := range out[i].partitions {
				if fp := &out[i].partitions[j]; g.hasPendingOffset(out[i].topic, fp.partition) {
					*fp = fetchedPartition{partition: fp.partition, entry: offsetEntry{offset: -1, leaderEpoch: -1}, code: kerr.UnstableOffsetCommit.Code}
				}
			}
		}
	}
	return out, 0
}

// unknownOffsets answers topics as if nothing were committed.
func unknownOffsets(topics []fetchTopic) []fetchedTopic {
	out := make([]fetchedTopic, len(topics))
	for i, t := range topics {
		out[i] = fetchedTopic{topic: t.topic, partitions: make([]fetchedPartition, len(t.partitions))}
		for j, p := range t.partitions {
			out[i].partitions[j] = fetchedPartition{partition: p, entry: offsetEntry{offset: -1, leaderEpoch: -1}}
		}
	}
	return out
}

// OffsetDelete handles an OffsetDelete request (v0). The offsets of an Empty group may all be
// deleted; in a group with members, only those of topics no member subscribes to, and only if
// the group uses the consumer protocol, whose subscriptions can be read (NON_EMPTY_GROUP
// otherwise). Deletions are written to the OffsetsTopic as tombstones, which also delete the
// partition's pending transactional offsets, as in Kafka.
func (c *Coordinator) OffsetDelete(ctx context.Context, req *kmsg.OffsetDeleteRequest) *kmsg.OffsetDeleteResponse {
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	if !c.enter() {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	defer c.exit()
	g := c.lockGroup(req.Group)
	if g == nil {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp
	}
	defer g.mu.Unlock()

	var subscribed map[string]bool // nil: every topic counts as subscribed
	if g.state != stateEmpty {
		if g.protocolType != "consumer" {
			resp.ErrorCode = kerr.NonEmptyGroup.Code
			return resp
		}
		subscribed = g.subscribedTopics()
	}

	type deletion struct {
		p     *kmsg.OffsetDeleteResponseTopicPartition
		topic string
		part  int32
	}
	var (
		dels []deletion
		recs []Record
	)
	resp.Topics = make([]kmsg.OffsetDeleteResponseTopic, len(req.Topics))
	for i, rt := range req.Topics {
		t := kmsg.NewOffsetDeleteResponseTopic()
		t.Topic = rt.Topic
		t.Partitions = make([]kmsg.OffsetDeleteResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			p := &t.Partitions[j]
			*p = kmsg.NewOffsetDeleteResponseTopicPartition()
			p.Partition = rp.Partition
			switch {
			case c.cfg.PartitionExists != nil && !c.cfg.PartitionExists(rt.Topic, rp.Partition):
				p.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case g.state != stateEmpty && (subscribed == nil || subscribed[rt.Topic]):
				p.ErrorCode = kerr.GroupSubscribedToTopic.Code
			default:
				dels = append(dels, deletion{p: p, topic: rt.Topic, part: rp.Partition})
				if _, ok := g.offsets[rt.Topic][rp.Partition]; ok || g.hasPendingOffset(rt.Topic, rp.Partition) {
					recs = append(recs, Record{Key: offsetCommitKey(g.name, rt.Topic, rp.Partition)})
				}
			}
		}
		resp.Topics[i] = t
	}
	if err := c.append(ctx, g, recs); err != nil {
		c.log.Warn("could not persist offset deletion", slog.String("group", g.name), slog.Any("error", err))
		code := storeErrCode(err)
		for _, d := range dels {
			d.p.ErrorCode = code
		}
		return resp
	}
	for _, d := range dels {
		g.deleteOffset(d.topic, d.part)
	}
	return resp
}

// subscribedTopics returns the topics the members subscribe to under the consumer protocol,
// or nil if that cannot be told (no protocol chosen yet, or metadata that does not parse), in
// which case the caller must assume every topic is subscribed.
func (g *group) subscribedTopics() map[string]bool {
	if g.protocol == "" {
		return nil
	}
	topics := make(map[string]bool)
	for _, m := range g.order {
		var md kmsg.ConsumerMemberMetadata
		if err := md.ReadFrom(m.metadata(g.protocol)); err != nil {
			return nil
		}
		for _, t := range md.Topics {
			topics[t] = true
		}
	}
	return topics
}

func (g *group) setOffset(topic string, partition int32, e offsetEntry) {
	setEntry(g.offsets, topic, partition, e)
}

func setEntry(offsets map[string]map[int32]offsetEntry, topic string, partition int32, e offsetEntry) {
	parts := offsets[topic]
	if parts == nil {
		parts = make(map[int32]offsetEntry)
		offsets[topic] = parts
	}
	parts[partition] = e
}

// deleteOffset forgets the partition's committed offset and, as Kafka does when it meets a
// tombstone, every pending transactional offset for it: a deletion is a fact of the log that
// a later commit marker must not undo.
func (g *group) deleteOffset(topic string, partition int32) {
	deleteEntry(g.offsets, topic, partition)
	for pid, offsets := range g.txnOffsets {
		deleteEntry(offsets, topic, partition)
		if len(offsets) == 0 {
			delete(g.txnOffsets, pid)
		}
	}
}

func deleteEntry(offsets map[string]map[int32]offsetEntry, topic string, partition int32) {
	parts := offsets[topic]
	delete(parts, partition)
	if len(parts) == 0 {
		delete(offsets, topic)
	}
}

func sortedTopics(offsets map[string]map[int32]offsetEntry) []string {
	return slices.Sorted(maps.Keys(offsets))
}

func sortedPartitions(parts map[int32]offsetEntry) []int32 {
	return slices.Sorted(maps.Keys(parts))
}
