package group

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Records of the OffsetsTopic use Apache Kafka's own layouts, so that the facts they hold mean
// the same to Kafka's tools, and encoding is kmsg's (OffsetCommitKey/Value,
// GroupMetadataKey/Value). Integers are big-endian; a string is an int16 length then bytes; a
// nullable string has length -1 for null; bytes are an int32 length then bytes; an array is an
// int32 count then its elements. Every key and value starts with its int16 version, and the key's
// version says what kind of record it is:
//
//	offset commit key, version 1 (0 is the same layout)
//	    version int16 = 1 | group string | topic string | partition int32
//	offset commit value, version 3
//	    version int16 = 3 | offset int64 | leader_epoch int32 (-1: none)
//	    | metadata string | commit_timestamp int64 (Unix ms)
//
//	group metadata key, version 2
//	    version int16 = 2 | group string
//	group metadata value, version 3
//	    version int16 = 3 | protocol_type string | generation int32
//	    | protocol nullable string | leader nullable string
//	    | current_state_timestamp int64 (Unix ms)
//	    | members array of:
//	        member_id string | group_instance_id nullable string | client_id string
//	        | client_host string | rebalance_timeout int32 (ms) | session_timeout int32 (ms)
//	        | subscription bytes (metadata for the chosen protocol) | assignment bytes
//
// A nil value (tombstone) deletes: under an offset commit key the partition's offset, under a
// group metadata key the group's membership (DeleteGroups writes both kinds). Load also reads
// the older value versions 0–2 and the flexible version 4 that Kafka may have written, and skips
// keys of other versions (Kafka's newer consumer-group records) without error.
const (
	offsetCommitKeyVersion    = 1
	offsetCommitValueVersion  = 3
	groupMetadataKeyVersion   = 2
	groupMetadataValueVersion = 3
)

func offsetCommitKey(group, topic string, partition int32) []byte {
	k := kmsg.NewOffsetCommitKey()
	k.Version = offsetCommitKeyVersion
	k.Group = group
	k.Topic = topic
	k.Partition = partition
	return k.AppendTo(nil)
}

func offsetCommitValue(e offsetEntry) []byte {
	v := kmsg.NewOffsetCommitValue()
	v.Version = offsetCommitValueVersion
	v.Offset = e.offset
	v.LeaderEpoch = e.leaderEpoch
	v.Metadata = e.metadata
	v.CommitTimestamp = e.commitTime
	return v.AppendTo(nil)
}

func groupMetadataKey(group string) []byte {
	k := kmsg.NewGroupMetadataKey()
	k.Version = groupMetadataKeyVersion
	k.Group = group
	return k.AppendTo(nil)
}

