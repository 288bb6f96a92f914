package group

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestThreeMembersJoinAndSync(t *testing.T) {
	e := newEnv(t)
	const grp = "g"
	a, b, c := e.memberID(grp, "a"), e.memberID(grp, "b"), e.memberID(grp, "c")
	for _, id := range []string{a, b, c} {
		if !strings.HasPrefix(id, string(id[0])+"-") || len(id) != len("a-")+36 {
			t.Fatalf("member id %q is not clientID-uuid", id)
		}
	}

	// a and b prefer roundrobin, c prefers range: roundrobin wins two votes to one.
	ja := e.joinAsync("a", joinReq(grp, a, "roundrobin", "t1", "range", "t1"))
	e.waitJoinParked(grp, a)
	jb := e.joinAsync("b", joinReq(grp, b, "roundrobin", "t2", "range", "t2"))
	e.waitJoinParked(grp, b)
	jc := e.joinAsync("c", joinReq(grp, c, "range", "t3", "roundrobin", "t3"))
	e.waitJoinParked(grp, a, b, c)

	// The initial delay expires once but b and c joined during it: it is extended.
	e.clock.Advance(testDelay)
	notYet(t, ja, "JoinGroup of a")
	if st := e.state(grp); st != "PreparingRebalance" {
		t.Fatalf("state %s, want PreparingRebalance", st)
	}
	e.clock.Advance(testDelay)

	ra, rb, rc := recv(t, ja), recv(t, jb), recv(t, jc)
	for _, r := range []*kmsg.JoinGroupResponse{ra, rb, rc} {
		if r.ErrorCode != 0 || r.Generation != 1 || r.LeaderID != a || deref(r.Protocol) != "roundrobin" || deref(r.ProtocolType) != "consumer" {
			t.Fatalf("JoinGroup response %+v: want generation 1, leader %s, protocol roundrobin", r, a)
		}
	}
	if len(rb.Members) != 0 || len(rc.Members) != 0 {
		t.Fatal("followers got the member list")
	}
	if len(ra.Members) != 3 {
		t.Fatalf("leader got %d members, want 3", len(ra.Members))
	}
	for i, want := range []struct{ id, topic string }{{a, "t1"}, {b, "t2"}, {c, "t3"}} {
		m := ra.Members[i]
		var md kmsg.ConsumerMemberMetadata
		if err := md.ReadFrom(m.ProtocolMetadata); err != nil {
			t.Fatal(err)
		}
		if m.MemberID != want.id || !slices.Equal(md.Topics, []string{want.topic}) {
			t.Fatalf("leader's member %d: %s %v, want %s [%s]", i, m.MemberID, md.Topics, want.id, want.topic)
		}
	}

	// Followers wait for the leader's assignment.
	sb := e.syncAsync(syncReq(grp, b, 1, nil))
	sc := e.syncAsync(syncReq(grp, c, 1, nil))
	e.waitSyncParked(grp, b, c)
	notYet(t, sb, "SyncGroup of b")
	ras := e.sync(syncReq(grp, a, 1, map[string]string{a: "pa", b: "pb", c: "pc"}))
	for _, x := range []struct {
		resp *kmsg.SyncGroupResponse
		want string
	}{{ras, "pa"}, {recv(t, sb), "pb"}, {recv(t, sc), "pc"}} {
		if x.resp.ErrorCode != 0 || string(x.resp.MemberAssignment) != x.want || deref(x.resp.Protocol) != "roundrobin" || deref(x.resp.ProtocolType) != "consumer" {
			t.Fatalf("SyncGroup response %+v, want assignment %s", x.resp, x.want)
		}
	}

	d := e.describe(5, grp)
	if d.State != "Stable" || d.Protocol != "roundrobin" || d.ProtocolType != "consumer" || len(d.Members) != 3 {
		t.Fatalf("described %+v", d)
	}
	if d.Members[1].MemberID != b || string(d.Members[1].MemberAssignment) != "pb" || d.Members[1].ClientID != "b" || d.Members[1].ClientHost != "/127.0.0.1" {
		t.Fatalf("described member %+v", d.Members[1])
	}
	for _, id := range []string{a, b, c} {
		if code := e.heartbeat(grp, id, 1); code != 0 {
			t.Fatalf("heartbeat of %s: %d", id, code)
		}
	}
	// The assignment was persisted as group metadata before it was handed out.
	recs := e.store.records()
	last := recs[len(recs)-1]
	var v kmsg.GroupMetadataValue
	if err := v.ReadFrom(last.Value); err != nil || v.Generation != 1 || len(v.Members) != 3 || string(v.Members[2].Assignment) != "pc" {
		t.Fatalf("last record: %+v, %v", v, err)
	}
}

