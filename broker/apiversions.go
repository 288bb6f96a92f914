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
	return resp
}

// apiVersionsFallback answers an ApiVersions request of a version newer than
// we know: v0 format, UNSUPPORTED_VERSION, and our list (KIP-511).
func (b *Broker) apiVersionsFallback() *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	resp.ErrorCode = kerr.UnsupportedVersion.Code
	resp.ApiKeys = b.apiKeys()
	return resp
}
