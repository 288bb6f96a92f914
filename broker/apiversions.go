package broker

import (
	"context"
	"regexp"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// clientSoftwareRE is what KIP-511 allows in ApiVersions' client software
// name and version.
var clientSoftwareRE = regexp.MustCompile(`^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$`)

// handleApiVersions lists the APIs and versions of the dispatch table.
func (b *Broker) handleApiVersions(_ context.Context, req *kmsg.ApiVersionsRequest) *kmsg.ApiVersionsResponse {
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	if req.Version >= 3 && (!clientSoftwareRE.MatchString(req.ClientSoftwareName) || !clientSoftwareRE.MatchString(req.ClientSoftwareVersion)) {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp
	}
	resp.ApiKeys = b.apiKeys()
	if req.Version >= 3 {
		// transaction.version 2 tells clients that KIP-890 part 2 is in
		// effect: Produce v12 and TxnOffsetCommit v5 add partitions to the
		// transaction themselves, and EndTxn v5 bumps the epoch on every
		// transaction, which closes the window for a late write of one
		// transaction to land in the next.
		sf := kmsg.NewApiVersionsResponseSupportedFeature()
		sf.Name, sf.MinVersion, sf.MaxVersion = transactionVersionFeature, 0, transactionVersion
		resp.SupportedFeatures = append(resp.SupportedFeatures, sf)
		ff := kmsg.NewApiVersionsResponseFinalizedFeature()
		ff.Name, ff.MinVersionLevel, ff.MaxVersionLevel = transactionVersionFeature, transactionVersion, transactionVersion
		resp.FinalizedFeatures = append(resp.FinalizedFeatures, ff)
		resp.FinalizedFeaturesEpoch = 0
	}
	return resp
}

// The transaction protocol version the broker runs (Kafka's
// transaction.version feature).
const (
	transactionVersionFeature = "transaction.version"
	transactionVersion        = 2
)

// apiVersionsFallback answers an ApiVersions request of a version newer than
// we know: v0 format, UNSUPPORTED_VERSION, and our list (KIP-511).
func (b *Broker) apiVersionsFallback() *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	resp.ApiKeys = b.apiKeys()
	return resp
}
