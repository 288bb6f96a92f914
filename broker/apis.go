package broker

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kmsg"
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
}

// answer is what a handler returns: resp ready now, or later to compute it
// on a goroutine of its own (for anything that waits: a long poll, a
// durability wait, a group rebalance), so that the connection goes on
// decoding requests meanwhile. Responses are written in request order
// either way. With neither set nothing is written (an acks=0 produce); err
// closes the connection after the responses before it are written.
type answer struct {
	resp  kmsg.Response
	later func(ctx context.Context) kmsg.Response
	err   error
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
		{kmsg.ApiVersions, 0, 4, inline(b.handleApiVersions)},
		{kmsg.Metadata, 0, 12, inline(b.handleMetadata)},
		{kmsg.Produce, 3, 12, b.handleProduce},
		{kmsg.Fetch, 4, 13, b.fetch},
		{kmsg.ListOffsets, 1, 7, inline(b.handleListOffsets)},
		{kmsg.OffsetForLeaderEpoch, 0, 4, inline(b.handleOffsetForLeaderEpoch)},
		{kmsg.CreateTopics, 0, 7, inline(b.handleCreateTopics)},
		{kmsg.DeleteTopics, 0, 6, inline(b.handleDeleteTopics)},
		{kmsg.CreatePartitions, 0, 3, inline(b.handleCreatePartitions)},
		{kmsg.DeleteRecords, 0, 2, inline(b.handleDeleteRecords)},
		{kmsg.DescribeConfigs, 0, 4, inline(b.handleDescribeConfigs)},
		{kmsg.AlterConfigs, 0, 2, inline(b.handleAlterConfigs)},
		{kmsg.IncrementalAlterConfigs, 0, 1, inline(b.handleIncrementalAlterConfigs)},
		{kmsg.DescribeCluster, 0, 2, inline(b.handleDescribeCluster)},
		{kmsg.FindCoordinator, 0, 4, inline(b.handleFindCoordinator)},
	}
	apis = append(apis, b.groupAPIs()...)
	apis = append(apis, b.txnAPIs()...)
	m := make(map[int16]*api, len(apis))
	for i := range apis {
		a := &apis[i]
		if req := a.key.Request(); req == nil || a.max > req.MaxVersion() {
			panic("broker: api table: " + a.key.Name() + " versions beyond what kmsg knows")
		}
		m[a.key.Int16()] = a
	}
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
