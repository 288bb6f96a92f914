package group

import (
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// LeaveGroup handles a LeaveGroup request (v0–v5). From v3 on it removes a batch of members,
// each by member id or, with an empty member id, by instance id (how an administrator removes
// a static member); each gets its own error. Leaving triggers a rebalance of the others.
func (c *Coordinator) LeaveGroup(ctx context.Context, req *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	codes, top := c.leaveGroup(req.Group, leaving)
	if req.Version < 3 {
		resp.ErrorCode = top
		if top == 0 {
			resp.ErrorCode = codes[0]
		}
		return resp
	}
	resp.ErrorCode = top
	if top != 0 {
		return resp
	}
	resp.Members = make([]kmsg.LeaveGroupResponseMember, len(leaving))
	for i, lm := range leaving {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID = lm.MemberID
		rm.InstanceID = lm.InstanceID
		rm.ErrorCode = codes[i]
		resp.Members[i] = rm
	}
	return resp
}

// leaveGroup returns each leaving member's error, or a group-level error.
func (c *Coordinator) leaveGroup(name string, leaving []kmsg.LeaveGroupRequestMember) ([]int16, int16) {
	if !c.enter() {
		return nil, kerr.CoordinatorNotAvailable.Code
	}
	defer c.exit()
	if name == "" {
		return nil, kerr.InvalidGroupID.Code
	}
	codes := make([]int16, len(leaving))
	g := c.lockGroup(name)
	if g == nil {
		for i := range codes {
			codes[i] = kerr.UnknownMemberID.Code
		}
		return codes, 0
	}
	defer g.mu.Unlock()
	for i, lm := range leaving {
		codes[i] = c.leaveOne(g, lm.MemberID, deref(lm.InstanceID), deref(lm.Reason))
	}
	return codes, 0
}

func (c *Coordinator) leaveOne(g *group, memberID, instanceID, reason string) int16 {
	if memberID == "" {
		id, ok := g.static[instanceID]
		if instanceID == "" || !ok {
			return kerr.UnknownMemberID.Code
		}
		memberID = id
	} else if slot, ok := g.pending[memberID]; ok {
		slot.stop()
		delete(g.pending, memberID)
		c.tryCompleteJoin(g)
		return 0
	}
	if code := g.validateMember(memberID, instanceID); code != 0 {
		return code
	}
	m := g.members[memberID]
	c.log.Debug("member left", slog.String("group", g.name), slog.String("member_id", m.id),
		slog.String("instance_id", m.instanceID), slog.String("reason", reason))
	c.removeAndRebalance(g, m, "member "+m.id+" left the group")
	return 0
}
