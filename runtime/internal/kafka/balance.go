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
// partitions where their state is, because a partition that moves has to
// have its tables restored on its new owner:
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
//   - State: each member also tells the leader which partitions' stores it
//     holds on disk, and how far they are restored (the sum of their
//     changelog checkpoint offsets: see StateHolder). Of two members
//     holding stores of one partition, the one with the higher sum has that
//     much less of the same changelogs to replay. A partition that moves
//     goes, among the members with room in their share, to the one with the
//     least to replay; and a member above its share gives up first the
//     partitions that another member can take over most cheaply. It is
//     Kafka Streams' idea of assigning tasks by their lag, without warm-up
//     replicas: balance always wins over state, so that a joining member
//     gets its share at once.
//   - Cooperation (KIP-429): the strategy is cooperative. A partition that
//     stays with its member is not revoked, and one that moves is first
//     only taken from its owner; the owner revokes it and rejoins, and the
//     rebalance that follows gives it to its new member (kgo's
//     AdjustCooperative does this on the plan).
//   - Determinism: the plan depends only on the members' ids, their owned
//     and held partitions and the partition count, never on map order.
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
// JoinGroup. Members of one group must all use this strategy. (The name
// predates the strategy's cooperative protocol: a group must not mix
// members of a release that rebalanced eagerly with ones that do not.)
const copartitionStrategyName = "runnel-copartition"

// StateHolder is implemented by a GroupHandler whose partitions have local
// state that is expensive to rebuild. Join's balancer asks it, at every
// join, what the member holds, and tells the group's leader.
type StateHolder interface {
	// HeldState returns, for each partition number whose stores the member
	// holds (open, or closed on disk), the sum of the stores' changelog
	// checkpoint offsets: of two members, the one with the higher sum has
	// less to restore. It must return quickly: it runs inside the join.
	HeldState() map[int32]int64
}

