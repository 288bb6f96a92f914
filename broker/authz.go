package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker/internal/auth"
)

// Authorization. With it on (Config.authorizing), every request is checked
// before it does anything, with the checks auth.RulesFor lists for its API,
// which are Kafka's. Where the check happens depends on who owns the
// handler:
//
//   - the broker's own handlers (Produce, Fetch, Metadata, the topic admin
//     APIs, configs, FindCoordinator, the security APIs) check inline, as
//     they walk the request, through authzFor; their guard is inHandler;
//   - the group and transaction coordinators' APIs are wrapped by a guard
//     here, which refuses the whole request, or takes the denied topics,
//     groups or transactional ids out of it and adds their errors to the
//     handler's response (merge);
//   - an API with no guard is refused to all but super users (dispatch).

// authz is one request's view of the authorizer: who asks, from where, and
// the checks of the request's API.
type authz struct {
	b         *Broker
	acls      *auth.ACLs
	principal string
	host      string
	checks    []auth.Check
}

// authzFor returns the authorization of the request handled in ctx, an API
// of key; false when authorization is off, and then everything is allowed.
func (b *Broker) authzFor(ctx context.Context, key kmsg.Key) (*authz, bool) {
	if b.acls == nil {
		return nil, false
	}
	ci := clientOf(ctx)
	z := &authz{b: b, acls: b.acls, principal: ci.Principal, host: ci.Host}
	if a := b.apis[key.Int16()]; a != nil {
		z.checks = a.checks
	}
	return z, true
}

// check returns the API's check of names from src under cond, or nil if
// the table has none.
func (z *authz) check(src auth.NameSource, cond auth.Condition) *auth.Check {
	for i := range z.checks {
		if c := &z.checks[i]; c.Names == src && c.When == cond {
			return c
		}
	}
	return nil
}

// may reports whether the check of (src, cond) allows name. A check the
// table lacks allows nothing: a mismatch between a handler and the table
// fails closed.
func (z *authz) may(src auth.NameSource, cond auth.Condition, name string) bool {
	c := z.check(src, cond)
	if c == nil {
		return false
	}
	if z.acls.Authorize(z.principal, z.host, c.Op, c.Resource, name) {
		return true
	}
	return c.ClusterOp != kmsg.ACLOperationUnknown &&
		z.acls.Authorize(z.principal, z.host, c.ClusterOp, kmsg.ACLResourceTypeCluster, auth.ClusterName)
}

// mayAny is may for a FromAnyTopic check: the operation on some topic, or
// the check's cluster operation.
func (z *authz) mayAny(cond auth.Condition) bool {
	c := z.check(auth.FromAnyTopic, cond)
	if c == nil {
		return false
	}
	if c.ClusterOp != kmsg.ACLOperationUnknown &&
		z.acls.Authorize(z.principal, z.host, c.ClusterOp, kmsg.ACLResourceTypeCluster, auth.ClusterName) {
		return true
	}
	return z.acls.AuthorizeAny(z.principal, z.host, c.Op, c.Resource)
}

// cluster reports whether the principal may perform op on the cluster.
func (z *authz) cluster(op auth.Operation) bool {
	return z.acls.Authorize(z.principal, z.host, op, kmsg.ACLResourceTypeCluster, auth.ClusterName)
}

// code returns the error code for a name the check of (src, cond) denies.
func (z *authz) code(src auth.NameSource, cond auth.Condition) int16 {
	if c := z.check(src, cond); c != nil {
		return c.Code
	}
	return kerr.ClusterAuthorizationFailed.Code
}

// A guard authorizes one request of a coordinator's API before its handler
// runs. It returns a response refusing the whole request, or nil and, if
// it took denied parts out of the request, a merge that adds their errors
// to the handler's response; or an error, which closes the connection.
type guard func(z *authz, req kmsg.Request) (deny kmsg.Response, merge func(kmsg.Response), err error)

// inHandler is the guard of an API whose handler checks for itself.
func inHandler(*authz, kmsg.Request) (kmsg.Response, func(kmsg.Response), error) {
	return nil, nil, nil
}

