package kafka

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The co-partitioning balance strategy.
//
// A stateful processor keeps, for partition p, a table partition that the
// records of partition p of every input (and of the joined tables'
// changelogs) update or read. So a group's topics are assigned together:
// a member owns a set of partition numbers, and gets partition p of every
// topic the group consumes for each p it owns. The strategy also keeps
// partitions where they are, because a partition that moves has to have its
// table restored on its new owner:
//
//   - Balance: with N partitions and M members, every member owns N/M or
//     N/M+1 partitions.
//   - Stickiness: each member tells the leader, in its subscription's user
//     data, the partitions it owned in the last generation it took part in.
//     The members that own the most get the N%M larger shares, and each
//     member keeps as many of its partitions as its share allows; only the
//     rest move. So a joining member takes partitions only from members
//     above their new share, and a leaving member's partitions are spread
//     over the others without anything else moving.
//   - Determinism: the plan depends only on the members' ids, their owned
//     partitions and the partition count, never on map order.
//
// A partition claimed by two members (one of them back from a generation it
// missed) goes to the claim of the later generation, then to the lower
// member id.
//
// Every member must subscribe to the same topics and those topics must have
// the same partition count; anything else is an error, which fails the
// rebalance on the leader and so Join.

// ErrNotCopartitioned is matched by Join's error when the group's members
// subscribe to different topics or its topics' partition counts differ, so
// that no co-partitioned assignment exists.
var ErrNotCopartitioned = errors.New("not co-partitioned")

// copartitionStrategyName is the protocol name members agree on in
// JoinGroup. Members of one group must all use this strategy.
const copartitionStrategyName = "runnel-copartition"

// copartitionBalancer is the strategy as a kgo.GroupBalancer. It speaks
// Kafka's consumer protocol (so that tools can read the members'
// subscriptions and assignments), with the owned partitions in the
// subscription's user data. kgo tells JoinGroupMetadata what the member
// owns, but forgets it after a failed session; the balancer remembers the
// member's last assignment itself (remember), for one Join.
type copartitionBalancer struct {
	log *slog.Logger

	mu         sync.Mutex
	owned      []int32 // partition numbers of the last assignment
	generation int32   // generation of that assignment
}

// remember records the member's assignment in generation, for its next
// subscription.
func (b *copartitionBalancer) remember(owned []int32, generation int32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.owned, b.generation = slices.Clone(owned), generation
}

var _ kgo.GroupBalancer = (*copartitionBalancer)(nil)

// ProtocolName implements kgo.GroupBalancer.
func (b *copartitionBalancer) ProtocolName() string { return copartitionStrategyName }

// IsCooperative implements kgo.GroupBalancer: the group rebalances eagerly.
func (b *copartitionBalancer) IsCooperative() bool { return false }

// JoinGroupMetadata implements kgo.GroupBalancer: it tells the leader the
// topics and what this member owned.
func (b *copartitionBalancer) JoinGroupMetadata(topics []string, current map[string][]int32, generation int32) []byte {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = topics
	sub := subscription{owned: assignedPartitions(current), generation: generation}
	b.mu.Lock()
	if len(sub.owned) == 0 && len(b.owned) > 0 {
		sub = subscription{owned: b.owned, generation: b.generation}
	}
	b.mu.Unlock()
	meta.UserData = encodeSubscription(sub)
	return meta.AppendTo(nil)
}

// ParseSyncAssignment implements kgo.GroupBalancer.
func (b *copartitionBalancer) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	var a kmsg.ConsumerMemberAssignment
	if err := a.ReadFrom(assignment); err != nil {
		return nil, fmt.Errorf("read assignment: %w", err)
	}
	out := make(map[string][]int32, len(a.Topics))
	for _, t := range a.Topics {
		out[t.Topic] = t.Partitions
	}
	return out, nil
}

// MemberBalancer implements kgo.GroupBalancer. It runs on the group leader.
func (b *copartitionBalancer) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	cb, err := kgo.NewConsumerBalancer(b, members)
	if err != nil {
		return nil, nil, err
	}
	return cb, cb.MemberTopics(), nil
}

// Balance implements kgo.ConsumerBalancerBalance: the plan, from what
// every member subscribes to and owns.
func (b *copartitionBalancer) Balance(cb *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	var ms []memberState
	byID := map[string]*kmsg.JoinGroupResponseMember{}
	cb.EachMember(func(member *kmsg.JoinGroupResponseMember, meta *kmsg.ConsumerMemberMetadata) {
		m := memberState{id: member.MemberID, topics: slices.Sorted(slices.Values(meta.Topics)), generation: -1}
		if sub, err := decodeSubscription(meta.UserData); err == nil {
			m.owned, m.generation = sub.owned, sub.generation
		} else {
			// A member that does not say what it owns is planned as owning
			// nothing: it costs stickiness, not correctness.
			b.log.Warn("group member's subscription data is unreadable", "member", member.MemberID, "err", err)
		}
		ms = append(ms, m)
		byID[member.MemberID] = member
	})
	plan := cb.NewPlan()
	assigned, err := planCopartitioned(ms, topics)
	if err != nil {
		cb.SetError(err)
		return plan
	}
	for id, parts := range assigned {
		for t := range topics {
			plan.AddPartitions(byID[id], t, parts)
		}
	}
	b.log.Info("planned group assignment", "members", len(ms), "assignment", assignedString(assigned))
	return plan
}

