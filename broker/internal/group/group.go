package group

import (
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// state is a group's place in Kafka's classic rebalance protocol. Its transitions:
//
//	Empty               → PreparingRebalance   a member joins
//	PreparingRebalance  → CompletingRebalance  every member rejoined, or the rebalance timeout
//	PreparingRebalance  → Empty                no member is left when the join phase ends
//	CompletingRebalance → Stable               the leader's SyncGroup brings the assignment
//	CompletingRebalance → PreparingRebalance   a member joins, leaves, expires or never syncs
//	Stable              → PreparingRebalance   the same, or a member's protocols change
//	Empty               → Dead                 DeleteGroups
//
// Whoever still holds a Dead group must look the group up again.
type state int8

const (
	stateEmpty state = iota
	statePreparingRebalance
	stateCompletingRebalance
	stateStable
	stateDead
)

// String returns the state's name as DescribeGroups and ListGroups report it.
func (s state) String() string {
	switch s {
	case stateEmpty:
		return "Empty"
	case statePreparingRebalance:
		return "PreparingRebalance"
	case stateCompletingRebalance:
		return "CompletingRebalance"
	case stateStable:
		return "Stable"
	case stateDead:
		return "Dead"
	}
	return "Unknown"
}

// offsetEntry is one committed offset, as OffsetCommit stored it.
type offsetEntry struct {
	offset      int64
	leaderEpoch int32
	metadata    string
	commitTime  int64 // Unix milliseconds
	// seq is the record's place in the order of the OffsetsTopic (see Coordinator.seq): when a
	// transaction commits, its offset replaces the committed one only if its record came later.
	seq int64
}

// group is one group's membership state machine and committed offsets, guarded by mu.
//
// Invariants, whenever mu is not held:
//   - members and order hold the same members; order is the order they joined in.
//   - leader is a member's id if there are members, "" otherwise.
//   - static maps every static member's instance id to its member id, and nothing else.
//   - an Empty or Dead group has no members; a group with members is in one of the three
//     other states (a PreparingRebalance group may briefly have none left).
//   - a member has a parked JoinGroup only in PreparingRebalance, and a parked SyncGroup only in
//     CompletingRebalance.
type group struct {
	name string
	mu   sync.Mutex

	state      state
	stateSince time.Time

	generation   int32
	protocolType string // set by the first member to join an empty group
	protocol     string // the protocol chosen for the current generation
	leader       string

	members map[string]*member
	order   []*member
	static  map[string]string

	// pending holds KIP-394 member ids handed out with MEMBER_ID_REQUIRED and not yet used;
	// each expires after the session timeout its JoinGroup asked for.
	pending map[string]*timerSlot
	// pendingSync holds the members of the current generation that have not sent SyncGroup;
	// those still there when syncTimer fires are removed.
	pendingSync map[string]bool

	joinTimer timerSlot // completes the rebalance being prepared
	syncTimer timerSlot // expires members that never sync

	// The initial rebalance delay of a group that was Empty: while initialDelay is set the
	// rebalance does not complete early, and each expiry extends it, by at most delayLeft in
	// total, if newMemberAdded says someone joined meanwhile.
	initialDelay   bool
	newMemberAdded bool
	delayLeft      time.Duration

	offsets map[string]map[int32]offsetEntry
	// txnOffsets holds the offsets of open transactions by producer id: written to the
	// OffsetsTopic by TxnOffsetCommit, invisible to OffsetFetch until the producer's commit
	// marker moves them into offsets, dropped by its abort marker.
	txnOffsets map[int64]map[string]map[int32]offsetEntry
}

func newGroup(name string, now time.Time) *group {
	return &group{
		name:        name,
		stateSince:  now,
		members:     make(map[string]*member),
		static:      make(map[string]string),
		pending:     make(map[string]*timerSlot),
		pendingSync: make(map[string]bool),
		offsets:     make(map[string]map[int32]offsetEntry),
		txnOffsets:  make(map[int64]map[string]map[int32]offsetEntry),
	}
}

func (g *group) setState(s state, now time.Time) {
	g.state = s
	g.stateSince = now
}

// canRebalance reports whether a rebalance may start from the current state.
func (g *group) canRebalance() bool {
	return g.state == stateEmpty || g.state == stateStable || g.state == stateCompletingRebalance
}

// add makes m a member. The first member of an empty group sets its protocol type and leads.
func (g *group) add(m *member) {
	if len(g.members) == 0 {
		g.protocolType = m.protocolType
	}
	if g.leader == "" {
		g.leader = m.id
	}
	g.members[m.id] = m
	g.order = append(g.order, m)
	if m.isStatic() {
		g.static[m.instanceID] = m.id
	}
}

// remove drops m: its parked requests are answered UNKNOWN_MEMBER_ID, its session timer is
// stopped, and leadership passes to the oldest remaining member.
func (g *group) remove(m *member) {
	delete(g.members, m.id)
	g.order = slices.DeleteFunc(g.order, func(o *member) bool { return o == m })
	if m.isStatic() && g.static[m.instanceID] == m.id {
		delete(g.static, m.instanceID)
	}
	delete(g.pendingSync, m.id)
	m.session.stop()
	m.answerJoin(joinError(m.id, kerr.UnknownMemberID.Code))
	m.answerSync(syncResult{err: kerr.UnknownMemberID.Code})
	if g.leader == m.id {
		g.leader = ""
		if len(g.order) > 0 {
			g.leader = g.order[0].id
		}
	}
}

// replaceStatic gives static member m the new id, fencing whoever still waits under the old one.
func (g *group) replaceStatic(m *member, newID string) {
	m.answerJoin(joinError(m.id, kerr.FencedInstanceID.Code))
	m.answerSync(syncResult{err: kerr.FencedInstanceID.Code})
	old := m.id
	delete(g.members, old)
	m.id = newID
	g.members[newID] = m
	g.static[m.instanceID] = newID
	if g.leader == old {
		g.leader = newID
	}
	if g.pendingSync[old] {
		delete(g.pendingSync, old)
		g.pendingSync[newID] = true
	}
}

// supportsProtocols reports whether a member with these protocols may join: any non-empty
// offer suits an empty group; otherwise the type must be the group's and at least one protocol
// must be supported by every current member.
func (g *group) supportsProtocols(protocolType string, protocols []protocol) bool {
	if g.state == stateEmpty {
		return protocolType != "" && len(protocols) > 0
	}
	if protocolType != g.protocolType {
		return false
	}
	for _, p := range protocols {
		if g.supportedByAll(p.name) {
			return true
		}
	}
	return false
}

func (g *group) supportedByAll(name string) bool {
	for _, m := range g.order {
		if !m.supports(name) {
			return false
		}
	}
	return true
}

// selectProtocol picks the protocol for the next generation as Kafka does: among the protocols
// every member supports, each member votes for the one it prefers most, and the most votes win.
// Ties go to the candidate listed first by the oldest member, so the choice is deterministic.
func (g *group) selectProtocol() string {
	if len(g.order) == 0 {
		return ""
	}
	var candidates []string
	for _, p := range g.order[0].protocols {
		if g.supportedByAll(p.name) && !slices.Contains(candidates, p.name) {
			candidates = append(candidates, p.name)
		}
	}
	votes := make(map[string]int, len(candidates))
	for _, m := range g.order {
		for _, p := range m.protocols {
			if slices.Contains(candidates, p.name) {
				votes[p.name]++
				break
			}
		}
	}
	best := ""
	for _, name := range candidates {
		if best == "" || votes[name] > votes[best] {
			best = name
		}
	}
	return best
}

// allJoined reports whether every member has a parked JoinGroup and no KIP-394 member id is
// outstanding, so the rebalance being prepared can complete before its timeout.
func (g *group) allJoined() bool {
	if len(g.pending) > 0 {
		return false
	}
	for _, m := range g.order {
		if m.join == nil {
			return false
		}
	}
	return true
}

// electJoinedLeader makes sure the leader is a member that rejoined, picking the oldest that
// did if the leader did not. It reports false if no member rejoined.
func (g *group) electJoinedLeader() bool {
	if m := g.members[g.leader]; m != nil && m.join != nil {
		return true
	}
	for _, m := range g.order {
		if m.join != nil {
			g.leader = m.id
			return true
		}
	}
	return false
}

// rebalanceTimeout is the longest rebalance timeout of the members: the rebalance waits that
// long for all of them.
func (g *group) rebalanceTimeout() time.Duration {
	var d time.Duration
	for _, m := range g.order {
		d = max(d, m.rebalanceTimeout)
	}
	return d
}

// memberList is what the leader's JoinGroup response carries: every member with its metadata
// for the chosen protocol.
func (g *group) memberList() []kmsg.JoinGroupResponseMember {
	list := make([]kmsg.JoinGroupResponseMember, 0, len(g.order))
	for _, m := range g.order {
		jm := kmsg.NewJoinGroupResponseMember()
		jm.MemberID = m.id
		jm.InstanceID = m.instanceIDPtr()
		jm.ProtocolMetadata = m.metadata(g.protocol)
		list = append(list, jm)
	}
	return list
}

// stopTimers stops every timer of the group and its members.
func (g *group) stopTimers() {
	g.joinTimer.stop()
	g.syncTimer.stop()
	for _, s := range g.pending {
		s.stop()
	}
	for _, m := range g.order {
		m.session.stop()
	}
}

// hasOffsets reports whether the group has any committed or pending transactional offset.
func (g *group) hasOffsets() bool { return len(g.offsets) > 0 || len(g.txnOffsets) > 0 }

// validateMember checks that memberID may act in the group: a static member's instance id
// must still belong to that member id (else the caller is a fenced zombie), and the member id
// must be known.
func (g *group) validateMember(memberID, instanceID string) int16 {
	if instanceID != "" {
		if cur, ok := g.static[instanceID]; ok && cur != memberID {
			return kerr.FencedInstanceID.Code
		}
	}
	if g.members[memberID] == nil {
		return kerr.UnknownMemberID.Code
	}
	return 0
}

// resetMembership makes g an Empty group of generation 0 that keeps only its offsets.
func (g *group) resetMembership(now time.Time) {
	g.stopTimers()
	for _, m := range slices.Clone(g.order) {
		g.remove(m)
	}
	clear(g.pending)
	clear(g.pendingSync)
	g.generation = 0
	g.protocolType, g.protocol, g.leader = "", "", ""
	g.initialDelay, g.newMemberAdded, g.delayLeft = false, false, 0
	g.setState(stateEmpty, now)
}