// guards are the guards of the APIs that have one other than inHandler.
var guards = map[kmsg.Key]guard{
	kmsg.JoinGroup:    guardWhole(auth.FromGroup, func(r *kmsg.JoinGroupRequest) string { return r.Group }, func(r *kmsg.JoinGroupResponse, c int16) { r.ErrorCode = c }),
	kmsg.SyncGroup:    guardWhole(auth.FromGroup, func(r *kmsg.SyncGroupRequest) string { return r.Group }, func(r *kmsg.SyncGroupResponse, c int16) { r.ErrorCode = c }),
	kmsg.Heartbeat:    guardWhole(auth.FromGroup, func(r *kmsg.HeartbeatRequest) string { return r.Group }, func(r *kmsg.HeartbeatResponse, c int16) { r.ErrorCode = c }),
	kmsg.LeaveGroup:   guardWhole(auth.FromGroup, func(r *kmsg.LeaveGroupRequest) string { return r.Group }, func(r *kmsg.LeaveGroupResponse, c int16) { r.ErrorCode = c }),
	kmsg.OffsetCommit: guardOffsetCommit,
	kmsg.OffsetFetch:  guardOffsetFetch,
	kmsg.OffsetDelete: guardOffsetDelete,
	kmsg.DescribeGroups: guardNames(auth.FromGroup, func(r *kmsg.DescribeGroupsRequest) *[]string { return &r.Groups },
		func(r *kmsg.DescribeGroupsResponse, g string, c int16) {
			rg := kmsg.NewDescribeGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, c
			r.Groups = append(r.Groups, rg)
		}),
	kmsg.DeleteGroups: guardNames(auth.FromGroup, func(r *kmsg.DeleteGroupsRequest) *[]string { return &r.Groups },
		func(r *kmsg.DeleteGroupsResponse, g string, c int16) {
			rg := kmsg.NewDeleteGroupsResponseGroup()
			rg.Group, rg.ErrorCode = g, c
			r.Groups = append(r.Groups, rg)
		}),
	kmsg.ListGroups: guardListing(auth.FromGroup, func(r *kmsg.ListGroupsResponse) *[]kmsg.ListGroupsResponseGroup { return &r.Groups },
		func(g *kmsg.ListGroupsResponseGroup) string { return g.Group }),
	kmsg.InitProducerID:     guardInitProducerID,
	kmsg.AddPartitionsToTxn: guardAddPartitionsToTxn,
	kmsg.AddOffsetsToTxn:    guardAddOffsetsToTxn,
	kmsg.EndTxn:             guardWhole(auth.FromTransactionalID, func(r *kmsg.EndTxnRequest) string { return r.TransactionalID }, func(r *kmsg.EndTxnResponse, c int16) { r.ErrorCode = c }),
	kmsg.TxnOffsetCommit:    guardTxnOffsetCommit,
	kmsg.DescribeTransactions: guardNames(auth.FromTransactionalID, func(r *kmsg.DescribeTransactionsRequest) *[]string { return &r.TransactionalIDs },
		func(r *kmsg.DescribeTransactionsResponse, id string, c int16) {
			ts := kmsg.NewDescribeTransactionsResponseTransactionState()
			ts.TransactionalID, ts.ErrorCode = id, c
			r.TransactionStates = append(r.TransactionStates, ts)
		}),
	kmsg.ListTransactions: guardListing(auth.FromTransactionalID, func(r *kmsg.ListTransactionsResponse) *[]kmsg.ListTransactionsResponseTransactionState {
		return &r.TransactionStates
	}, func(ts *kmsg.ListTransactionsResponseTransactionState) string { return ts.TransactionalID }),
}

// inHandlerAPIs check inline, in their handlers.
var inHandlerAPIs = []kmsg.Key{
	kmsg.ApiVersions, kmsg.SASLHandshake, kmsg.SASLAuthenticate,
	kmsg.Metadata, kmsg.Produce, kmsg.Fetch, kmsg.ListOffsets, kmsg.OffsetForLeaderEpoch,
	kmsg.CreateTopics, kmsg.DeleteTopics, kmsg.CreatePartitions, kmsg.DeleteRecords,
	kmsg.DescribeConfigs, kmsg.AlterConfigs, kmsg.IncrementalAlterConfigs,
	kmsg.DescribeCluster, kmsg.FindCoordinator,
	kmsg.CreateACLs, kmsg.DescribeACLs, kmsg.DeleteACLs,
	kmsg.DescribeUserSCRAMCredentials, kmsg.AlterUserSCRAMCredentials,
}

