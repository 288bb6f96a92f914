package group

import (
	"bytes"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// protocol is one assignment protocol a member supports, with its metadata for that protocol.
type protocol struct {
	name     string
	metadata []byte
}

// member is one member of a group. All fields are guarded by the group's lock.
type member struct {
	id         string
	instanceID string // KIP-345 group.instance.id; empty for a dynamic member
	clientID   string
	clientHost string

	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration

	protocolType string
	protocols    []protocol // in the member's order of preference
	assignment   []byte     // what the leader assigned it in the current generation

	// isNew marks a member that joined and has not yet received a JoinGroup response. Unlike
	// other members it may be dropped while it waits for a rebalance (NewMemberJoinTimeout).
	isNew bool

	join *joinWaiter // a JoinGroup waiting for the rebalance to complete
	sync *syncWaiter // a SyncGroup waiting for the leader's assignment

	session timerSlot // expiry of the session (or of the join, for a new member)
}

func (m *member) isStatic() bool { return m.instanceID != "" }

// metadata returns the member's metadata for the named protocol.
func (m *member) metadata(name string) []byte {
	for _, p := range m.protocols {
		if p.name == name {
			return p.metadata
		}
	}
	return nil
}

// supports reports whether the member lists the named protocol.
func (m *member) supports(name string) bool {
	for _, p := range m.protocols {
		if p.name == name {
			return true
		}
	}
	return false
}

// matches reports whether protocols are exactly the member's, in the same order: a rejoin with
// the same protocols and metadata needs no rebalance.
func (m *member) matches(protocols []protocol) bool {
	if len(protocols) != len(m.protocols) {
		return false
	}
	for i, p := range protocols {
		if p.name != m.protocols[i].name || !bytes.Equal(p.metadata, m.protocols[i].metadata) {
			return false
		}
	}
	return true
}

func (m *member) instanceIDPtr() *string {
	if m.instanceID == "" {
		return nil
	}
	id := m.instanceID
	return &id
}

// joinResult is what a JoinGroup is answered with, whenever it is answered.
type joinResult struct {
	err          int16
	memberID     string
	generation   int32
	protocolType string
	protocol     string
	leader       string
	members      []kmsg.JoinGroupResponseMember // for the leader only
}

func joinError(memberID string, code int16) joinResult {
	return joinResult{err: code, memberID: memberID, generation: -1}
}

// joinWaiter is a parked JoinGroup. It is answered at most once, with the group locked, and the
// channel has room for that answer so answering never blocks.
type joinWaiter struct {
	m  *member
	ch chan joinResult
}

// syncResult is what a SyncGroup is answered with.
type syncResult struct {
	err          int16
	protocolType string
	protocol     string
	assignment   []byte
}

// syncWaiter is a parked SyncGroup, answered like a joinWaiter.
type syncWaiter struct {
	m  *member
	ch chan syncResult
}

// awaitJoin parks a JoinGroup for m. A JoinGroup already parked for m (a client that gave up
// and retried) is answered REBALANCE_IN_PROGRESS so that nothing waits forever.
func (m *member) awaitJoin() *joinWaiter {
	if m.join != nil {
		m.answerJoin(joinError(m.id, kerr.RebalanceInProgress.Code))
	}
	m.join = &joinWaiter{m: m, ch: make(chan joinResult, 1)}
	return m.join
}

func (m *member) answerJoin(r joinResult) {
	if m.join != nil {
		m.join.ch <- r
		m.join = nil
	}
}

// awaitSync parks a SyncGroup for m, like awaitJoin.
func (m *member) awaitSync() *syncWaiter {
	if m.sync != nil {
		m.answerSync(syncResult{err: kerr.RebalanceInProgress.Code})
	}
	m.sync = &syncWaiter{m: m, ch: make(chan syncResult, 1)}
	return m.sync
}

func (m *member) answerSync(r syncResult) {
	if m.sync != nil {
		m.sync.ch <- r
		m.sync = nil
	}
}
