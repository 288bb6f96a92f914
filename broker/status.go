package broker

import (
	"cmp"
	"context"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker/internal/group"
)

// Status is a snapshot of what a broker holds: its topics with their
// partitions' offsets and sizes, and its consumer groups with their members
// and lag. It is for monitoring (runnel serve's monitor page serves it as
// JSON, with these field tags); each partition and each group is read
// consistently on its own, not all of them at one instant.
type Status struct {
	ClusterID string        `json:"cluster_id"`
	NodeID    int32         `json:"node_id"`
	Addr      string        `json:"addr"` // the address listened on
	Topics    []TopicStatus `json:"topics"`
	Groups    []GroupStatus `json:"groups"`
	// Transactions are the transactions open now (Ongoing, PrepareCommit or
	// PrepareAbort), oldest first: one that stays here long holds back
	// every read_committed consumer of its partitions.
	Transactions []TransactionStatus `json:"transactions"`
}

// TransactionStatus is one open transaction of a Status.
type TransactionStatus struct {
	TransactionalID string `json:"transactional_id"`
	ProducerID      int64  `json:"producer_id"`
	ProducerEpoch   int16  `json:"producer_epoch"`
	// State is Kafka's name for it: Ongoing, PrepareCommit or PrepareAbort.
	State string `json:"state"`
	// StartedMs is when the transaction began (Unix milliseconds), and
	// TimeoutMs how long it may stay open before the broker aborts it.
	StartedMs int64 `json:"started_ms"`
	TimeoutMs int32 `json:"timeout_ms"`
	// Partitions are those the transaction wrote to or committed offsets in.
	Partitions []TopicPartitions `json:"partitions"`
}

// TopicStatus is one topic of a Status.
type TopicStatus struct {
	Name string `json:"name"`
	// Internal marks the broker's own topics (__consumer_offsets), which
	// clients may read but not write.
	Internal   bool              `json:"internal"`
	Partitions []PartitionStatus `json:"partitions"`
	// SizeBytes is the sum of the partitions' sizes.
	SizeBytes int64 `json:"size_bytes"`
}

// PartitionStatus is one partition of a TopicStatus.
type PartitionStatus struct {
	Partition      int32 `json:"partition"`
	LogStartOffset int64 `json:"log_start_offset"`
	// HighWatermark is the end of what consumers can read: below
	// LogEndOffset only while the last appends are not yet durable.
	HighWatermark int64 `json:"high_watermark"`
	// LastStableOffset is the end of what read_committed consumers can
	// read: below HighWatermark while a transaction is open here.
	LastStableOffset int64 `json:"last_stable_offset"`
	LogEndOffset     int64 `json:"log_end_offset"`
	// SizeBytes is what the partition's segments hold on disk.
	SizeBytes int64 `json:"size_bytes"`
}

// GroupStatus is one consumer group of a Status.
type GroupStatus struct {
	Group string `json:"group"`
	// State is the group's state as DescribeGroups reports it: Empty,
	// PreparingRebalance, CompletingRebalance or Stable.
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	// Protocol is the assignment protocol chosen; empty unless Stable.
	Protocol   string         `json:"protocol"`
	Generation int32          `json:"generation"`
	Members    []MemberStatus `json:"members"`
	// Offsets has a row for every partition the group has committed an
	// offset for or assigned to a member, sorted by topic and partition.
	Offsets []GroupOffsetStatus `json:"offsets"`
}

// MemberStatus is one member of a GroupStatus.
type MemberStatus struct {
	MemberID   string `json:"member_id"`
	InstanceID string `json:"instance_id,omitempty"` // static members only
	ClientID   string `json:"client_id"`
	ClientHost string `json:"client_host"`
	// Assignments are the member's partitions, when the group is Stable and
	// uses the consumer protocol, whose assignments the broker can read.
	Assignments []TopicPartitions `json:"assignments"`
}

// TopicPartitions are partitions of one topic.
type TopicPartitions struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

// GroupOffsetStatus is a group's position in one partition.
type GroupOffsetStatus struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Committed is the committed offset, nil if the group has none here.
	Committed *int64 `json:"committed"`
	// LogStartOffset and HighWatermark are the partition's; both -1 if the
	// partition does not exist (its topic was deleted after the commit).
	LogStartOffset int64 `json:"log_start_offset"`
	HighWatermark  int64 `json:"high_watermark"`
	// Lag is how many readable records lie past the committed offset (past
	// the log start without one), as kadm and Kafka's tools count it; -1 if
	// the partition does not exist.
	Lag int64 `json:"lag"`
	// MemberID is the member the partition is assigned to, if any.
	MemberID string `json:"member_id,omitempty"`
}

// Status returns a snapshot of the broker's topics and groups. It takes
// each partition's and each group's lock briefly, one at a time, and never
// waits on I/O, so it may be called as often as a monitor refreshes.
func (b *Broker) Status() Status {
	st := Status{
		ClusterID: b.ClusterID(),
		NodeID:    b.cfg.NodeID,
		Addr:      b.Addr(),
		Topics:    []TopicStatus{},
		Groups:    []GroupStatus{},

		Transactions: b.openTransactions(),
	}
	for _, t := range b.log.Topics() {
		ts := TopicStatus{Name: t.Name(), Internal: isInternal(t.Name()), Partitions: []PartitionStatus{}}
		for _, p := range t.Partitions() {
			start, hw, leo := p.Offsets()
			size := p.Size()
			ts.Partitions = append(ts.Partitions, PartitionStatus{
				Partition: p.Index(), LogStartOffset: start, HighWatermark: hw, LastStableOffset: min(p.LastStableOffset(), hw),
				LogEndOffset: leo, SizeBytes: size,
			})
			ts.SizeBytes += size
		}
		st.Topics = append(st.Topics, ts)
	}
	for _, g := range b.groups.Snapshot() {
		st.Groups = append(st.Groups, b.groupStatus(g))
	}
	return st
}

