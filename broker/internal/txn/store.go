package txn

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
)

// StateTopic is the internal compacted topic that holds the state of every transactional id.
const StateTopic = "__transaction_state"

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Store appends records to the StateTopic. The broker implements it.
//
// Append writes one record, whose key and value are Kafka's TxnMetadataKey and TxnMetadataValue
// (see encoding.go), and returns nil only once it is durable. A nil value is a tombstone: the
// transactional id expired. The key names the transactional id, so a Store may choose a
// partition of the topic from it; records of one id must be replayed by Load in the order they
// were appended. The Coordinator calls Append with the id's lock held, so the appends of one id
// never overlap, while those of different ids may run concurrently.
//
// If Append fails the Coordinator keeps its previous state and answers with an error: the
// error's code if it is (or wraps) a *kerr.Error, COORDINATOR_NOT_AVAILABLE otherwise. A record
// that became durable despite the error takes effect at the next Load, so a Store should fail
// before writing whenever it can. ctx is cancelled only if Close gives up waiting.
type Store interface {
	Append(ctx context.Context, key, value []byte) error
}

// Markers writes transaction markers into data partitions. The broker implements it on
// storage.Partition.AppendMarker and WaitDurable.
type Markers interface {
	// WriteMarkers writes a commit (or abort) marker for producer pid at epoch into every
	// partition listed and returns once all are durable. A marker written twice is harmless,
	// and a partition that no longer exists should count as done. After a failure the
	// Coordinator calls it again, with the same arguments, until it succeeds or the Coordinator
	// closes.
	WriteMarkers(ctx context.Context, pid int64, epoch int16, commit bool, parts []TopicPartition) error
}

// storeErrCode maps an error from Store.Append to the Kafka error code a client receives.
func storeErrCode(err error) int16 {
	if ke := (*kerr.Error)(nil); errors.As(err, &ke) {
		return ke.Code
	}
	return kerr.CoordinatorNotAvailable.Code
}
