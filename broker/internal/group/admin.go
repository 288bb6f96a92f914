package group

import (
	"context"
	"log/slog"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupOperations is the AuthorizedOperations bit set DescribeGroups reports: with no
// authorizer every operation a group supports is allowed, READ (3), DELETE (6) and DESCRIBE (8).
const groupOperations int32 = 1<<3 | 1<<6 | 1<<8

// groupType is the type ListGroups v5 reports for every group: this coordinator speaks only
// the classic protocol.
const groupType = "classic"

// DescribeGroups handles a DescribeGroups request (v0–v6). Members' metadata and assignments
// are reported only for a Stable group, as Kafka does. An unknown group is described as Dead,
// or, from v6 on, answered GROUP_ID_NOT_FOUND.
func (c *Coordinator) DescribeGroups(ctx context.Context, req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	entered := c.enter()
	if entered {
		defer c.exit()
	}
	for _, name := range req.Groups {
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = name
		if !entered {
			dg.ErrorCode = kerr.CoordinatorNotAvailable.Code
		} else {
			c.describe(&dg, req)
		}
		if dg.ErrorCode != 0 && req.Version >= 6 {
			dg.ErrorMessage = errorMessage(dg.ErrorCode)
		}
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

func (c *Coordinator) describe(dg *kmsg.DescribeGroupsResponseGroup, req *kmsg.DescribeGroupsRequest) {
	g := c.lockGroup(dg.Group)
	if g == nil {
		if req.Version >= 6 {
			dg.ErrorCode = kerr.GroupIDNotFound.Code
		} else {
			dg.State = stateDead.String()
		}
		return
	}
	defer g.mu.Unlock()
	dg.State = g.state.String()
	dg.ProtocolType = g.protocolType
	if req.IncludeAuthorizedOperations {
		dg.AuthorizedOperations = groupOperations
	}
	stable := g.state == stateStable
	if stable {
		dg.Protocol = g.protocol
	}
	for _, m := range g.order {
		dm := kmsg.NewDescribeGroupsResponseGroupMember()
		dm.MemberID = m.id
		dm.InstanceID = m.instanceIDPtr()
		dm.ClientID = m.clientID
		dm.ClientHost = m.clientHost
		if stable {
			dm.ProtocolMetadata = m.metadata(g.protocol)
			dm.MemberAssignment = m.assignment
		}
		dg.Members = append(dg.Members, dm)
	}
}

// ListGroups handles a ListGroups request (v0–v5), with the states filter of v4+ and the types
// filter of v5+ (matched case-insensitively; every group here is of type "classic").
func (c *Coordinator) ListGroups(ctx context.Context, req *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	if !c.enter() {
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	defer c.exit()
	matches := func(filter []string, s string) bool {
		return len(filter) == 0 || slices.ContainsFunc(filter, func(f string) bool { return strings.EqualFold(f, s) })
	}
	if !matches(req.TypesFilter, groupType) {
		return resp
	}
	for _, g := range c.snapshotGroups() {
		g.mu.Lock()
		st, protocolType := g.state, g.protocolType
		g.mu.Unlock()
		if st == stateDead || !matches(req.StatesFilter, st.String()) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group = g.name
		lg.ProtocolType = protocolType
		lg.GroupState = st.String()
		lg.GroupType = groupType
		resp.Groups = append(resp.Groups, lg)
	}
	return resp
}

// DeleteGroups handles a DeleteGroups request (v0–v3). Only an Empty group may be deleted
// (NON_EMPTY_GROUP otherwise); its offsets, pending transactional ones included, and its
// metadata are tombstoned in the OffsetsTopic before it is forgotten.
func (c *Coordinator) DeleteGroups(ctx context.Context, req *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	entered := c.enter()
	if entered {
		defer c.exit()
	}
	for _, name := range req.Groups {
		dg := kmsg.NewDeleteGroupsResponseGroup()
		dg.Group = name
		if !entered {
			dg.ErrorCode = kerr.CoordinatorNotAvailable.Code
		} else {
			dg.ErrorCode = c.deleteGroup(ctx, name)
		}
		if dg.ErrorCode != 0 && req.Version >= 3 {
			dg.ErrorMessage = errorMessage(dg.ErrorCode)
		}
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

func (c *Coordinator) deleteGroup(ctx context.Context, name string) int16 {
	g := c.lockGroup(name)
	if g == nil {
		return kerr.GroupIDNotFound.Code
	}
	defer g.mu.Unlock()
	if g.state != stateEmpty {
		return kerr.NonEmptyGroup.Code
	}
	recs := make([]Record, 0, 1+len(g.offsets))
	for _, t := range sortedTopics(g.offsets) {
		for _, p := range sortedPartitions(g.offsets[t]) {
			recs = append(recs, Record{Key: offsetCommitKey(g.name, t, p)})
		}
	}
	// Pending transactional offsets go too, as in Kafka: the tombstones make a later commit
	// marker of their transaction find nothing to apply, in replay as live.
	for _, ft := range g.pendingOnly() {
		for _, p := range ft.partitions {
			recs = append(recs, Record{Key: offsetCommitKey(g.name, ft.topic, p)})
		}
	}
	recs = append(recs, Record{Key: groupMetadataKey(g.name)})
	if err := c.append(ctx, g, recs); err != nil {
		c.log.Warn("could not delete group", slog.String("group", g.name), slog.Any("error", err))
		return storeErrCode(err)
	}
	g.stopTimers()
	clear(g.pending)
	g.setState(stateDead, c.clock.Now())
	c.removeGroup(g)
	c.log.Info("deleted group", slog.String("group", g.name))
	return 0
}

// errorMessage is the message sent along with code in versions that carry one.
func errorMessage(code int16) *string {
	var msg string
	if ke, ok := kerr.ErrorForCode(code).(*kerr.Error); ok {
		msg = ke.Description
	}
	return &msg
}
