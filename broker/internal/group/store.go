package group

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
)

// OffsetsTopic is the internal compacted topic that holds committed offsets and group metadata.
const OffsetsTopic = "__consumer_offsets"

// Record is one record of the OffsetsTopic. A nil Value is a tombstone: Load deletes what the
// key names, and compaction eventually drops the key.
type Record struct {
	Key   []byte
	Value []byte
}

// Store appends records to the OffsetsTopic. The broker implements it.
//
// Append must return nil only once recs are durable (under the broker's flush policy), and
// should write them as one record batch, all or nothing: a commit of several partitions is
// one fact. Records of one group must be replayed by Load in the order they were appended; the
// Coordinator calls Append with the group's lock held, so the appends of one group never
// overlap, while those of different groups may run concurrently. The group name lets the Store
// choose a partition of the topic; any choice works as long as it is stable.
//
// If Append fails the Coordinator keeps its previous state and answers the request with an
// error: the error's code if it is (or wraps) a *kerr.Error, COORDINATOR_NOT_AVAILABLE (which
// clients retry) otherwise. Records that became durable despite the error take effect at the
// next Load, so a Store should fail before writing whenever it can. ctx is cancelled only if
// Close gives up waiting; Append may keep recs.
//
// AppendTxn is Append for the offsets a transaction commits (TxnOffsetCommit): it writes recs
// as one transactional batch of producer pid at epoch, in the same partition Append would
// choose for group, with the same durability and error rules. Such records take effect only
// when a commit marker for pid follows them in the partition; the broker replays them through
// [Coordinator.LoadTxn] and the markers through [Coordinator.LoadMarker].
type Store interface {
	Append(ctx context.Context, group string, recs []Record) error
	AppendTxn(ctx context.Context, group string, pid int64, epoch int16, recs []Record) error
}

// storeErrCode maps an error from Store.Append or Store.AppendTxn to the Kafka error code a client receives.
func storeErrCode(err error) int16 {
	if ke := (*kerr.Error)(nil); errors.As(err, &ke) {
		return ke.Code
	}
	return kerr.CoordinatorNotAvailable.Code
}
