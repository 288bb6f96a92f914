package broker

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker/internal/auth"
)

// api is one entry of the dispatch table: the versions of one Kafka API the
// broker implements, and its handler. ApiVersions advertises exactly these
// ranges; a request outside them closes the connection.
type api struct {
	key      kmsg.Key
	min, max int16
	// handle answers a decoded request. It runs on the connection's reader
	// goroutine, in request order; see answer for handing off a wait.
	handle func(ctx context.Context, req kmsg.Request) answer

	// guard and checks authorize a request before handle sees it, when
	// authorization is on (see authz.go); set by apiTable from auth.RulesFor.
	// An API without a guard is for super users only.
	guard  guard
	checks []auth.Check
}

// answer is what a handler returns: resp ready now, or later to compute it
// on a goroutine of its own (for anything that waits: a long poll, a
// durability wait, a group rebalance), so that the connection goes on
// decoding requests meanwhile. Responses are written in request order
// either way. With neither set nothing is written (an acks=0 produce); err
// closes the connection after the responses before it are written; close,
// with resp, closes it after resp is written (a failed SASL exchange).
type answer struct {
	resp  kmsg.Response
	later func(ctx context.Context) kmsg.Response
	err   error
	close bool
}

// inline adapts a handler that answers at once.
func inline[Req kmsg.Request, Resp kmsg.Response](fn func(context.Context, Req) Resp) func(context.Context, kmsg.Request) answer {
	return func(ctx context.Context, req kmsg.Request) answer {
		return answer{resp: fn(ctx, req.(Req))}
	}
}

// deferred adapts a handler that may block: it runs off the reader
// goroutine, with a context that ends when the connection or the broker
// closes.
func deferred[Req kmsg.Request, Resp kmsg.Response](fn func(context.Context, Req) Resp) func(context.Context, kmsg.Request) answer {
	return func(ctx context.Context, req kmsg.Request) answer {
		r := req.(Req)
		return answer{later: func(ctx context.Context) kmsg.Response { return fn(ctx, r) }}
	}
}

// apiTable lists every API the broker answers. Add an API here and nowhere
// else: ApiVersions reads this table.
//
// Versions: Produce starts at v3 and Fetch at v4 because older versions
// carry message sets (magic 0 and 1), which the log does not store or
// convert to. ListOffsets starts at v1 because v0's offset lists are not
// implemented.
//
// The group APIs are listed in groups.go (groupAPIs); FindCoordinator names
// this node for every group and transactional id.
func (b *Broker) apiTable() map[int16]*api {
	apis := []api{
		{key: kmsg.ApiVersions, min: 0, max: 4, handle: inline(b.handleApiVersions)},
		{key: kmsg.Metadata, min: 0, max: 12, handle: inline(b.handleMetadata)},
		{key: kmsg.Produce, min: 3, max: 12, handle: b.handleProduce},
		{key: kmsg.Fetch, min: 4, max: 13, handle: b.fetch},
		{key: kmsg.ListOffsets, min: 1, max: 7, handle: inline(b.handleListOffsets)},
		{key: kmsg.OffsetForLeaderEpoch, min: 0, max: 4, handle: inline(b.handleOffsetForLeaderEpoch)},
		{key: kmsg.CreateTopics, min: 0, max: 7, handle: inline(b.handleCreateTopics)},
		{key: kmsg.DeleteTopics, min: 0, max: 6, handle: inline(b.handleDeleteTopics)},
		{key: kmsg.CreatePartitions, min: 0, max: 3, handle: inline(b.handleCreatePartitions)},
		{key: kmsg.DeleteRecords, min: 0, max: 2, handle: inline(b.handleDeleteRecords)},
		{key: kmsg.DescribeConfigs, min: 0, max: 4, handle: inline(b.handleDescribeConfigs)},
		{key: kmsg.AlterConfigs, min: 0, max: 2, handle: inline(b.handleAlterConfigs)},
		{key: kmsg.IncrementalAlterConfigs, min: 0, max: 1, handle: inline(b.handleIncrementalAlterConfigs)},
		{key: kmsg.DescribeCluster, min: 0, max: 2, handle: inline(b.handleDescribeCluster)},
		{key: kmsg.FindCoordinator, min: 0, max: 4, handle: inline(b.handleFindCoordinator)},
	}
	apis = append(apis, b.groupAPIs()...)
	apis = append(apis, b.txnAPIs()...)
	apis = append(apis, b.securityAPIs()...)
	m := make(map[int16]*api, len(apis))
	for i := range apis {
		a := &apis[i]
		if req := a.key.Request(); req == nil || a.max > req.MaxVersion() {
			panic("broker: api table: " + a.key.Name() + " versions beyond what kmsg knows")
		}
		m[a.key.Int16()] = a
	}
	setAuthorization(m)
	return m
}

// apiKeys is the ApiVersions list: every API in the table, by key.
func (b *Broker) apiKeys() []kmsg.ApiVersionsResponseApiKey {
	keys := make([]kmsg.ApiVersionsResponseApiKey, 0, len(b.apis))
	for _, a := range b.apis {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = a.key.Int16(), a.min, a.max
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y kmsg.ApiVersionsResponseApiKey) int { return int(x.ApiKey) - int(y.ApiKey) })
	return keys
}