func TestInitialDelayBoundedByRebalanceTimeout(t *testing.T) {
	e := newEnv(t)
	req := func(id string) *kmsg.JoinGroupRequest {
		r := joinReq("g", id)
		r.RebalanceTimeoutMillis = 7000 // the delay is 3s: at most 3s + 3s + 1s
		return r
	}
	first := e.joinAsync("a", func() *kmsg.JoinGroupRequest { r := req(""); r.Version = 3; return r }())
	e.waitUntil("a joins", func() bool { return e.state("g") == "PreparingRebalance" })
	start := e.clock.Now()
	// A new member arrives in every delay period; the rebalance must still complete at 7s.
	for i := 0; i < 3; i++ {
		id := e.memberID("g", "x")
		e.joinAsync("x", req(id))
		e.waitJoinParked("g", id)
		e.clock.Advance(testDelay)
	}
	if r := recv(t, first); r.ErrorCode != 0 || len(r.Members) != 4 {
		t.Fatalf("first JoinGroup: error %d with %d members, want 4", r.ErrorCode, len(r.Members))
	}
	e.inspect("g", func(g *group) {
		if took := g.stateSince.Sub(start); g.state != stateCompletingRebalance || took != 7*time.Second {
			t.Fatalf("state %s since %v, want CompletingRebalance since 7s", g.state, took)
		}
	})
}

func TestMemberIDRequired(t *testing.T) {
	e := newEnv(t, func(cfg *Config) { cfg.InitialRebalanceDelay = -1 })
	resp := e.join("client-a", joinReq("g", ""))
	if resp.ErrorCode != kerr.MemberIDRequired.Code || !strings.HasPrefix(resp.MemberID, "client-a-") || resp.Generation != -1 {
		t.Fatalf("first join: %+v", resp)
	}
	if st := e.state("g"); st != "Empty" {
		t.Fatalf("state %s after MEMBER_ID_REQUIRED, want Empty", st)
	}
	a := resp.MemberID
	// Without an initial delay a lone member completes the rebalance at once.
	resp = e.join("client-a", joinReq("g", a))
	if resp.ErrorCode != 0 || resp.MemberID != a || resp.LeaderID != a || resp.Generation != 1 || len(resp.Members) != 1 {
		t.Fatalf("second join: %+v", resp)
	}

	// Before v4 there is no MEMBER_ID_REQUIRED round trip.
	old := joinReq("g", "")
	old.Version = 3
	jb := e.joinAsync("client-b", old)
	e.waitUntil("b joins", func() bool { return e.state("g") == "PreparingRebalance" })
	if code := e.heartbeat("g", a, 1); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("heartbeat during rebalance: %d", code)
	}
	ra := e.join("client-a", joinReq("g", a))
	rb := recv(t, jb)
	if ra.ErrorCode != 0 || rb.ErrorCode != 0 || ra.Generation != 2 || rb.Generation != 2 || !strings.HasPrefix(rb.MemberID, "client-b-") {
		t.Fatalf("rejoin: %+v / %+v", ra, rb)
	}

	if r := e.join("client-c", joinReq("g", "client-c-unknown")); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("unknown member id: %d", r.ErrorCode)
	}
	if r := e.join("client-c", joinReq("nogroup", "client-c-unknown")); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("unknown group: %d", r.ErrorCode)
	}
	// A handed-out id expires after the session timeout if unused.
	c := e.memberID("g", "client-c")
	e.clock.Advance(testSession)
	if r := e.join("client-c", joinReq("g", c)); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("expired pending id: %d", r.ErrorCode)
	}
}

