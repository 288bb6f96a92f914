package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker/internal/auth"
)

// Coordinator key types of FindCoordinator.
const (
	coordinatorGroup       = 0
	coordinatorTransaction = 1
)

// handleFindCoordinator names this node as the coordinator of every group
// and transactional id.
func (b *Broker) handleFindCoordinator(ctx context.Context, req *kmsg.FindCoordinatorRequest) *kmsg.FindCoordinatorResponse {
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	host, port := b.advertisedTo(ctx)
	code, msg := int16(0), (*string)(nil)
	if req.CoordinatorType != coordinatorGroup && req.CoordinatorType != coordinatorTransaction {
		code, msg = kerr.InvalidRequest.Code, strp("unknown coordinator key type; 0 (group) and 1 (transaction) are known")
	}
	// Describe on the group or transactional id, per key.
	z, authorizing := b.authzFor(ctx, kmsg.FindCoordinator)
	denied := func(key string) int16 {
		if !authorizing || code != 0 {
			return 0
		}
		src := auth.FromGroupKeys
		if req.CoordinatorType == coordinatorTransaction {
			src = auth.FromTransactionKeys
		}
		if z.may(src, auth.Always, key) {
			return 0
		}
		return z.code(src, auth.Always)
	}
	if req.Version < 4 {
		resp.ErrorCode, resp.ErrorMessage = code, msg
		if d := denied(req.CoordinatorKey); d != 0 {
			resp.ErrorCode, resp.ErrorMessage = d, nil
		}
		code = resp.ErrorCode
		resp.NodeID, resp.Host, resp.Port = b.cfg.NodeID, host, port
		if code != 0 {
			resp.NodeID, resp.Host, resp.Port = -1, "", -1
		}
		return resp
	}
	for _, key := range req.CoordinatorKeys {
		c := kmsg.NewFindCoordinatorResponseCoordinator()
		c.Key, c.ErrorCode, c.ErrorMessage = key, code, msg
		if d := denied(key); d != 0 {
			c.ErrorCode, c.ErrorMessage = d, nil
		}
		c.NodeID, c.Host, c.Port = b.cfg.NodeID, host, port
		if c.ErrorCode != 0 {
			c.NodeID, c.Host, c.Port = -1, "", -1
		}
		resp.Coordinators = append(resp.Coordinators, c)
	}
	return resp
}