// setAuthorization fills in each API's checks and guard.
func setAuthorization(apis map[int16]*api) {
	for _, a := range apis {
		a.checks, _ = auth.RulesFor(a.key.Int16())
		a.guard = guards[a.key]
	}
	for _, k := range inHandlerAPIs {
		if a := apis[k.Int16()]; a != nil {
			a.guard = inHandler
		}
	}
}

// serveAuthorized runs a's handler on req, behind its guard when
// authorization is on.
func (b *Broker) serveAuthorized(ctx context.Context, a *api, ci clientInfo, req kmsg.Request) answer {
	if b.acls == nil || a.guard == nil {
		return a.handle(ctx, req)
	}
	z := authz{b: b, acls: b.acls, principal: ci.Principal, host: ci.Host, checks: a.checks}
	deny, merge, err := a.guard(&z, req)
	switch {
	case err != nil:
		return answer{err: err}
	case deny != nil:
		return answer{resp: deny}
	}
	ans := a.handle(ctx, req)
	if merge == nil {
		return ans
	}
	if ans.later != nil {
		later := ans.later
		ans.later = func(ctx context.Context) kmsg.Response {
			resp := later(ctx)
			if resp != nil {
				merge(resp)
			}
			return resp
		}
	} else if ans.resp != nil {
		merge(ans.resp)
	}
	return ans
}

// partitionErrors returns a partition list with one error code.
func partitionErrors[P any](ps []int32, mk func(p int32, code int16) P, code int16) []P {
	out := make([]P, len(ps))
	for i, p := range ps {
		out[i] = mk(p, code)
	}
	return out
}

// takeDenied moves the entries of *ts whose name may not pass out of *ts,
// in place, and returns them; nil, and no allocation, when all pass.
func takeDenied[T any](ts *[]T, name func(*T) string, may func(string) bool) []T {
	var denied []T
	kept := (*ts)[:0]
	for i := range *ts {
		t := (*ts)[i]
		if may(name(&t)) {
			kept = append(kept, t)
		} else {
			denied = append(denied, t)
		}
	}
	*ts = kept
	return denied
}

// guardWhole guards an API that acts on one name of src (a group, a
// transactional id) and fails whole.
func guardWhole[Req kmsg.Request, Resp kmsg.Response](src auth.NameSource, name func(Req) string, fail func(Resp, int16)) guard {
	return func(z *authz, r kmsg.Request) (kmsg.Response, func(kmsg.Response), error) {
		req := r.(Req)
		if z.may(src, auth.Always, name(req)) {
			return nil, nil, nil
		}
		resp := req.ResponseKind().(Resp)
		fail(resp, z.code(src, auth.Always))
		return resp, nil, nil
	}
}

// guardNames guards an API that acts on a list of names of src: the names
// the principal may not act on are taken out of the request, and answered
// each with the API's code once the handler has answered the rest.
func guardNames[Req kmsg.Request, Resp kmsg.Response](src auth.NameSource, names func(Req) *[]string, answer func(resp Resp, name string, code int16)) guard {
	return func(z *authz, r kmsg.Request) (kmsg.Response, func(kmsg.Response), error) {
		denied := takeDenied(names(r.(Req)), func(n *string) string { return *n },
			func(n string) bool { return z.may(src, auth.Always, n) })
		if denied == nil {
			return nil, nil, nil
		}
		code := z.code(src, auth.Always)
		return nil, func(r kmsg.Response) {
			resp := r.(Resp)
			for _, n := range denied {
				answer(resp, n, code)
			}
		}, nil
	}
}