func TestJoinValidation(t *testing.T) {
	e := newEnv(t, func(cfg *Config) { cfg.InitialRebalanceDelay = -1 })
	short := joinReq("g", "")
	short.SessionTimeoutMillis = 1000
	long := joinReq("g", "")
	long.SessionTimeoutMillis = int32((31 * time.Minute) / time.Millisecond)
	noGroup := joinReq("", "")
	noType := joinReq("g", "")
	noType.ProtocolType = ""
	for name, tc := range map[string]struct {
		req  *kmsg.JoinGroupRequest
		want int16
	}{
		"short session": {short, kerr.InvalidSessionTimeout.Code},
		"long session":  {long, kerr.InvalidSessionTimeout.Code},
		"empty group":   {noGroup, kerr.InvalidGroupID.Code},
		"no type":       {noType, kerr.InconsistentGroupProtocol.Code},
	} {
		if r := e.join("x", tc.req); r.ErrorCode != tc.want {
			t.Errorf("%s: error %d, want %d", name, r.ErrorCode, tc.want)
		}
	}

	a := e.memberID("g", "a")
	if r := e.join("a", joinReq("g", a, "range", "t1")); r.ErrorCode != 0 {
		t.Fatal(r.ErrorCode)
	}
	other := joinReq("g", "", "range", "t1")
	other.ProtocolType = "connect"
	if r := e.join("b", other); r.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("other protocol type: %d", r.ErrorCode)
	}
	if r := e.join("b", joinReq("g", "", "sticky", "t1")); r.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("protocol no member supports: %d", r.ErrorCode)
	}
}

func TestLeaveTriggersRebalance(t *testing.T) {
	e := newEnv(t)
	ms := e.formGroup("g", "a", "b", "c")
	a, b, c := ms[0].id, ms[1].id, ms[2].id

	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version = 0
	leave.Group = "g"
	leave.MemberID = b
	if resp := e.c.LeaveGroup(e.ctx, leave); resp.ErrorCode != 0 {
		t.Fatalf("LeaveGroup v0: %d", resp.ErrorCode)
	}
	if resp := e.c.LeaveGroup(e.ctx, leave); resp.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("second LeaveGroup v0: %d", resp.ErrorCode)
	}
	for _, id := range []string{a, c} {
		if code := e.heartbeat("g", id, 1); code != kerr.RebalanceInProgress.Code {
			t.Fatalf("heartbeat of %s after a leave: %d", id, code)
		}
	}
	ja := e.joinAsync("a", joinReq("g", a))
	e.waitJoinParked("g", a)
	rc := e.join("c", joinReq("g", c))
	ra := recv(t, ja)
	if ra.ErrorCode != 0 || rc.ErrorCode != 0 || ra.Generation != 2 || rc.Generation != 2 || len(ra.Members) != 2 || ra.LeaderID != a {
		t.Fatalf("rejoin after leave: %+v / %+v", ra, rc)
	}

	// v3+: a batch, each member with its own error.
	leave = kmsg.NewPtrLeaveGroupRequest()
	leave.Version = 5
	leave.Group = "g"
	for _, id := range []string{c, "nobody", a} {
		m := kmsg.NewLeaveGroupRequestMember()
		m.MemberID = id
		leave.Members = append(leave.Members, m)
	}
	resp := e.c.LeaveGroup(e.ctx, leave)
	if resp.ErrorCode != 0 || len(resp.Members) != 3 || resp.Members[0].ErrorCode != 0 ||
		resp.Members[1].ErrorCode != kerr.UnknownMemberID.Code || resp.Members[2].ErrorCode != 0 {
		t.Fatalf("batch leave: %+v", resp)
	}
	// Everyone left: the rebalance completes at once with an empty group.
	if st := e.state("g"); st != "Empty" {
		t.Fatalf("state %s after everyone left, want Empty", st)
	}
	var gen int32
	e.inspect("g", func(g *group) { gen = g.generation })
	if gen != 3 {
		t.Fatalf("generation %d, want 3", gen)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t)
	ms := e.formGroup("g", "a", "b")
	a, b := ms[0].id, ms[1].id

	e.clock.Advance(6 * time.Second)
	if code := e.heartbeat("g", a, 1); code != 0 {
		t.Fatalf("heartbeat: %d", code)
	}
	e.clock.Advance(5 * time.Second) // b has been silent for 11s; its session is 10s
	if code := e.heartbeat("g", b, 1); code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat of expired member: %d", code)
	}
	if code := e.heartbeat("g", a, 1); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("heartbeat of survivor: %d", code)
	}
	ra := e.join("a", joinReq("g", a))
	if ra.ErrorCode != 0 || ra.Generation != 2 || len(ra.Members) != 1 || ra.Members[0].MemberID != a {
		t.Fatalf("rejoin: %+v", ra)
	}
}

