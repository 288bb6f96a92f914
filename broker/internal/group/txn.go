package group

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Transactional offsets follow Kafka's group coordinator. TxnOffsetCommit writes ordinary
// offset commit records, but as a transactional batch of the producer (Store.AppendTxn), and
// keeps them pending per (group, producer id). The broker's transaction coordinator ends the
// transaction by writing a marker into the group's OffsetsTopic partition, and once that is
// durable the broker calls CompleteTxn: on commit each pending offset becomes the committed
// one unless a plain commit of the same partition came later in the log; on abort they are
// dropped. A tombstone (OffsetDelete, DeleteGroups) removes pending offsets along with the
// committed one. Replay follows the log, record by record and marker by marker, and so arrives
// at the same state.

// TxnOffsetCommit handles a TxnOffsetCommit request (v0–v5; v6 names topics by id and is
// answered UNSUPPORTED_VERSION). The broker has already checked with the transaction
// coordinator that the producer may commit offsets for the group in its current transaction.
// From v3 the request carries the member's generation, member id and instance id, which are
// checked as OffsetCommit checks them unless the generation is -1; unlike OffsetCommit a
// transactional commit is allowed during a rebalance and from a client that is not a member
// (the older versions carry no identity at all), as in Kafka. The offsets are written with
// Store.AppendTxn before the request is answered and stay invisible to OffsetFetch until
// CompleteTxn commits them.
func (c *Coordinator) TxnOffsetCommit(ctx context.Context, req *kmsg.TxnOffsetCommitRequest) *kmsg.TxnOffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	resp.Topics = make([]kmsg.TxnOffsetCommitResponseTopic, len(req.Topics))
	for i, rt := range req.Topics {
		t := kmsg.NewTxnOffsetCommitResponseTopic()
		t.Topic = rt.Topic
		t.TopicID = rt.TopicID
		t.Partitions = make([]kmsg.TxnOffsetCommitResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			p := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			p.Partition = rp.Partition
			t.Partitions[j] = p
		}
		resp.Topics[i] = t
	}
	setAll := func(code int16) {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				if p := &resp.Topics[i].Partitions[j]; p.ErrorCode == 0 {
					p.ErrorCode = code
				}
			}
		}
	}
	if req.Version >= 6 {
		setAll(kerr.UnsupportedVersion.Code)
		return resp
	}
	if !c.enter() {
		setAll(kerr.CoordinatorNotAvailable.Code)
		return resp
	}
	defer c.exit()
	if c.cfg.PartitionExists != nil {
		for i, rt := range req.Topics {
			for j, rp := range rt.Partitions {
				if !c.cfg.PartitionExists(rt.Topic, rp.Partition) {
					resp.Topics[i].Partitions[j].ErrorCode = kerr.UnknownTopicOrPartition.Code
				}
			}
		}
	}

	generation, memberID, instanceID := int32(-1), "", ""
	if req.Version >= 3 {
		generation, memberID, instanceID = req.Generation, req.MemberID, deref(req.InstanceID)
	}
	g := c.lockGroup(req.Group)
	if g == nil {
		if generation >= 0 {
			setAll(kerr.IllegalGeneration.Code)
			return resp
		}
		g = c.lockOrCreateGroup(req.Group)
	}
	defer func() {
		c.forgetIfVacant(g)
		g.mu.Unlock()
	}()
	if code := g.validateTxnCommit(generation, memberID, instanceID); code != 0 {
		setAll(code)
		return resp
	}

	type commit struct {
		p     *kmsg.TxnOffsetCommitResponseTopicPartition
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
			if req.Version < 2 {
				e.leaderEpoch = -1
			}
			topic := strings.Clone(rt.Topic)
			commits = append(commits, commit{p: p, topic: topic, part: rp.Partition, entry: e})
			recs = append(recs, Record{Key: offsetCommitKey(g.name, topic, rp.Partition), Value: offsetCommitValue(e)})
		}
	}
	if len(recs) == 0 {
		return resp
	}
	// Registered before the write, so that a CompleteTxn for this producer that runs while
	// the write is in progress visits the group; it then waits for the group's lock.
	c.noteTxnGroup(req.ProducerID, g.name)
	if err := c.appendTxn(ctx, g, req.ProducerID, req.ProducerEpoch, recs); err != nil {
		c.log.Warn("could not persist transactional offset commit", slog.String("group", g.name),
			slog.Int64("producer_id", req.ProducerID), slog.Any("error", err))
		code := storeErrCode(err)
		for _, cm := range commits {
			cm.p.ErrorCode = code
		}
		return resp
	}
	for _, cm := range commits {
		cm.entry.seq = c.nextSeq()
		g.setTxnOffset(req.ProducerID, cm.topic, cm.part, cm.entry)
	}
	return resp
}

