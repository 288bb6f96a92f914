package txn

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Records of the StateTopic use Apache Kafka's own layouts (kmsg's TxnMetadataKey and
// TxnMetadataValue), so that Kafka's tools read them. Integers are big-endian; a string is an
// int16 length then bytes (a compact uvarint length+1 in flexible versions); arrays likewise.
//
//	key, version 0
//	    version int16 = 0 | transactional_id string
//	value, version 1 (flexible; version 0 is the same without tagged fields)
//	    version int16 = 1 | producer_id int64 | producer_epoch int16 | timeout_ms int32
//	    | state int8 (0 Empty, 1 Ongoing, 2 PrepareCommit, 3 PrepareAbort,
//	                  4 CompleteCommit, 5 CompleteAbort)
//	    | topics array of: topic string | partitions array of int32
//	    | last_update_ms int64 | start_ms int64 (-1: no transaction yet)
//	    | tagged fields: 0 previous_producer_id int64, 1 next_producer_id int64,
//	                     2 client_transaction_version int16
//
// A nil value (tombstone) forgets the transactional id. Every value holds the whole state of
// its id, so the last record of an id is its state; the producer epoch before the last bump
// (Kafka's lastProducerEpoch, used to answer a retried InitProducerId) is not in the record,
// as in Kafka, and is lost on restart.
const (
	txnKeyVersion   = 0
	txnValueVersion = 1
)

// meta is the durable state of one transactional id: exactly what one record holds.
type meta struct {
	pid       int64 // producer id in use
	prevPid   int64 // producer id before the last rotation, -1 if none
	nextPid   int64 // producer id to rotate to when the transaction completes (KIP-890), -1 if none
	epoch     int16 // producer epoch; -1 before the first InitProducerId is durable
	timeoutMs int32
	state     kmsg.TransactionState
	parts     []TopicPartition // sorted, unique
	start     int64            // Unix ms the transaction began, -1 if none
	update    int64            // Unix ms of the last change
	tv        int16            // client transaction version: 2 under KIP-890 part 2, else 0
}

func txnKey(id string) []byte {
	k := kmsg.NewTxnMetadataKey()
	k.Version = txnKeyVersion
	k.TransactionalID = id
	return k.AppendTo(nil)
}

func txnValue(m meta) []byte {
	v := kmsg.NewTxnMetadataValue()
	v.Version = txnValueVersion
	v.ProducerID = m.pid
	v.ProducerEpoch = m.epoch
	v.TimeoutMillis = m.timeoutMs
	v.State = m.state
	for _, tp := range m.parts {
		if n := len(v.Topics); n == 0 || v.Topics[n-1].Topic != tp.Topic {
			t := kmsg.NewTxnMetadataValueTopic()
			t.Topic = tp.Topic
			v.Topics = append(v.Topics, t)
		}
		t := &v.Topics[len(v.Topics)-1]
		t.Partitions = append(t.Partitions, tp.Partition)
	}
	v.LastUpdateTimestamp = m.update
	v.StartTimestamp = m.start
	v.PreviousProducerID = m.prevPid
	v.NextProducerID = m.nextPid
	v.ClientTransactionVersion = m.tv
	return v.AppendTo(nil)
}

// decodeValue reads a value record into a meta. It rejects what this coordinator never writes
// and could not act on: a negative producer id or epoch, and states other than the six above.
func decodeValue(value []byte) (meta, error) {
	var v kmsg.TxnMetadataValue
	if err := v.ReadFrom(value); err != nil {
		return meta{}, err
	}
	if v.Version < 0 || v.Version > txnValueVersion {
		return meta{}, fmt.Errorf("unknown value version %d", v.Version)
	}
	switch v.State {
	case kmsg.TransactionStateEmpty, kmsg.TransactionStateOngoing,
		kmsg.TransactionStatePrepareCommit, kmsg.TransactionStatePrepareAbort,
		kmsg.TransactionStateCompleteCommit, kmsg.TransactionStateCompleteAbort:
	case kmsg.TransactionStateDead:
		return meta{}, errDead
	default:
		return meta{}, fmt.Errorf("unexpected state %d", v.State)
	}
	if v.ProducerID < 0 || v.ProducerEpoch < 0 {
		return meta{}, fmt.Errorf("producer id %d, epoch %d", v.ProducerID, v.ProducerEpoch)
	}
	m := meta{
		pid:       v.ProducerID,
		prevPid:   v.PreviousProducerID,
		nextPid:   v.NextProducerID,
		epoch:     v.ProducerEpoch,
		timeoutMs: v.TimeoutMillis,
		state:     v.State,
		start:     v.StartTimestamp,
		update:    v.LastUpdateTimestamp,
		tv:        v.ClientTransactionVersion,
	}
	if v.Version == 0 {
		m.prevPid, m.nextPid, m.tv = -1, -1, 0
	}
	for _, t := range v.Topics {
		for _, p := range t.Partitions {
			m.parts = append(m.parts, TopicPartition{Topic: strings.Clone(t.Topic), Partition: p})
		}
	}
	m.parts = sortParts(m.parts)
	return m, nil
}

// errDead marks a value in state Dead, which Kafka writes only transiently; Load treats it as
// a tombstone.
var errDead = errors.New("state Dead")

// sortParts sorts parts and drops duplicates, in place.
func sortParts(parts []TopicPartition) []TopicPartition {
	slices.SortFunc(parts, cmpPart)
	return slices.Compact(parts)
}

func cmpPart(a, b TopicPartition) int {
	if c := strings.Compare(a.Topic, b.Topic); c != 0 {
		return c
	}
	return cmp.Compare(a.Partition, b.Partition)
}

// ErrClosed is returned by Load and Recover once the Coordinator is closed.
var ErrClosed = errors.New("txn: coordinator closed")

// Load applies one record of the StateTopic. The broker calls it for every record of the
// topic, in offset order, before Recover: later records of an id replace earlier ones and a
// tombstone forgets the id. Load returns an error for a record it cannot decode (the broker
// decides whether to skip it) and after Recover. It copies what it keeps.
func (c *Coordinator) Load(key, value []byte) error {
	if !c.enter() {
		return ErrClosed
	}
	defer c.exit()
	c.mu.RLock()
	recovered := c.recovered
	c.mu.RUnlock()
	if recovered {
		return errors.New("txn: load after recover")
	}
	if len(key) < 2 {
		return fmt.Errorf("txn: load: key of %d bytes is too short", len(key))
	}
	if version := int16(binary.BigEndian.Uint16(key)); version != txnKeyVersion {
		c.log.Debug("skipping record of unknown key version in "+StateTopic, slog.Int("version", int(version)))
		return nil
	}
	var k kmsg.TxnMetadataKey
	if err := k.ReadFrom(key); err != nil {
		return fmt.Errorf("txn: load: key: %w", err)
	}
	id := strings.Clone(k.TransactionalID)
	if value == nil {
		c.forget(id)
		return nil
	}
	m, err := decodeValue(value)
	if errors.Is(err, errDead) {
		c.forget(id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("txn: load: value for transactional id %q: %w", id, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, pid := range []int64{m.pid, m.prevPid, m.nextPid} {
		c.seenPid(pid)
	}
	t := c.txns[id]
	if t == nil {
		t = &txn{id: id}
		c.txns[id] = t
	}
	t.m = m
	t.lastEpoch = -1
	return nil
}

// forget drops id during Load.
func (c *Coordinator) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.txns, id)
}
