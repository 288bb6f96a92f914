package group

import (
	"slices"
)

// GroupInfo is a copy of one group's state, for monitoring: nothing in it
// aliases the coordinator's memory.
type GroupInfo struct {
	Name         string
	State        string // as DescribeGroups reports it
	ProtocolType string
	// Protocol is the assignment protocol of the current generation; empty
	// unless the group is Stable, as in DescribeGroups.
	Protocol   string
	Generation int32
	Members    []MemberInfo // in the order they joined
	Offsets    []OffsetInfo // sorted by topic, then partition
}

// MemberInfo is one member of a GroupInfo.
type MemberInfo struct {
	ID         string
	InstanceID string // empty for a dynamic member
	ClientID   string
	ClientHost string
	// Assignment is what the leader assigned the member, in the group's
	// protocol's format; nil unless the group is Stable, because during a
	// rebalance it is the previous generation's.
	Assignment []byte
}

// OffsetInfo is one committed offset of a GroupInfo.
type OffsetInfo struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Snapshot returns every group, sorted by name. Each group is read under
// its own lock, so a group's members and offsets agree with each other but
// not necessarily with another group's.
func (c *Coordinator) Snapshot() []GroupInfo {
	groups := c.snapshotGroups()
	infos := make([]GroupInfo, 0, len(groups))
	for _, g := range groups {
		g.mu.Lock()
		if g.state != stateDead {
			infos = append(infos, g.info())
		}
		g.mu.Unlock()
	}
	return infos
}

// info copies g, which must be locked.
func (g *group) info() GroupInfo {
	stable := g.state == stateStable
	gi := GroupInfo{
		Name:         g.name,
		State:        g.state.String(),
		ProtocolType: g.protocolType,
		Generation:   g.generation,
		Members:      make([]MemberInfo, 0, len(g.order)),
	}
	if stable {
		gi.Protocol = g.protocol
	}
	for _, m := range g.order {
		mi := MemberInfo{ID: m.id, InstanceID: m.instanceID, ClientID: m.clientID, ClientHost: m.clientHost}
		if stable {
			mi.Assignment = slices.Clone(m.assignment)
		}
		gi.Members = append(gi.Members, mi)
	}
	for _, t := range sortedTopics(g.offsets) {
		for _, p := range sortedPartitions(g.offsets[t]) {
			gi.Offsets = append(gi.Offsets, OffsetInfo{Topic: t, Partition: p, Offset: g.offsets[t][p].offset})
		}
	}
	return gi
}

// CountByState returns how many groups are in each state. Every state a
// group can be seen in is present, zero or not; Dead is not, since Dead
// groups are forgotten as soon as they die. It is cheaper than a Snapshot,
// for a gauge.
func (c *Coordinator) CountByState() map[string]int {
	live := [...]state{stateEmpty, statePreparingRebalance, stateCompletingRebalance, stateStable}
	counts := make(map[string]int, len(live))
	for _, s := range live {
		counts[s.String()] = 0
	}
	for _, g := range c.snapshotGroups() {
		g.mu.Lock()
		s := g.state
		g.mu.Unlock()
		if s != stateDead {
			counts[s.String()]++
		}
	}
	return counts
}