// validateTxnCommit decides whether a transactional commit with the given identity may
// proceed, by Kafka's rules for TxnOffsetCommit: anyone may commit for an Empty group with
// generation -1, and so may a client that gives no identity at all; an identity given must be
// a current member of the current generation.
func (g *group) validateTxnCommit(generation int32, memberID, instanceID string) int16 {
	if generation < 0 && g.state == stateEmpty {
		return 0
	}
	if generation < 0 && memberID == "" && instanceID == "" {
		return 0
	}
	if instanceID != "" {
		cur, ok := g.static[instanceID]
		if !ok {
			return kerr.UnknownMemberID.Code
		}
		if cur != memberID {
			return kerr.FencedInstanceID.Code
		}
	}
	if g.members[memberID] == nil {
		return kerr.UnknownMemberID.Code
	}
	if generation != g.generation {
		return kerr.IllegalGeneration.Code
	}
	return 0
}

// appendTxn writes recs for g as a transactional batch of pid, as append writes plain ones.
func (c *Coordinator) appendTxn(ctx context.Context, g *group, pid int64, epoch int16, recs []Record) error {
	if c.cfg.Store == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(c.storeCtx, cancel)
	defer stop()
	if err := c.cfg.Store.AppendTxn(ctx, g.name, pid, epoch, recs); err != nil {
		return fmt.Errorf("group %q: append %d transactional record(s) of producer %d to %s: %w", g.name, len(recs), pid, OffsetsTopic, err)
	}
	return nil
}

// CompleteTxn ends producer pid's transaction in the group coordinator: its pending offsets,
// in every group, become the committed ones if commit is true (each unless a plain commit of
// the same partition was written after it), and are dropped otherwise. The broker calls it
// once pid's marker is durable in the OffsetsTopic, and before the transaction's EndTxn is
// answered, so that the producer's next transaction cannot commit offsets first. A producer
// with nothing pending is a no-op, so repeated markers are harmless.
func (c *Coordinator) CompleteTxn(pid int64, commit bool) {
	if !c.enter() {
		return
	}
	defer c.exit()
	c.completeTxn(pid, commit)
}

// LoadMarker applies, during replay, a commit or abort marker of producer pid found in the
// OffsetsTopic, as CompleteTxn does live. Pending offsets read by LoadTxn before it and not
// followed by any marker stay pending, as they were before the restart.
func (c *Coordinator) LoadMarker(pid int64, commit bool) {
	if !c.enter() {
		return
	}
	defer c.exit()
	c.completeTxn(pid, commit)
}

func (c *Coordinator) completeTxn(pid int64, commit bool) {
	c.txnMu.Lock()
	names := c.txnGroups[pid]
	delete(c.txnGroups, pid)
	c.txnMu.Unlock()
	for name := range names {
		g := c.lockGroup(name)
		if g == nil {
			continue
		}
		n := g.completeTxn(pid, commit)
		c.forgetIfVacant(g)
		g.mu.Unlock()
		if n > 0 {
			c.log.Debug("completed transactional offsets", slog.String("group", name),
				slog.Int64("producer_id", pid), slog.Bool("commit", commit), slog.Int("partitions", n))
		}
	}
}