// TestHeartbeatGenerationChecks checks that a heartbeat counts only for the member's current
// generation, in every state a member can heartbeat in: a member still on an old generation
// must learn it has to rejoin, and must not keep its session alive by heartbeating.
func TestHeartbeatGenerationChecks(t *testing.T) {
	e := newEnv(t)
	ms := e.formGroup("g", "a", "b")
	a, b := ms[0].id, ms[1].id
	expect := func(what, id string, generation int32, want int16) {
		t.Helper()
		if code := e.heartbeat("g", id, generation); code != want {
			t.Errorf("%s: heartbeat with generation %d: error %d, want %d", what, generation, code, want)
		}
	}

	// Stable, generation 1.
	expect("stable", a, 0, kerr.IllegalGeneration.Code)
	expect("stable", a, 2, kerr.IllegalGeneration.Code)
	expect("stable", a, -1, kerr.IllegalGeneration.Code)
	expect("stable", a, 1, 0)

	// b heartbeats only with a wrong generation: that does not renew its 10s session.
	e.clock.Advance(6 * time.Second)
	expect("stable", a, 1, 0)
	expect("stable", b, 0, kerr.IllegalGeneration.Code)
	e.clock.Advance(5 * time.Second)
	expect("after b's session ran out", b, 1, kerr.UnknownMemberID.Code)

	// PreparingRebalance: the current generation is still 1.
	if st := e.state("g"); st != "PreparingRebalance" {
		t.Fatalf("state %s after b expired, want PreparingRebalance", st)
	}
	expect("preparing", a, 2, kerr.IllegalGeneration.Code)
	expect("preparing", a, 1, kerr.RebalanceInProgress.Code)

	// CompletingRebalance: a is in generation 2 between its JoinGroup and SyncGroup.
	if r := e.join("a", joinReq("g", a)); r.ErrorCode != 0 || r.Generation != 2 {
		t.Fatalf("rejoin: %+v", r)
	}
	if st := e.state("g"); st != "CompletingRebalance" {
		t.Fatalf("state %s after the rejoin, want CompletingRebalance", st)
	}
	expect("completing", a, 1, kerr.IllegalGeneration.Code)
	expect("completing", a, 2, 0)

	// Stable, generation 2.
	if r := e.sync(syncReq("g", a, 2, map[string]string{a: "x"})); r.ErrorCode != 0 {
		t.Fatalf("SyncGroup: %d", r.ErrorCode)
	}
	expect("stable again", a, 1, kerr.IllegalGeneration.Code)
	expect("stable again", a, 2, 0)

	// A member left on the old generation is dropped when its session runs out.
	e.clock.Advance(6 * time.Second)
	expect("stable again", a, 1, kerr.IllegalGeneration.Code)
	e.clock.Advance(5 * time.Second)
	if st := e.state("g"); st != "Empty" {
		t.Errorf("state %s once a heartbeated only with generation 1, want Empty", st)
	}
	expect("after a's session ran out", a, 2, kerr.UnknownMemberID.Code)
}

func TestSessionExpiryRealClock(t *testing.T) {
	e := newEnv(t, func(cfg *Config) {
		cfg.Clock = nil
		cfg.InitialRebalanceDelay = -1
		cfg.MinSessionTimeout = time.Millisecond
	})
	id := e.memberID("g", "a")
	req := joinReq("g", id)
	req.SessionTimeoutMillis = 50
	if r := e.join("a", req); r.ErrorCode != 0 {
		t.Fatal(r.ErrorCode)
	}
	e.waitUntil("the silent member expires", func() bool { return e.state("g") == "Empty" })
}

