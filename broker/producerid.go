package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleInitProducerID gives an idempotent producer a new producer id at
// epoch 0. As in Kafka, a producer without a transactional id that sends
// its old id and epoch (v3+, after a fatal sequence error) also gets a new
// id. Transactional ids are refused until there is a transaction
// coordinator.
func (b *Broker) handleInitProducerID(ctx context.Context, req *kmsg.InitProducerIDRequest) *kmsg.InitProducerIDResponse {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil {
		// INVALID_REQUEST is not retriable, so the client fails at once
		// rather than retrying against a broker that cannot help it.
		b.logger.Warn("refusing InitProducerId: transactions are not supported yet",
			"transactional_id", *req.TransactionalID, "client_id", clientOf(ctx).ID, "peer", clientOf(ctx).Host)
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp
	}
	id, err := b.meta.allocate()
	if err != nil {
		b.logger.Error("allocating a producer id failed", "err", err)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code // retriable
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp
}