// guardListing guards a listing: the entries of names of src the principal
// may not see are left out of the response, as Kafka leaves them out.
func guardListing[Resp kmsg.Response, E any](src auth.NameSource, entries func(Resp) *[]E, name func(*E) string) guard {
	return func(z *authz, _ kmsg.Request) (kmsg.Response, func(kmsg.Response), error) {
		return nil, func(r kmsg.Response) {
			takeDenied(entries(r.(Resp)), name, func(n string) bool { return z.may(src, auth.Always, n) })
		}, nil
	}
}

func offsetCommitErrors(ts []kmsg.OffsetCommitRequestTopic, code int16) []kmsg.OffsetCommitResponseTopic {
	out := make([]kmsg.OffsetCommitResponseTopic, len(ts))
	for i, t := range ts {
		out[i] = kmsg.NewOffsetCommitResponseTopic()
		out[i].Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			out[i].Partitions = append(out[i].Partitions, rp)
		}
	}
	return out
}

func guardOffsetCommit(z *authz, r kmsg.Request) (kmsg.Response, func(kmsg.Response), error) {
	req := r.(*kmsg.OffsetCommitRequest)
	if !z.may(auth.FromGroup, auth.Always, req.Group) {
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		resp.Topics = offsetCommitErrors(req.Topics, z.code(auth.FromGroup, auth.Always))
		return resp, nil, nil
	}
	denied := takeDenied(&req.Topics, func(t *kmsg.OffsetCommitRequestTopic) string { return t.Topic },
		func(n string) bool { return z.may(auth.FromTopics, auth.Always, n) })
	if denied == nil {
		return nil, nil, nil
	}
	code := z.code(auth.FromTopics, auth.Always)
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.OffsetCommitResponse)
		resp.Topics = append(resp.Topics, offsetCommitErrors(denied, code)...)
	}, nil
}

func guardOffsetFetch(z *authz, r kmsg.Request) (kmsg.Response, func(kmsg.Response), error) {
	req := r.(*kmsg.OffsetFetchRequest)
	mayTopic := func(n string) bool { return z.may(auth.FromTopics, auth.NamedTopics, n) }
	mayList := func(n string) bool { return z.may(auth.FromTopics, auth.AllTopics, n) }
	groupCode := z.code(auth.FromGroup, auth.Always)
	topicCode := z.code(auth.FromTopics, auth.NamedTopics)
	if req.Version < 8 {
		if !z.may(auth.FromGroup, auth.Always, req.Group) {
			resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
			resp.ErrorCode = groupCode
			for _, t := range req.Topics {
				rt := kmsg.NewOffsetFetchResponseTopic()
				rt.Topic = t.Topic
				rt.Partitions = partitionErrors(t.Partitions, func(p int32, c int16) kmsg.OffsetFetchResponseTopicPartition {
					rp := kmsg.NewOffsetFetchResponseTopicPartition()
					rp.Partition, rp.Offset, rp.ErrorCode = p, -1, c
					return rp
				}, groupCode)
				resp.Topics = append(resp.Topics, rt)
			}
			return resp, nil, nil
		}
		all := req.Topics == nil
		denied := takeDenied(&req.Topics, func(t *kmsg.OffsetFetchRequestTopic) string { return t.Topic }, mayTopic)
		if denied == nil && !all {
			return nil, nil, nil
		}
		return nil, func(r kmsg.Response) {
			resp := r.(*kmsg.OffsetFetchResponse)
			if all {
				takeDenied(&resp.Topics, func(t *kmsg.OffsetFetchResponseTopic) string { return t.Topic }, mayList)
			}
			for _, t := range denied {
				rt := kmsg.NewOffsetFetchResponseTopic()
				rt.Topic = t.Topic
				rt.Partitions = partitionErrors(t.Partitions, func(p int32, c int16) kmsg.OffsetFetchResponseTopicPartition {
					rp := kmsg.NewOffsetFetchResponseTopicPartition()
					rp.Partition, rp.Offset, rp.ErrorCode = p, -1, c
					return rp
				}, topicCode)
				resp.Topics = append(resp.Topics, rt)
			}
		}, nil
	}
	// v8+: several groups, each with its own topics.
	deniedGroups := takeDenied(&req.Groups, func(g *kmsg.OffsetFetchRequestGroup) string { return g.Group },
		func(n string) bool { return z.may(auth.FromGroup, auth.Always, n) })
	type groupDenials struct {
		group  string
		all    bool
		topics []kmsg.OffsetFetchRequestGroupTopic
	}
	var per []groupDenials
	for i := range req.Groups {
		g := &req.Groups[i]
		all := g.Topics == nil
		denied := takeDenied(&g.Topics, func(t *kmsg.OffsetFetchRequestGroupTopic) string { return t.Topic }, mayTopic)
		if denied != nil || all {
			per = append(per, groupDenials{group: g.Group, all: all, topics: denied})
		}
	}
	if deniedGroups == nil && per == nil {
		return nil, nil, nil
	}
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.OffsetFetchResponse)
		for _, d := range per {
			for i := range resp.Groups {
				g := &resp.Groups[i]
				if g.Group != d.group {
					continue
				}
				if d.all {
					takeDenied(&g.Topics, func(t *kmsg.OffsetFetchResponseGroupTopic) string { return t.Topic }, mayList)
				}
				for _, t := range d.topics {
					rt := kmsg.NewOffsetFetchResponseGroupTopic()
					rt.Topic = t.Topic
					rt.Partitions = partitionErrors(t.Partitions, func(p int32, c int16) kmsg.OffsetFetchResponseGroupTopicPartition {
						rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
						rp.Partition, rp.Offset, rp.ErrorCode = p, -1, c
						return rp
					}, topicCode)
					g.Topics = append(g.Topics, rt)
				}
			}
		}
		for _, g := range deniedGroups {
			rg := kmsg.NewOffsetFetchResponseGroup()
			rg.Group, rg.ErrorCode = g.Group, groupCode
			resp.Groups = append(resp.Groups, rg)
		}
	}, nil
}

