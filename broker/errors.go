package broker

import (
	"errors"

	"github.com/runnel-io/runnel/broker/storage"
	"github.com/twmb/franz-go/pkg/kerr"
)

// errorCode maps an error from the storage engine to the Kafka error code a
// client expects. Errors it does not know map to UNKNOWN_SERVER_ERROR; the
// caller logs those, since they mean a broker-side failure.
func errorCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.As(err, new(*kerr.Error)):
		// A Kafka error decided by a coordinator (the transaction checks
		// of Produce) travels as itself.
		var ke *kerr.Error
		errors.As(err, &ke)
		return ke.Code
	case errors.As(err, new(*adminError)):
		var ae *adminError
		errors.As(err, &ae)
		return ae.code
	case errors.Is(err, storage.ErrUnknownTopic):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, storage.ErrTopicExists):
		return kerr.TopicAlreadyExists.Code
	case errors.Is(err, storage.ErrInvalidTopicName):
		return kerr.InvalidTopicException.Code
	case errors.Is(err, storage.ErrInvalidPartitions):
		return kerr.InvalidPartitions.Code
	case errors.Is(err, storage.ErrInvalidConfig):
		return kerr.InvalidConfig.Code
	case errors.Is(err, storage.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	case errors.Is(err, storage.ErrMessageTooLarge):
		return kerr.MessageTooLarge.Code
	case errors.Is(err, storage.ErrInvalidBatch):
		return kerr.CorruptMessage.Code
	case errors.Is(err, errInvalidRecord), errors.Is(err, storage.ErrInvalidRecord):
		return kerr.InvalidRecord.Code
	case errors.Is(err, errInvalidTxn):
		return kerr.InvalidTxnState.Code
	case errors.Is(err, storage.ErrOutOfOrderSequence):
		return kerr.OutOfOrderSequenceNumber.Code
	case errors.Is(err, storage.ErrInvalidProducerEpoch):
		return kerr.InvalidProducerEpoch.Code
	case errors.Is(err, storage.ErrStorage):
		return kerr.KafkaStorageError.Code
	case errors.Is(err, storage.ErrClosed):
		// The partition closed under the request: its topic was deleted or
		// the broker is stopping. NOT_LEADER_OR_FOLLOWER makes clients
		// refresh metadata and retry, which is right for both.
		return kerr.NotLeaderForPartition.Code
	}
	return kerr.UnknownServerError.Code
}

// errMessage is an error's text as a response's nullable error message.
func errMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}

// strp returns a pointer to s, for nullable string fields.
func strp(s string) *string { return &s }