func TestRebalanceTimeoutRemovesMembersThatDoNotRejoin(t *testing.T) {
	e := newEnv(t)
	ms := e.formGroup("g", "a", "b")
	a, b := ms[0].id, ms[1].id
	// a's subscription changes: a rebalance starts; b keeps heartbeating but never rejoins.
	ja := e.joinAsync("a", joinReq("g", a, "range", "t9"))
	e.waitJoinParked("g", a)
	for i := 0; i < 3; i++ {
		e.clock.Advance(6 * time.Second)
		notYet(t, ja, "JoinGroup of a")
		if code := e.heartbeat("g", b, 1); code != kerr.RebalanceInProgress.Code {
			t.Fatalf("heartbeat of b: %d", code)
		}
	}
	e.clock.Advance(2 * time.Second) // 20s: the rebalance timeout
	ra := recv(t, ja)
	if ra.ErrorCode != 0 || ra.Generation != 2 || len(ra.Members) != 1 {
		t.Fatalf("JoinGroup of a: %+v", ra)
	}
	if code := e.heartbeat("g", b, 1); code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat of b after it was removed: %d", code)
	}
}

func TestFollowerSyncUnblockedByRebalance(t *testing.T) {
	e := newEnv(t)
	a, b := e.memberID("g", "a"), e.memberID("g", "b")
	ja := e.joinAsync("a", joinReq("g", a))
	e.waitJoinParked("g", a)
	jb := e.joinAsync("b", joinReq("g", b))
	e.waitJoinParked("g", b)
	e.advanceThroughDelay("g")
	recv(t, ja)
	gen := recv(t, jb).Generation
	sb := e.syncAsync(syncReq("g", b, gen, nil))
	e.waitSyncParked("g", b)
	// A new member arrives before the leader syncs: b must rejoin.
	c := e.memberID("g", "c")
	jc := e.joinAsync("c", joinReq("g", c))
	if r := recv(t, sb); r.ErrorCode != kerr.RebalanceInProgress.Code {
		t.Fatalf("follower SyncGroup: %d, want REBALANCE_IN_PROGRESS", r.ErrorCode)
	}
	if r := e.sync(syncReq("g", a, gen, nil)); r.ErrorCode != kerr.RebalanceInProgress.Code {
		t.Fatalf("leader SyncGroup during rebalance: %d", r.ErrorCode)
	}
	e.waitJoinParked("g", c)
	ja = e.joinAsync("a", joinReq("g", a))
	jb = e.joinAsync("b", joinReq("g", b))
	for _, ch := range []<-chan *kmsg.JoinGroupResponse{ja, jb, jc} {
		if r := recv(t, ch); r.ErrorCode != 0 || r.Generation != gen+1 {
			t.Fatalf("rejoin: %+v", r)
		}
	}
	if r := e.sync(syncReq("g", a, gen, nil)); r.ErrorCode != kerr.IllegalGeneration.Code {
		t.Fatalf("SyncGroup of an old generation: %d", r.ErrorCode)
	}
	if r := e.sync(syncReq("g", "nobody", gen+1, nil)); r.ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("SyncGroup of a stranger: %d", r.ErrorCode)
	}
	bad := syncReq("g", a, gen+1, nil)
	other := "sticky"
	bad.Protocol = &other
	if r := e.sync(bad); r.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatalf("SyncGroup naming another protocol: %d", r.ErrorCode)
	}
}

func TestMembersThatNeverSyncAreRemoved(t *testing.T) {
	e := newEnv(t)
	a, b := e.memberID("g", "a"), e.memberID("g", "b")
	ja := e.joinAsync("a", joinReq("g", a))
	e.waitJoinParked("g", a)
	jb := e.joinAsync("b", joinReq("g", b))
	e.waitJoinParked("g", b)
	e.advanceThroughDelay("g")
	recv(t, ja)
	recv(t, jb)
	if r := e.sync(syncReq("g", a, 1, map[string]string{a: "x", b: "y"})); r.ErrorCode != 0 {
		t.Fatal(r.ErrorCode)
	}
	for i := 0; i < 4; i++ { // a stays alive; b heartbeats but never syncs
		e.clock.Advance(5 * time.Second)
		e.heartbeat("g", a, 1)
		e.heartbeat("g", b, 1)
	}
	if code := e.heartbeat("g", b, 1); code != kerr.UnknownMemberID.Code {
		t.Fatalf("member that never synced: %d", code)
	}
	if st := e.state("g"); st != "PreparingRebalance" {
		t.Fatalf("state %s, want PreparingRebalance", st)
	}
}

