package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker/internal/auth"
)

// securityAPIs are the dispatch table's SASL, ACL and SCRAM entries. The
// SASL ones are listed only with SASL on, so that a client of a broker
// without it does not try to authenticate. The ACL APIs answer
// SECURITY_DISABLED while authorization is off; the SCRAM ones always
// work, so that users can be made before SASL is turned on.
func (b *Broker) securityAPIs() []api {
	apis := []api{
		{key: kmsg.CreateACLs, min: 0, max: 3, handle: inline(b.handleCreateACLs)},
		{key: kmsg.DescribeACLs, min: 0, max: 3, handle: inline(b.handleDescribeACLs)},
		{key: kmsg.DeleteACLs, min: 0, max: 3, handle: inline(b.handleDeleteACLs)},
		{key: kmsg.DescribeUserSCRAMCredentials, min: 0, max: 0, handle: inline(b.handleDescribeUserSCRAM)},
		{key: kmsg.AlterUserSCRAMCredentials, min: 0, max: 0, handle: inline(b.handleAlterUserSCRAM)},
	}
	if b.cfg.SASL {
		apis = append(apis,
			api{key: kmsg.SASLHandshake, min: 0, max: 1, handle: b.handleSASLHandshake},
			api{key: kmsg.SASLAuthenticate, min: 0, max: 2, handle: b.handleSASLAuthenticate})
	}
	return apis
}

// handleSASLHandshake picks the connection's mechanism. It and
// handleSASLAuthenticate run inline, on the reader goroutine, the only user
// of the connection's Session; a refusal is answered and then the
// connection is closed, as in Kafka.
func (b *Broker) handleSASLHandshake(ctx context.Context, r kmsg.Request) answer {
	c := connOf(ctx)
	resp, closeAfter := c.sess.Handshake(r.(*kmsg.SASLHandshakeRequest))
	if closeAfter {
		c.logger.Info("closing connection: SASL handshake refused", "mechanism", r.(*kmsg.SASLHandshakeRequest).Mechanism,
			"error", kerr.ErrorForCode(resp.ErrorCode))
	}
	return answer{resp: resp, close: closeAfter}
}

// handleSASLAuthenticate runs one step of the exchange.
func (b *Broker) handleSASLAuthenticate(ctx context.Context, r kmsg.Request) answer {
	c := connOf(ctx)
	resp, closeAfter := c.sess.Authenticate(r.(*kmsg.SASLAuthenticateRequest))
	if closeAfter {
		msg := ""
		if resp.ErrorMessage != nil {
			msg = *resp.ErrorMessage
		}
		c.logger.Info("closing connection: SASL authentication failed", "error", kerr.ErrorForCode(resp.ErrorCode), "message", msg)
	}
	return answer{resp: resp, close: closeAfter}
}

// clusterAllowed reports whether the request handled in ctx may do what its
// API's FromCluster check says: always when authorization is off.
func (b *Broker) clusterAllowed(ctx context.Context, key kmsg.Key) bool {
	z, on := b.authzFor(ctx, key)
	return !on || z.may(auth.FromCluster, auth.Always, auth.ClusterName)
}

func securityDisabled() (int16, *string) {
	return kerr.SecurityDisabled.Code, strp("no authorizer is configured: ACLs need SASL or mutual TLS (runnel serve --sasl, --tls-client-ca)")
}

func (b *Broker) handleCreateACLs(ctx context.Context, req *kmsg.CreateACLsRequest) *kmsg.CreateACLsResponse {
	if b.acls == nil {
		resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
		for range req.Creations {
			r := kmsg.NewCreateACLsResponseResult()
			r.ErrorCode, r.ErrorMessage = securityDisabled()
			resp.Results = append(resp.Results, r)
		}
		return resp
	}
	resp := b.acls.HandleCreateACLs(req, b.clusterAllowed(ctx, kmsg.CreateACLs))
	b.logACLChange(ctx, "created", len(req.Creations))
	return resp
}

func (b *Broker) handleDescribeACLs(ctx context.Context, req *kmsg.DescribeACLsRequest) *kmsg.DescribeACLsResponse {
	if b.acls == nil {
		resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
		resp.ErrorCode, resp.ErrorMessage = securityDisabled()
		return resp
	}
	return b.acls.HandleDescribeACLs(req, b.clusterAllowed(ctx, kmsg.DescribeACLs))
}

func (b *Broker) handleDeleteACLs(ctx context.Context, req *kmsg.DeleteACLsRequest) *kmsg.DeleteACLsResponse {
	if b.acls == nil {
		resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
		for range req.Filters {
			r := kmsg.NewDeleteACLsResponseResult()
			r.ErrorCode, r.ErrorMessage = securityDisabled()
			resp.Results = append(resp.Results, r)
		}
		return resp
	}
	resp := b.acls.HandleDeleteACLs(req, b.clusterAllowed(ctx, kmsg.DeleteACLs))
	b.logACLChange(ctx, "deleted", len(req.Filters))
	return resp
}

// logACLChange notes who changed the ACLs: security changes are worth a
// line each.
func (b *Broker) logACLChange(ctx context.Context, what string, n int) {
	ci := clientOf(ctx)
	b.logger.Info("ACL request", "change", what, "entries", n, "principal", ci.Principal, "host", ci.Host)
}

func (b *Broker) handleDescribeUserSCRAM(ctx context.Context, req *kmsg.DescribeUserSCRAMCredentialsRequest) *kmsg.DescribeUserSCRAMCredentialsResponse {
	return b.users.HandleDescribeUserScram(req, b.clusterAllowed(ctx, kmsg.DescribeUserSCRAMCredentials))
}

func (b *Broker) handleAlterUserSCRAM(ctx context.Context, req *kmsg.AlterUserSCRAMCredentialsRequest) *kmsg.AlterUserSCRAMCredentialsResponse {
	resp := b.users.HandleAlterUserScram(req, b.clusterAllowed(ctx, kmsg.AlterUserSCRAMCredentials))
	ci := clientOf(ctx)
	for _, r := range resp.Results {
		b.logger.Info("SCRAM credentials request", "user", r.User, "error", kerr.ErrorForCode(r.ErrorCode), "principal", ci.Principal, "host", ci.Host)
	}
	return resp
}