// LoadTxn applies, during replay, one record of a transactional batch of producer pid found in
// the OffsetsTopic: an offset commit becomes pending for pid until LoadMarker ends the
// transaction. Any other record (a tombstone, which Kafka never writes transactionally) is
// applied as Load applies it. Errors are Load's.
func (c *Coordinator) LoadTxn(pid int64, key, value []byte) error {
	if len(key) < 2 || value == nil {
		return c.Load(key, value)
	}
	if version := int16(binary.BigEndian.Uint16(key)); version != 0 && version != 1 {
		return c.Load(key, value)
	}
	if !c.enter() {
		return ErrClosed
	}
	defer c.exit()
	var k kmsg.OffsetCommitKey
	if err := k.ReadFrom(key); err != nil {
		return fmt.Errorf("group: load: transactional offset commit key: %w", err)
	}
	e, err := decodeOffsetValue(&k, value)
	if err != nil {
		return err
	}
	g := c.lockOrCreateGroup(k.Group)
	defer g.mu.Unlock()
	c.noteTxnGroup(pid, g.name)
	e.seq = c.nextSeq()
	g.setTxnOffset(pid, k.Topic, k.Partition, e)
	return nil
}

// noteTxnGroup records that group may hold pending offsets of pid.
func (c *Coordinator) noteTxnGroup(pid int64, group string) {
	c.txnMu.Lock()
	defer c.txnMu.Unlock()
	names := c.txnGroups[pid]
	if names == nil {
		names = make(map[string]bool)
		c.txnGroups[pid] = names
	}
	names[group] = true
}

// setTxnOffset makes e pid's pending offset for the partition; a later commit of the same
// transaction replaces an earlier one, as it comes later in the log.
func (g *group) setTxnOffset(pid int64, topic string, partition int32, e offsetEntry) {
	offsets := g.txnOffsets[pid]
	if offsets == nil {
		offsets = make(map[string]map[int32]offsetEntry)
		g.txnOffsets[pid] = offsets
	}
	setEntry(offsets, topic, partition, e)
}

// completeTxn commits or drops pid's pending offsets and returns how many there were. A
// committed offset takes effect only if its record is later in the log than the partition's
// current committed offset: a plain commit written after the transactional one wins, as in
// Kafka, whatever the order in which the two became visible.
func (g *group) completeTxn(pid int64, commit bool) int {
	offsets := g.txnOffsets[pid]
	delete(g.txnOffsets, pid)
	n := 0
	for topic, parts := range offsets {
		for p, e := range parts {
			n++
			if !commit {
				continue
			}
			if cur, ok := g.offsets[topic][p]; !ok || e.seq > cur.seq {
				g.setOffset(topic, p, e)
			}
		}
	}
	return n
}

// hasPendingOffset reports whether some open transaction has an offset for the partition.
func (g *group) hasPendingOffset(topic string, partition int32) bool {
	for _, offsets := range g.txnOffsets {
		if _, ok := offsets[topic][partition]; ok {
			return true
		}
	}
	return false
}

// pendingOnly returns the partitions with a pending offset but no committed one, sorted.
func (g *group) pendingOnly() []fetchTopic {
	parts := make(map[string]map[int32]offsetEntry)
	for _, offsets := range g.txnOffsets {
		for t, ps := range offsets {
			for p := range ps {
				if _, ok := g.offsets[t][p]; !ok {
					setEntry(parts, t, p, offsetEntry{})
				}
			}
		}
	}
	var out []fetchTopic
	for _, t := range sortedTopics(parts) {
		out = append(out, fetchTopic{topic: t, partitions: sortedPartitions(parts[t])})
	}
	return out
}