func TestStaticMemberRejoin(t *testing.T) {
	e := newEnv(t)
	static := func(memberID string, protocols ...string) *kmsg.JoinGroupRequest {
		r := joinReq("g", memberID, protocols...)
		id := "instance-1"
		r.InstanceID = &id
		return r
	}
	// A static member joins without MEMBER_ID_REQUIRED.
	js := e.joinAsync("s", static(""))
	e.waitUntil("the static member joins", func() bool { return e.state("g") == "PreparingRebalance" })
	d := e.memberID("g", "d")
	jd := e.joinAsync("d", joinReq("g", d))
	e.waitJoinParked("g", d)
	e.advanceThroughDelay("g")
	rs, rd := recv(t, js), recv(t, jd)
	old := rs.MemberID
	if rs.ErrorCode != 0 || rs.LeaderID != old || len(rs.Members) != 2 || deref(rs.Members[0].InstanceID) != "instance-1" {
		t.Fatalf("static JoinGroup: %+v", rs)
	}
	if r := e.sync(syncReq("g", old, 1, map[string]string{old: "ps", d: "pd"})); r.ErrorCode != 0 {
		t.Fatal(r.ErrorCode)
	}
	if r := e.sync(syncReq("g", d, rd.Generation, nil)); r.ErrorCode != 0 || string(r.MemberAssignment) != "pd" {
		t.Fatal(r.ErrorCode)
	}

	// The static member restarts: same instance id, same metadata, no member id.
	r := e.join("s", static(""))
	if r.ErrorCode != 0 || r.MemberID == old || r.Generation != 1 || r.LeaderID != old || len(r.Members) != 0 {
		t.Fatalf("static rejoin: %+v", r)
	}
	renewed := r.MemberID
	if st := e.state("g"); st != "Stable" {
		t.Fatalf("state %s after static rejoin, want Stable (no rebalance)", st)
	}
	if code := e.heartbeat("g", d, 1); code != 0 {
		t.Fatalf("other member's heartbeat: %d", code)
	}
	// The old member id is fenced.
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Version = 4
	hb.Group, hb.MemberID, hb.Generation = "g", old, 1
	instance := "instance-1"
	hb.InstanceID = &instance
	if resp := e.c.Heartbeat(e.ctx, hb); resp.ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("heartbeat of the old member id: %d", resp.ErrorCode)
	}
	commit := commitReq("g", old, 1, "t1", map[int32]int64{0: 1})
	commit.InstanceID = &instance
	if code := e.commit(commit); code != kerr.FencedInstanceID.Code {
		t.Fatalf("commit of the old member id: %d", code)
	}
	// The new member id gets the old assignment.
	if r := e.sync(syncReq("g", renewed, 1, nil)); r.ErrorCode != 0 || string(r.MemberAssignment) != "ps" {
		t.Fatalf("SyncGroup of the new member id: %d %q", r.ErrorCode, r.MemberAssignment)
	}
	dg := e.describe(5, "g")
	if dg.Members[0].MemberID != renewed || deref(dg.Members[0].InstanceID) != "instance-1" {
		t.Fatalf("described %+v", dg.Members)
	}

	// Rejoining with another subscription rebalances.
	js = e.joinAsync("s", static("", "range", "t2"))
	e.waitUntil("the rebalance starts", func() bool { return e.state("g") == "PreparingRebalance" })
	if code := e.heartbeat("g", d, 1); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("heartbeat during rebalance: %d", code)
	}
	rd2 := e.join("d", joinReq("g", d))
	rs2 := recv(t, js)
	if rd2.ErrorCode != 0 || rs2.ErrorCode != 0 || rs2.Generation != 2 || rs2.MemberID == renewed {
		t.Fatalf("rebalance after changed subscription: %+v / %+v", rs2, rd2)
	}

	// An administrator removes the static member by instance id.
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version = 3
	leave.Group = "g"
	lm := kmsg.NewLeaveGroupRequestMember()
	lm.InstanceID = &instance
	leave.Members = append(leave.Members, lm)
	if resp := e.c.LeaveGroup(e.ctx, leave); resp.ErrorCode != 0 || resp.Members[0].ErrorCode != 0 {
		t.Fatalf("leave by instance id: %+v", resp)
	}
	e.inspect("g", func(g *group) {
		if len(g.members) != 1 || len(g.static) != 0 {
			t.Fatalf("after leave by instance id: %d members, %d static", len(g.members), len(g.static))
		}
	})
}

