package auth

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The handlers below answer the ACL APIs (v0 to v3) from the store. The
// caller authorizes the request first (Describe on the cluster for
// DescribeAcls, Alter on the cluster for CreateAcls and DeleteAcls; see
// RulesFor) and passes its verdict as authorized: a request that is not
// authorized gets CLUSTER_AUTHORIZATION_FAILED and changes nothing.
//
// Version 0 has no pattern types; its creations and filters are literal, as
// in Kafka.

// HandleCreateACLs answers CreateAcls. Each creation is validated on its own
// (INVALID_REQUEST with the reason); the valid ones are stored together in
// one atomic change.
func (a *ACLs) HandleCreateACLs(req *kmsg.CreateACLsRequest, authorized bool) *kmsg.CreateACLsResponse {
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	resp.Results = make([]kmsg.CreateACLsResponseResult, len(req.Creations))
	var valid []ACL
	var validAt []int
	for i, c := range req.Creations {
		r := &resp.Results[i]
		r.Default()
		if !authorized {
			setErr(&r.ErrorCode, &r.ErrorMessage, kerr.ClusterAuthorizationFailed, "")
			continue
		}
		acl := ACL{
			ResourceType: c.ResourceType,
			ResourceName: c.ResourceName,
			PatternType:  c.ResourcePatternType,
			Principal:    c.Principal,
			Host:         c.Host,
			Operation:    c.Operation,
			Permission:   c.PermissionType,
		}
		if req.Version == 0 {
			acl.PatternType = kmsg.ACLResourcePatternTypeLiteral
		}
		if err := acl.Validate(); err != nil {
			setErr(&r.ErrorCode, &r.ErrorMessage, kerr.InvalidRequest, "invalid ACL: "+err.Error())
			continue
		}
		valid = append(valid, acl)
		validAt = append(validAt, i)
	}
	if len(valid) > 0 {
		if err := a.Add(valid...); err != nil {
			for _, i := range validAt {
				r := &resp.Results[i]
				setErr(&r.ErrorCode, &r.ErrorMessage, kerr.UnknownServerError, err.Error())
			}
		}
	}
	return resp
}

// HandleDescribeACLs answers DescribeAcls: the ACLs the filter selects,
// grouped by resource pattern.
func (a *ACLs) HandleDescribeACLs(req *kmsg.DescribeACLsRequest, authorized bool) *kmsg.DescribeACLsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	if !authorized {
		setErr(&resp.ErrorCode, &resp.ErrorMessage, kerr.ClusterAuthorizationFailed, "")
		return resp
	}
	f := Filter{
		ResourceType: req.ResourceType,
		ResourceName: req.ResourceName,
		PatternType:  req.ResourcePatternType,
		Principal:    req.Principal,
		Host:         req.Host,
		Operation:    req.Operation,
		Permission:   req.PermissionType,
	}
	if req.Version == 0 {
		f.PatternType = kmsg.ACLResourcePatternTypeLiteral
	}
	if err := f.Validate(); err != nil {
		setErr(&resp.ErrorCode, &resp.ErrorMessage, kerr.InvalidRequest, err.Error())
		return resp
	}
	for _, acl := range a.List(f) { // sorted: ACLs of one pattern are adjacent
		n := len(resp.Resources)
		if n == 0 || resp.Resources[n-1].ResourceType != acl.ResourceType ||
			resp.Resources[n-1].ResourceName != acl.ResourceName || resp.Resources[n-1].ResourcePatternType != acl.PatternType {
			r := kmsg.NewDescribeACLsResponseResource()
			r.ResourceType, r.ResourceName, r.ResourcePatternType = acl.ResourceType, acl.ResourceName, acl.PatternType
			resp.Resources = append(resp.Resources, r)
			n++
		}
		e := kmsg.NewDescribeACLsResponseResourceACL()
		e.Principal, e.Host, e.Operation, e.PermissionType = acl.Principal, acl.Host, acl.Operation, acl.Permission
		resp.Resources[n-1].ACLs = append(resp.Resources[n-1].ACLs, e)
	}
	return resp
}

// HandleDeleteACLs answers DeleteAcls: every ACL that a valid filter selects
// is deleted, all in one atomic change, and each filter's result lists what
// it selected.
func (a *ACLs) HandleDeleteACLs(req *kmsg.DeleteACLsRequest, authorized bool) *kmsg.DeleteACLsResponse {
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	resp.Results = make([]kmsg.DeleteACLsResponseResult, len(req.Filters))
	var filters []Filter
	var filterAt []int
	for i, rf := range req.Filters {
		r := &resp.Results[i]
		r.Default()
		if !authorized {
			setErr(&r.ErrorCode, &r.ErrorMessage, kerr.ClusterAuthorizationFailed, "")
			continue
		}
		f := Filter{
			ResourceType: rf.ResourceType,
			ResourceName: rf.ResourceName,
			PatternType:  rf.ResourcePatternType,
			Principal:    rf.Principal,
			Host:         rf.Host,
			Operation:    rf.Operation,
			Permission:   rf.PermissionType,
		}
		if req.Version == 0 {
			f.PatternType = kmsg.ACLResourcePatternTypeLiteral
		}
		if err := f.Validate(); err != nil {
			setErr(&r.ErrorCode, &r.ErrorMessage, kerr.InvalidRequest, err.Error())
			continue
		}
		filters = append(filters, f)
		filterAt = append(filterAt, i)
	}
	if len(filters) == 0 {
		return resp
	}
	removed, err := a.removeAll(filters)
	for j, i := range filterAt {
		r := &resp.Results[i]
		if err != nil {
			setErr(&r.ErrorCode, &r.ErrorMessage, kerr.UnknownServerError, err.Error())
			continue
		}
		for _, acl := range removed[j] {
			m := kmsg.NewDeleteACLsResponseResultMatchingACL()
			m.ResourceType, m.ResourceName, m.ResourcePatternType = acl.ResourceType, acl.ResourceName, acl.PatternType
			m.Principal, m.Host, m.Operation, m.PermissionType = acl.Principal, acl.Host, acl.Operation, acl.Permission
			r.MatchingACLs = append(r.MatchingACLs, m)
		}
	}
	return resp
}

// setErr sets an error code and message; msg "" uses the error's own
// description.
func setErr(code *int16, msg **string, e *kerr.Error, text string) {
	*code = e.Code
	if text == "" {
		text = e.Message
	}
	*msg = kmsg.StringPtr(text)
}