// assignedPartitions returns the partition numbers of an assignment, sorted
// and without duplicates.
func assignedPartitions(claims map[string][]int32) []int32 {
	var ps []int32
	for _, t := range claims {
		ps = append(ps, t...)
	}
	slices.Sort(ps)
	return slices.Compact(ps)
}

// memberState is what the planner knows of a member.
type memberState struct {
	id         string
	topics     []string // sorted
	owned      []int32  // partitions owned in generation
	generation int32
}

// planCopartitioned assigns partition numbers to members, as described
// above. counts gives every subscribed topic's partition count. Every member
// appears in the result, with no partitions if there are more members than
// partitions.
func planCopartitioned(members []memberState, counts map[string]int32) (map[string][]int32, error) {
	if len(members) == 0 {
		return map[string][]int32{}, nil
	}
	members = slices.Clone(members)
	slices.SortFunc(members, func(a, b memberState) int { return strings.Compare(a.id, b.id) })
	for _, m := range members[1:] {
		if !slices.Equal(m.topics, members[0].topics) {
			return nil, fmt.Errorf("%w: group members subscribe to different topics: %s to %v, %s to %v",
				ErrNotCopartitioned, members[0].id, members[0].topics, m.id, m.topics)
		}
	}
	n, err := commonPartitionCount(counts)
	if err != nil {
		return nil, err
	}

	// Resolve who owns each partition now.
	owner := make([]int, n) // index into members, or -1
	ownerGen := make([]int32, n)
	for p := range owner {
		owner[p] = -1
	}
	for i, m := range members { // in id order, so ties go to the lower id
		for _, p := range m.owned {
			if p < 0 || p >= n {
				continue // the topics shrank, or the data is stale
			}
			if owner[p] < 0 || m.generation > ownerGen[p] {
				owner[p], ownerGen[p] = i, m.generation
			}
		}
	}
	owns := make([][]int32, len(members))
	for p, i := range owner {
		if i >= 0 {
			owns[i] = append(owns[i], int32(p))
		}
	}

	// Shares: the members that own the most get the larger ones.
	byOwned := make([]int, len(members))
	for i := range byOwned {
		byOwned[i] = i
	}
	slices.SortStableFunc(byOwned, func(a, b int) int { return cmp.Compare(len(owns[b]), len(owns[a])) })
	quota := make([]int, len(members))
	base, extra := int(n)/len(members), int(n)%len(members)
	for rank, i := range byOwned {
		quota[i] = base
		if rank < extra {
			quota[i]++
		}
	}

	// Keep what the shares allow; pool the rest with the unowned.
	assigned := make(map[string][]int32, len(members))
	kept := make([]bool, n)
	for i, m := range members {
		keep := owns[i][:min(len(owns[i]), quota[i])]
		for _, p := range keep {
			kept[p] = true
		}
		assigned[m.id] = slices.Clone(keep)
	}
	var pool []int32
	for p := range kept {
		if !kept[p] {
			pool = append(pool, int32(p))
		}
	}
	for i, m := range members {
		take := min(quota[i]-len(assigned[m.id]), len(pool))
		assigned[m.id] = append(assigned[m.id], pool[:take]...)
		pool = pool[take:]
		slices.Sort(assigned[m.id])
	}
	return assigned, nil
}

// commonPartitionCount returns the partition count all topics share.
func commonPartitionCount(counts map[string]int32) (int32, error) {
	topics := slices.Sorted(maps.Keys(counts))
	if len(topics) == 0 {
		return 0, fmt.Errorf("%w: no topics", ErrNotCopartitioned)
	}
	n := counts[topics[0]]
	for _, t := range topics[1:] {
		if counts[t] != n {
			return 0, fmt.Errorf("%w: topics %s and %s have %d and %d partitions; co-partitioned topics need the same count",
				ErrNotCopartitioned, topics[0], t, n, counts[t])
		}
	}
	return n, nil
}

// assignedString renders a plan for the log: member: partitions, by id.
func assignedString(assigned map[string][]int32) string {
	var b strings.Builder
	for i, id := range slices.Sorted(maps.Keys(assigned)) {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %v", id, assigned[id])
	}
	return b.String()
}

// subscription is the strategy's user data in a member's JoinGroup: the
// partitions it owned, and in which generation.
//
// Encoding, big-endian: version int8 (0), generation int32, count int32,
// then count partition numbers as int32.
type subscription struct {
	owned      []int32
	generation int32
}

func encodeSubscription(s subscription) []byte {
	b := make([]byte, 0, 9+4*len(s.owned))
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(s.generation))
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.owned)))
	for _, p := range s.owned {
		b = binary.BigEndian.AppendUint32(b, uint32(p))
	}
	return b
}

func decodeSubscription(b []byte) (subscription, error) {
	if len(b) == 0 {
		return subscription{generation: -1}, nil // no data: owns nothing
	}
	if b[0] != 0 {
		return subscription{}, fmt.Errorf("subscription data version %d, want 0", b[0])
	}
	if len(b) < 9 {
		return subscription{}, fmt.Errorf("subscription data of %d bytes is too short", len(b))
	}
	s := subscription{generation: int32(binary.BigEndian.Uint32(b[1:]))}
	count := binary.BigEndian.Uint32(b[5:])
	b = b[9:]
	if uint64(len(b)) != 4*uint64(count) {
		return subscription{}, fmt.Errorf("subscription data holds %d bytes for %d partitions", len(b), count)
	}
	s.owned = make([]int32, count)
	for i := range s.owned {
		s.owned[i] = int32(binary.BigEndian.Uint32(b[4*i:]))
	}
	return s, nil
}