func TestStaticMemberFencedWhileWaiting(t *testing.T) {
	e := newEnv(t)
	instance := "i"
	req := joinReq("g", "")
	req.InstanceID = &instance
	first := e.joinAsync("s", req)
	e.waitUntil("the static member joins", func() bool { return e.state("g") == "PreparingRebalance" })
	second := e.joinAsync("s", req)
	r1 := recv(t, first)
	if r1.ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("replaced JoinGroup: %d, want FENCED_INSTANCE_ID", r1.ErrorCode)
	}
	e.advanceThroughDelay("g")
	if r2 := recv(t, second); r2.ErrorCode != 0 || r2.Generation != 1 || r2.MemberID == r1.MemberID {
		t.Fatalf("replacing JoinGroup: %+v", r2)
	}
}

func TestCancelledJoinStopsWaiting(t *testing.T) {
	e := newEnv(t)
	ms := e.formGroup("g", "a", "b")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { done <- e.c.JoinGroup(ctx, Client{ID: "a"}, joinReq("g", ms[0].id, "range", "t5")) }()
	e.waitJoinParked("g", ms[0].id)
	cancel()
	recv(t, done)
	e.inspect("g", func(g *group) {
		if g.members[ms[0].id].join != nil {
			t.Fatal("cancelled JoinGroup still parked")
		}
	})
}

func TestCloseUnblocksWaiters(t *testing.T) {
	e := newEnv(t)
	id := e.memberID("g", "a")
	ja := e.joinAsync("a", joinReq("g", id))
	e.waitJoinParked("g", id)
	if err := e.c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := recv(t, ja); r.ErrorCode != kerr.NotCoordinator.Code {
		t.Fatalf("parked JoinGroup after Close: %d", r.ErrorCode)
	}
	if r := e.join("b", joinReq("g", "")); r.ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("JoinGroup after Close: %d", r.ErrorCode)
	}
	if err := e.c.Load([]byte{0, 1}, nil); err != ErrClosed {
		t.Fatalf("Load after Close: %v", err)
	}
	e.clock.Advance(time.Hour) // timers are stopped: nothing fires
}

func TestSelectProtocol(t *testing.T) {
	g := newGroup("g", time.Time{})
	add := func(id string, names ...string) {
		m := &member{id: id}
		for _, n := range names {
			m.protocols = append(m.protocols, protocol{name: n})
		}
		g.add(m)
	}
	add("a", "sticky", "range", "roundrobin")
	add("b", "range", "sticky")
	add("c", "roundrobin", "range", "sticky")
	// Candidates: sticky and range. Votes: a sticky, b range, c range.
	if got := g.selectProtocol(); got != "range" {
		t.Fatalf("selected %q, want range", got)
	}
}