// groupMetadataValue encodes g's membership; assignments, if not nil, replace the members'
// current assignments (the leader's new assignment is written before it takes effect).
func groupMetadataValue(g *group, assignments map[string][]byte, now time.Time) []byte {
	v := kmsg.NewGroupMetadataValue()
	v.Version = groupMetadataValueVersion
	v.ProtocolType = g.protocolType
	v.Generation = g.generation
	v.Protocol = nonEmpty(g.protocol)
	v.Leader = nonEmpty(g.leader)
	v.CurrentStateTimestamp = now.UnixMilli()
	for _, m := range g.order {
		vm := kmsg.NewGroupMetadataValueMember()
		vm.MemberID = m.id
		vm.InstanceID = m.instanceIDPtr()
		vm.ClientID = m.clientID
		vm.ClientHost = m.clientHost
		vm.RebalanceTimeoutMillis = int32(m.rebalanceTimeout / time.Millisecond)
		vm.SessionTimeoutMillis = int32(m.sessionTimeout / time.Millisecond)
		vm.Subscription = m.metadata(g.protocol)
		vm.Assignment = m.assignment
		if assignments != nil {
			vm.Assignment = assignments[m.id]
		}
		v.Members = append(v.Members, vm)
	}
	return v.AppendTo(nil)
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// ErrClosed is returned by Load once the Coordinator is closed.
var ErrClosed = errors.New("group: coordinator closed")

// Load applies one record of the OffsetsTopic. The broker calls it for every record of the
// topic, in offset order, before it serves requests: later records override earlier ones and
// tombstones delete, so replaying the topic rebuilds the committed offsets and, for every group
// whose metadata was written, its generation, protocol, leader and members. A group restored
// with members is Stable, and each member's session starts when it is loaded: members whose
// clients come back keep their generation and assignment; the others expire as usual.
//
// Load returns an error for a record it cannot decode; the broker decides whether to skip it.
// Load copies what it keeps, so key and value may be reused afterwards.
func (c *Coordinator) Load(key, value []byte) error {
	if !c.enter() {
		return ErrClosed
	}
	defer c.exit()
	if len(key) < 2 {
		return fmt.Errorf("group: load: key of %d bytes is too short", len(key))
	}
	switch version := int16(binary.BigEndian.Uint16(key)); version {
	case 0, 1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(key); err != nil {
			return fmt.Errorf("group: load: offset commit key: %w", err)
		}
		if value == nil {
			c.loadOffsetTombstone(k.Group, k.Topic, k.Partition)
			return nil
		}
		e, err := decodeOffsetValue(&k, value)
		if err != nil {
			return err
		}
		g := c.lockOrCreateGroup(k.Group)
		e.seq = c.nextSeq()
		g.setOffset(k.Topic, k.Partition, e)
		g.mu.Unlock()
	case 2:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(key); err != nil {
			return fmt.Errorf("group: load: group metadata key: %w", err)
		}
		if value == nil {
			c.loadGroupTombstone(k.Group)
			return nil
		}
		var v kmsg.GroupMetadataValue
		if err := v.ReadFrom(value); err != nil {
			return fmt.Errorf("group: load: group metadata value for group %q: %w", k.Group, err)
		}
		g := c.lockOrCreateGroup(k.Group)
		c.loadMembership(g, &v)
		g.mu.Unlock()
	default:
		c.log.Debug("skipping record of unknown key version in "+OffsetsTopic, slog.Int("version", int(version)))
	}
	return nil
}

// decodeOffsetValue decodes the value of an offset commit record with key k.
func decodeOffsetValue(k *kmsg.OffsetCommitKey, value []byte) (offsetEntry, error) {
	var v kmsg.OffsetCommitValue
	if err := v.ReadFrom(value); err != nil {
		return offsetEntry{}, fmt.Errorf("group: load: offset commit value for group %q, %s[%d]: %w", k.Group, k.Topic, k.Partition, err)
	}
	epoch := int32(-1)
	if v.Version >= 3 {
		epoch = v.LeaderEpoch
	}
	return offsetEntry{offset: v.Offset, leaderEpoch: epoch, metadata: v.Metadata, commitTime: v.CommitTimestamp}, nil
}

func (c *Coordinator) loadOffsetTombstone(name, topic string, partition int32) {
	g := c.lockGroup(name)
	if g == nil {
		return
	}
	defer g.mu.Unlock()
	g.deleteOffset(topic, partition)
	c.forgetIfVacant(g)
}

func (c *Coordinator) loadGroupTombstone(name string) {
	g := c.lockGroup(name)
	if g == nil {
		return
	}
	defer g.mu.Unlock()
	g.resetMembership(c.clock.Now())
	c.forgetIfVacant(g)
}

// loadMembership replaces g's membership with the one recorded in v.
func (c *Coordinator) loadMembership(g *group, v *kmsg.GroupMetadataValue) {
	g.resetMembership(c.clock.Now())
	g.generation = v.Generation
	g.protocolType = strings.Clone(v.ProtocolType)
	g.protocol = strings.Clone(deref(v.Protocol))

	members := v.Members
	if g.protocol == "" && len(members) > 0 {
		c.log.Warn("ignoring members of group recorded without a protocol", slog.String("group", g.name))
		members = nil
	}
	for _, vm := range members {
		m := &member{
			id:               strings.Clone(vm.MemberID),
			instanceID:       strings.Clone(deref(vm.InstanceID)),
			clientID:         strings.Clone(vm.ClientID),
			clientHost:       strings.Clone(vm.ClientHost),
			sessionTimeout:   millis(vm.SessionTimeoutMillis),
			rebalanceTimeout: millis(vm.RebalanceTimeoutMillis),
			protocolType:     g.protocolType,
			protocols:        []protocol{{name: g.protocol, metadata: bytes.Clone(vm.Subscription)}},
			assignment:       bytes.Clone(vm.Assignment),
		}
		if v.Version == 0 || vm.RebalanceTimeoutMillis < 0 {
			m.rebalanceTimeout = m.sessionTimeout
		}
		g.add(m)
	}
	if leader := deref(v.Leader); g.members[leader] != nil {
		g.leader = g.members[leader].id
	}
	since := c.clock.Now()
	if v.CurrentStateTimestamp >= 0 {
		since = time.UnixMilli(v.CurrentStateTimestamp)
	}
	if len(g.order) == 0 {
		g.setState(stateEmpty, since)
		return
	}
	g.setState(stateStable, since)
	for _, m := range g.order {
		c.scheduleSession(g, m, m.sessionTimeout)
	}
}