// groupStatus adds the members' assignments and the partitions' offsets to
// a group's snapshot.
func (b *Broker) groupStatus(g group.GroupInfo) GroupStatus {
	gs := GroupStatus{
		Group: g.Name, State: g.State, ProtocolType: g.ProtocolType, Protocol: g.Protocol,
		Generation: g.Generation, Members: []MemberStatus{}, Offsets: []GroupOffsetStatus{},
	}
	type tp struct {
		topic     string
		partition int32
	}
	rows := map[tp]*GroupOffsetStatus{}
	row := func(topic string, partition int32) *GroupOffsetStatus {
		k := tp{topic, partition}
		if rows[k] == nil {
			rows[k] = &GroupOffsetStatus{Topic: topic, Partition: partition}
		}
		return rows[k]
	}
	for _, m := range g.Members {
		ms := MemberStatus{MemberID: m.ID, InstanceID: m.InstanceID, ClientID: m.ClientID, ClientHost: m.ClientHost,
			Assignments: []TopicPartitions{}}
		for _, a := range consumerAssignment(g.ProtocolType, m.Assignment) {
			ms.Assignments = append(ms.Assignments, a)
			for _, p := range a.Partitions {
				row(a.Topic, p).MemberID = m.ID
			}
		}
		gs.Members = append(gs.Members, ms)
	}
	for _, o := range g.Offsets {
		row(o.Topic, o.Partition).Committed = &o.Offset
	}
	for _, r := range rows {
		r.LogStartOffset, r.HighWatermark, r.Lag = -1, -1, -1
		if p, err := b.log.Partition(r.Topic, r.Partition); err == nil {
			start, hw, _ := p.Offsets()
			r.LogStartOffset, r.HighWatermark = start, hw
			from := start
			if r.Committed != nil {
				from = *r.Committed
			}
			r.Lag = max(hw-from, 0)
		}
		gs.Offsets = append(gs.Offsets, *r)
	}
	slices.SortFunc(gs.Offsets, func(x, y GroupOffsetStatus) int {
		return cmp.Or(strings.Compare(x.Topic, y.Topic), cmp.Compare(x.Partition, y.Partition))
	})
	return gs
}

// consumerAssignment decodes a member's assignment under the consumer
// protocol, sorted by topic; it returns nil for other protocol types, whose
// assignments are opaque to the broker, and for bytes that do not decode.
func consumerAssignment(protocolType string, b []byte) []TopicPartitions {
	if protocolType != "consumer" || len(b) == 0 {
		return nil
	}
	var a kmsg.ConsumerMemberAssignment
	if err := a.ReadFrom(b); err != nil {
		return nil
	}
	tps := make([]TopicPartitions, 0, len(a.Topics))
	for _, t := range a.Topics {
		tps = append(tps, TopicPartitions{Topic: t.Topic, Partitions: slices.Sorted(slices.Values(t.Partitions))})
	}
	slices.SortFunc(tps, func(x, y TopicPartitions) int { return strings.Compare(x.Topic, y.Topic) })
	return tps
}

// openTransactions asks the transaction coordinator, as an operator's
// ListTransactions and DescribeTransactions would, for the open
// transactions.
func (b *Broker) openTransactions() []TransactionStatus {
	out := []TransactionStatus{}
	ctx := context.Background()
	lreq := kmsg.NewPtrListTransactionsRequest()
	lreq.StateFilters = []string{"Ongoing", "PrepareCommit", "PrepareAbort"}
	listed := b.txns.ListTransactions(ctx, lreq)
	if len(listed.TransactionStates) == 0 {
		return out
	}
	dreq := kmsg.NewPtrDescribeTransactionsRequest()
	for _, ts := range listed.TransactionStates {
		dreq.TransactionalIDs = append(dreq.TransactionalIDs, ts.TransactionalID)
	}
	for _, d := range b.txns.DescribeTransactions(ctx, dreq).TransactionStates {
		if d.ErrorCode != 0 || !slices.Contains(lreq.StateFilters, d.State) {
			continue // ended between the two calls
		}
		ts := TransactionStatus{
			TransactionalID: d.TransactionalID, ProducerID: d.ProducerID, ProducerEpoch: d.ProducerEpoch,
			State: d.State, StartedMs: d.StartTimestamp, TimeoutMs: d.TimeoutMillis, Partitions: []TopicPartitions{},
		}
		for _, tp := range d.Topics {
			ps := slices.Clone(tp.Partitions)
			slices.Sort(ps)
			ts.Partitions = append(ts.Partitions, TopicPartitions{Topic: tp.Topic, Partitions: ps})
		}
		slices.SortFunc(ts.Partitions, func(a, b TopicPartitions) int { return strings.Compare(a.Topic, b.Topic) })
		out = append(out, ts)
	}
	slices.SortFunc(out, func(a, b TransactionStatus) int {
		return cmp.Or(cmp.Compare(a.StartedMs, b.StartedMs), strings.Compare(a.TransactionalID, b.TransactionalID))
	})
	return out
}