func guardOffsetDelete(z *authz, r kmsg.Request) (kmsg.Response, func(kmsg.Response), error) {
	req := r.(*kmsg.OffsetDeleteRequest)
	if !z.may(auth.FromGroup, auth.Always, req.Group) {
		resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
		resp.ErrorCode = z.code(auth.FromGroup, auth.Always)
		return resp, nil, nil
	}
	denied := takeDenied(&req.Topics, func(t *kmsg.OffsetDeleteRequestTopic) string { return t.Topic },
		func(n string) bool { return z.may(auth.FromTopics, auth.Always, n) })
	if denied == nil {
		return nil, nil, nil
	}
	code := z.code(auth.FromTopics, auth.Always)
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.OffsetDeleteResponse)
		for _, t := range denied {
			rt := kmsg.NewOffsetDeleteResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetDeleteResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
	}, nil
}

func guardInitProducerID(z *authz, r kmsg.Request) (kmsg.Response, func(kmsg.Response), error) {
	req := r.(*kmsg.InitProducerIDRequest)
	var ok bool
	var code int16
	if req.TransactionalID != nil {
		ok, code = z.may(auth.FromTransactionalID, auth.Transactional, *req.TransactionalID), z.code(auth.FromTransactionalID, auth.Transactional)
	} else {
		ok, code = z.mayAny(auth.NotTransactional), z.code(auth.FromAnyTopic, auth.NotTransactional)
	}
	if ok {
		return nil, nil, nil
	}
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch = code, -1, -1
	return resp, nil, nil
}