func TestDescribeAndListGroups(t *testing.T) {
	e := newEnv(t)
	e.formGroup("stable", "a")
	if code := e.commit(commitReq("simple", "", -1, "t", map[int32]int64{0: 1})); code != 0 {
		t.Fatal(code)
	}

	if d := e.describe(5, "unknown"); d.ErrorCode != 0 || d.State != "Dead" {
		t.Fatalf("unknown group v5: %+v", d)
	}
	if d := e.describe(6, "unknown"); d.ErrorCode != kerr.GroupIDNotFound.Code || d.ErrorMessage == nil {
		t.Fatalf("unknown group v6: %+v", d)
	}
	if d := e.describe(5, "simple"); d.State != "Empty" || len(d.Members) != 0 {
		t.Fatalf("simple group: %+v", d)
	}

	list := func(version int16, states, types []string) []string {
		req := kmsg.NewPtrListGroupsRequest()
		req.Version = version
		req.StatesFilter = states
		req.TypesFilter = types
		resp := e.c.ListGroups(e.ctx, req)
		var names []string
		for _, g := range resp.Groups {
			names = append(names, g.Group+"/"+g.GroupState+"/"+g.ProtocolType)
		}
		return names
	}
	if got := list(5, nil, nil); !slices.Equal(got, []string{"simple/Empty/", "stable/Stable/consumer"}) {
		t.Fatalf("all groups: %v", got)
	}
	if got := list(4, []string{"stable"}, nil); !slices.Equal(got, []string{"stable/Stable/consumer"}) {
		t.Fatalf("stable groups: %v", got)
	}
	if got := list(5, nil, []string{"consumer"}); len(got) != 0 {
		t.Fatalf("consumer-type groups: %v", got)
	}
	if got := list(5, nil, []string{"Classic"}); len(got) != 2 {
		t.Fatalf("classic groups: %v", got)
	}
}

// TestResponsesEncode checks that responses of every version encode and decode, which catches
// fields a version needs that were left unset.
func TestResponsesEncode(t *testing.T) {
	e := newEnv(t, func(cfg *Config) { cfg.InitialRebalanceDelay = -1 })
	for v := int16(0); v <= 9; v++ {
		req := joinReq("g"+string(rune('0'+v)), "")
		req.Version = v
		resp := e.join("c", req)
		if resp.ErrorCode == kerr.MemberIDRequired.Code {
			req.MemberID = resp.MemberID
			resp = e.join("c", req)
		}
		if resp.ErrorCode != 0 {
			t.Fatalf("JoinGroup v%d: %d", v, resp.ErrorCode)
		}
		roundTrip(t, resp)
		if v <= 5 {
			sreq := syncReq(req.Group, resp.MemberID, resp.Generation, map[string]string{resp.MemberID: "x"})
			sreq.Version = v
			roundTrip(t, e.sync(sreq))
		}
	}
	for v := int16(0); v <= 6; v++ {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Version = v
		req.Groups = []string{"g0", "none"}
		req.IncludeAuthorizedOperations = true
		roundTrip(t, e.c.DescribeGroups(e.ctx, req))
	}
}

func roundTrip(t *testing.T, resp kmsg.Response) {
	t.Helper()
	b := resp.AppendTo(nil)
	back := resp.RequestKind().ResponseKind()
	back.SetVersion(resp.GetVersion())
	if err := back.ReadFrom(b); err != nil {
		t.Fatalf("%T v%d does not decode: %v", resp, resp.GetVersion(), err)
	}
}

func TestAssignmentStoreFailure(t *testing.T) {
	e := newEnv(t)
	a, b := e.memberID("g", "a"), e.memberID("g", "b")
	ja := e.joinAsync("a", joinReq("g", a))
	e.waitJoinParked("g", a)
	jb := e.joinAsync("b", joinReq("g", b))
	e.waitJoinParked("g", b)
	e.advanceThroughDelay("g")
	recv(t, ja)
	recv(t, jb)
	sb := e.syncAsync(syncReq("g", b, 1, nil))
	e.waitSyncParked("g", b)
	e.store.setFail(errBoom)
	if r := e.sync(syncReq("g", a, 1, map[string]string{a: "x", b: "y"})); r.ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("leader SyncGroup with a failing store: %d", r.ErrorCode)
	}
	if r := recv(t, sb); r.ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("follower SyncGroup with a failing store: %d", r.ErrorCode)
	}
	if st := e.state("g"); st != "PreparingRebalance" {
		t.Fatalf("state %s, want PreparingRebalance", st)
	}
}

func TestFailedJoinLeavesNoGroup(t *testing.T) {
	e := newEnv(t)
	req := joinReq("g", "")
	req.Protocols = nil
	if r := e.join("a", req); r.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Fatal(r.ErrorCode)
	}
	e.memberID("h", "a")
	e.clock.Advance(testSession) // the handed-out id expires unused
	for _, name := range []string{"g", "h"} {
		if st := e.state(name); st != "none" {
			t.Fatalf("group %s left behind as %s", name, st)
		}
	}
}