// copartitionBalancer is the strategy as a kgo.GroupBalancer. It speaks
// Kafka's consumer protocol (so that tools can read the members'
// subscriptions and assignments), with the owned partitions in the
// subscription's OwnedPartitions (for the cooperative protocol) and, with
// the held state, in its user data. kgo tells JoinGroupMetadata what the
// member owns, but forgets it after a failed session; the balancer
// remembers the member's last assignment itself (remember), for one Join,
// so that stickiness survives a lost session.
type copartitionBalancer struct {
	log   *slog.Logger
	state StateHolder // nil if the member holds no state

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

// IsCooperative implements kgo.GroupBalancer: the group rebalances
// incrementally (KIP-429).
func (b *copartitionBalancer) IsCooperative() bool { return true }

// JoinGroupMetadata implements kgo.GroupBalancer: it tells the leader the
// topics, what this member owns and what state it holds.
func (b *copartitionBalancer) JoinGroupMetadata(topics []string, current map[string][]int32, generation int32) []byte {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Version = 2 // with OwnedPartitions and Generation
	meta.Topics = topics
	meta.Generation = generation
	for _, t := range slices.Sorted(maps.Keys(current)) {
		op := kmsg.NewConsumerMemberMetadataOwnedPartition()
		op.Topic = t
		op.Partitions = slices.Sorted(slices.Values(current[t]))
		meta.OwnedPartitions = append(meta.OwnedPartitions, op)
	}
	sub := subscription{owned: assignedPartitions(current), generation: generation}
	b.mu.Lock()
	if len(sub.owned) == 0 && len(b.owned) > 0 {
		sub = subscription{owned: b.owned, generation: b.generation}
	}
	b.mu.Unlock()
	if b.state != nil {
		sub.held = b.state.HeldState()
	}
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
// every member subscribes to, owns and holds.
func (b *copartitionBalancer) Balance(cb *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	var ms []memberState
	byID := map[string]*kmsg.JoinGroupResponseMember{}
	cb.EachMember(func(member *kmsg.JoinGroupResponseMember, meta *kmsg.ConsumerMemberMetadata) {
		m := memberState{id: member.MemberID, topics: slices.Sorted(slices.Values(meta.Topics)), generation: -1}
		if sub, err := decodeSubscription(meta.UserData); err == nil {
			m.owned, m.generation, m.held = sub.owned, sub.generation, sub.held
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
	// A partition moving from one member to another is left out of this
	// round: its owner revokes it, rejoins, and the next round gives it.
	plan.AdjustCooperative(cb)
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
	// held maps the partitions whose stores the member holds to the sum
	// of their checkpoints (see StateHolder).
	held map[int32]int64
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

	// lag is how much less of partition p's changelogs member i holds
	// than the member that holds most of them: 0 for the best holder (and
	// for the owner, whose stores are open and current).
	best := make([]int64, n)
	for p := range best {
		best[p] = -1
	}
	for _, m := range members {
		for p, at := range m.held {
			if p >= 0 && p < n {
				best[p] = max(best[p], at)
			}
		}
	}
	lag := func(i int, p int32) int64 {
		if owner[p] == i || best[p] < 0 {
			return 0
		}
		at, ok := members[i].held[p]
		if !ok {
			at = 0 // no store: the whole changelog to replay
		}
		return max(best[p]-at, 0)
	}

	// Shares: the members that own the most get the larger ones, then
	// those that hold the most.
	byOwned := make([]int, len(members))
	for i := range byOwned {
		byOwned[i] = i
	}
	slices.SortStableFunc(byOwned, func(a, b int) int {
		return cmp.Or(cmp.Compare(len(owns[b]), len(owns[a])), cmp.Compare(len(members[b].held), len(members[a].held)))
	})
	quota := make([]int, len(members))
	base, extra := int(n)/len(members), int(n)%len(members)
	for rank, i := range byOwned {
		quota[i] = base
		if rank < extra {
			quota[i]++
		}
	}

	// Keep what the shares allow. A member above its share gives up
	// first the partitions another member with room can take over with
	// the least to replay; among equals, the higher-numbered.
	assigned := make([][]int32, len(members))
	kept := make([]bool, n)
	for i := range members {
		mine := slices.Clone(owns[i])
		if len(mine) > quota[i] {
			moveCost := func(p int32) int64 {
				c := int64(-1)
				for j := range members {
					if j != i && len(owns[j]) < quota[j] {
						if l := lag(j, p); c < 0 || l < c {
							c = l
						}
					}
				}
				return c
			}
			slices.SortStableFunc(mine, func(a, b int32) int {
				return cmp.Or(cmp.Compare(moveCost(b), moveCost(a)), cmp.Compare(a, b))
			})
			mine = mine[:quota[i]]
		}
		for _, p := range mine {
			kept[p] = true
		}
		assigned[i] = mine
	}

	// The rest go to the members with room, least to replay first; among
	// equals, lower partitions to lower member ids.
	type choice struct {
		p   int32
		i   int
		lag int64
	}
	var choices []choice
	for p := range n {
		if kept[p] {
			continue
		}
		for i := range members {
			if len(assigned[i]) < quota[i] {
				choices = append(choices, choice{p, i, lag(i, p)})
			}
		}
	}
	slices.SortFunc(choices, func(a, b choice) int {
		return cmp.Or(cmp.Compare(a.lag, b.lag), cmp.Compare(a.p, b.p), cmp.Compare(a.i, b.i))
	})
	for _, c := range choices {
		if !kept[c.p] && len(assigned[c.i]) < quota[c.i] {
			kept[c.p] = true
			assigned[c.i] = append(assigned[c.i], c.p)
		}
	}
	out := make(map[string][]int32, len(members))
	for i, m := range members {
		slices.Sort(assigned[i])
		if assigned[i] == nil {
			assigned[i] = []int32{}
		}
		out[m.id] = assigned[i]
	}
	return out, nil
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
// partitions it owned, in which generation, and the state it holds.
//
// Encoding, big-endian: version int8 (1), generation int32, count int32,
// then count partition numbers as int32; then (from version 1) held int32,
// then held pairs of partition int32 and checkpoint sum int64, by
// partition. Version 0 ends after the owned partitions.
type subscription struct {
	owned      []int32
	generation int32
	held       map[int32]int64
}

func encodeSubscription(s subscription) []byte {
	b := make([]byte, 0, 13+4*len(s.owned)+12*len(s.held))
	b = append(b, 1)
	b = binary.BigEndian.AppendUint32(b, uint32(s.generation))
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.owned)))
	for _, p := range s.owned {
		b = binary.BigEndian.AppendUint32(b, uint32(p))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.held)))
	for _, p := range slices.Sorted(maps.Keys(s.held)) {
		b = binary.BigEndian.AppendUint32(b, uint32(p))
		b = binary.BigEndian.AppendUint64(b, uint64(s.held[p]))
	}
	return b
}

func decodeSubscription(b []byte) (subscription, error) {
	if len(b) == 0 {
		return subscription{generation: -1}, nil // no data: owns nothing
	}
	version := b[0]
	if version > 1 {
		return subscription{}, fmt.Errorf("subscription data version %d, want 0 or 1", b[0])
	}
	if len(b) < 9 {
		return subscription{}, fmt.Errorf("subscription data of %d bytes is too short", len(b))
	}
	s := subscription{generation: int32(binary.BigEndian.Uint32(b[1:]))}
	count := uint64(binary.BigEndian.Uint32(b[5:]))
	b = b[9:]
	if uint64(len(b)) < 4*count || version == 0 && uint64(len(b)) != 4*count {
		return subscription{}, fmt.Errorf("subscription data holds %d bytes for %d partitions", len(b), count)
	}
	s.owned = make([]int32, count)
	for i := range s.owned {
		s.owned[i] = int32(binary.BigEndian.Uint32(b[4*i:]))
	}
	b = b[4*count:]
	if version == 0 {
		return s, nil
	}
	if len(b) < 4 {
		return subscription{}, errors.New("subscription data ends before its held state")
	}
	held := uint64(binary.BigEndian.Uint32(b))
	b = b[4:]
	if uint64(len(b)) != 12*held {
		return subscription{}, fmt.Errorf("subscription data holds %d bytes for %d held partitions", len(b), held)
	}
	if held > 0 {
		s.held = make(map[int32]int64, held)
	}
	for i := range held {
		s.held[int32(binary.BigEndian.Uint32(b[12*i:]))] = int64(binary.BigEndian.Uint64(b[12*i+4:]))
	}
	return s, nil
}