func guardAddPartitionsToTxn(z *authz, r kmsg.Request) (kmsg.Response, func(kmsg.Response), error) {
	req := r.(*kmsg.AddPartitionsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	if req.Version >= 4 {
		// Batched, from other brokers (KIP-890): not a client's request,
		// so, as in Kafka, ClusterAction on the cluster.
		if z.cluster(kmsg.ACLOperationClusterAction) {
			return nil, nil, nil
		}
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp, nil, nil
	}
	fill := func(code func(topic string) int16) {
		for _, t := range req.Topics {
			rt := kmsg.NewAddPartitionsToTxnResponseTopic()
			rt.Topic = t.Topic
			c := code(t.Topic)
			for _, p := range t.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p, c
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
	}
	if !z.may(auth.FromTransactionalID, auth.Always, req.TransactionalID) {
		code := z.code(auth.FromTransactionalID, auth.Always)
		fill(func(string) int16 { return code })
		return resp, nil, nil
	}
	allowed := true
	for _, t := range req.Topics {
		allowed = allowed && z.may(auth.FromTopics, auth.Always, t.Topic)
	}
	if allowed {
		return nil, nil, nil
	}
	// As in Kafka: nothing is added; the denied topics say why and the
	// others that they were not attempted.
	code := z.code(auth.FromTopics, auth.Always)
	fill(func(t string) int16 {
		if z.may(auth.FromTopics, auth.Always, t) {
			return kerr.OperationNotAttempted.Code
		}
		return code
	})
	return resp, nil, nil
}

func guardAddOffsetsToTxn(z *authz, r kmsg.Request) (kmsg.Response, func(kmsg.Response), error) {
	req := r.(*kmsg.AddOffsetsToTxnRequest)
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	switch {
	case !z.may(auth.FromTransactionalID, auth.Always, req.TransactionalID):
		resp.ErrorCode = z.code(auth.FromTransactionalID, auth.Always)
	case !z.may(auth.FromGroup, auth.Always, req.Group):
		resp.ErrorCode = z.code(auth.FromGroup, auth.Always)
	default:
		return nil, nil, nil
	}
	return resp, nil, nil
}

func txnOffsetCommitErrors(ts []kmsg.TxnOffsetCommitRequestTopic, code int16) []kmsg.TxnOffsetCommitResponseTopic {
	out := make([]kmsg.TxnOffsetCommitResponseTopic, len(ts))
	for i, t := range ts {
		out[i] = kmsg.NewTxnOffsetCommitResponseTopic()
		out[i].Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, code
			out[i].Partitions = append(out[i].Partitions, rp)
		}
	}
	return out
}

func guardTxnOffsetCommit(z *authz, r kmsg.Request) (kmsg.Response, func(kmsg.Response), error) {
	req := r.(*kmsg.TxnOffsetCommitRequest)
	code := int16(0)
	switch {
	case !z.may(auth.FromTransactionalID, auth.Always, req.TransactionalID):
		code = z.code(auth.FromTransactionalID, auth.Always)
	case !z.may(auth.FromGroup, auth.Always, req.Group):
		code = z.code(auth.FromGroup, auth.Always)
	}
	if code != 0 {
		resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		resp.Topics = txnOffsetCommitErrors(req.Topics, code)
		return resp, nil, nil
	}
	denied := takeDenied(&req.Topics, func(t *kmsg.TxnOffsetCommitRequestTopic) string { return t.Topic },
		func(n string) bool { return z.may(auth.FromTopics, auth.Always, n) })
	if denied == nil {
		return nil, nil, nil
	}
	code = z.code(auth.FromTopics, auth.Always)
	return nil, func(r kmsg.Response) {
		resp := r.(*kmsg.TxnOffsetCommitResponse)
		resp.Topics = append(resp.Topics, txnOffsetCommitErrors(denied, code)...)
	}, nil
}

// deniedTopic returns the error code for a topic the request may not act on
// under the API's Always check of topics, or 0 if it may (always, with
// authorization off: z nil).
func (z *authz) deniedTopic(name string) int16 {
	if z == nil || z.may(auth.FromTopics, auth.Always, name) {
		return 0
	}
	return z.code(auth.FromTopics, auth.Always)
}

// deniedConfig returns the error code for a config resource the request
// may not act on, or 0: a topic's is checked as the topic, a broker's (or
// its loggers') as the cluster.
func (z *authz) deniedConfig(typ kmsg.ConfigResourceType, name string) int16 {
	if z == nil {
		return 0
	}
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		if !z.may(auth.FromTopicConfigs, auth.Always, name) {
			return z.code(auth.FromTopicConfigs, auth.Always)
		}
	case kmsg.ConfigResourceTypeBroker, kmsg.ConfigResourceTypeBrokerLogger:
		if !z.may(auth.FromBrokerConfigs, auth.Always, auth.ClusterName) {
			return z.code(auth.FromBrokerConfigs, auth.Always)
		}
	}
	return 0
}
