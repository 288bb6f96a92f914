package group

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestCommitAndFetch(t *testing.T) {
	e := newEnv(t)
	// A simple commit (no group management) creates the group.
	if code := e.commit(commitReq("g", "", -1, "t", map[int32]int64{0: 10, 1: 20})); code != 0 {
		t.Fatalf("simple commit: %d", code)
	}
	if got := e.fetch("g", "t", 0, 1, 2); !maps.Equal(got, map[int32]int64{0: 10, 1: 20, 2: -1}) {
		t.Fatalf("fetched %v", got)
	}
	if got := e.fetch("unknown", "t", 0); got[0] != -1 {
		t.Fatalf("unknown group: %v", got)
	}

	// Every version answers with the fields it has.
	for v := int16(0); v <= 9; v++ {
		req := commitReq("g", "", -1, "v", map[int32]int64{int32(v): int64(100 + v)})
		req.Version = v
		resp := e.c.OffsetCommit(e.ctx, req)
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("OffsetCommit v%d: %d", v, code)
		}
		roundTrip(t, resp)
	}

	// v2+: null topics fetch everything, in order.
	all := kmsg.NewPtrOffsetFetchRequest()
	all.Version = 7
	all.Group = "g"
	resp := e.c.OffsetFetch(e.ctx, all)
	if len(resp.Topics) != 2 || resp.Topics[0].Topic != "t" || resp.Topics[1].Topic != "v" || len(resp.Topics[1].Partitions) != 10 {
		t.Fatalf("fetch all: %+v", resp.Topics)
	}
	p := resp.Topics[0].Partitions[1]
	if p.Partition != 1 || p.Offset != 20 || p.LeaderEpoch != 7 || deref(p.Metadata) != "md-20" {
		t.Fatalf("fetched partition %+v", p)
	}
	if p := resp.Topics[1].Partitions[5]; p.LeaderEpoch != -1 {
		t.Fatalf("v5 commit has leader epoch %d, want -1", p.LeaderEpoch)
	}
	roundTrip(t, resp)

	// v8+: several groups in one request.
	multi := kmsg.NewPtrOffsetFetchRequest()
	multi.Version = 8
	for _, name := range []string{"g", "unknown"} {
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group = name
		rt := kmsg.NewOffsetFetchRequestGroupTopic()
		rt.Topic = "t"
		rt.Partitions = []int32{1}
		rg.Topics = append(rg.Topics, rt)
		multi.Groups = append(multi.Groups, rg)
	}
	mresp := e.c.OffsetFetch(e.ctx, multi)
	if len(mresp.Groups) != 2 || mresp.Groups[0].Topics[0].Partitions[0].Offset != 20 || mresp.Groups[1].Topics[0].Partitions[0].Offset != -1 {
		t.Fatalf("multi-group fetch: %+v", mresp.Groups)
	}
	roundTrip(t, mresp)

	for v := int16(0); v <= 9; v++ {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Version = v
		req.Group = "g"
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic = "t"
		rt.Partitions = []int32{0}
		req.Topics = []kmsg.OffsetFetchRequestTopic{rt}
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group = "g"
		req.Groups = []kmsg.OffsetFetchRequestGroup{rg}
		roundTrip(t, e.c.OffsetFetch(e.ctx, req))
	}

	big := commitReq("g", "", -1, "t", map[int32]int64{0: 11})
	huge := string(make([]byte, DefaultMaxMetadataBytes+1))
	big.Topics[0].Partitions[0].Metadata = &huge
	if code := e.commit(big); code != kerr.OffsetMetadataTooLarge.Code {
		t.Fatalf("oversized metadata: %d", code)
	}
	if got := e.fetch("g", "t", 0); got[0] != 10 {
		t.Fatalf("rejected commit changed the offset: %v", got)
	}
}

func TestCommitGenerationChecks(t *testing.T) {
	e := newEnv(t)
	ms := e.formGroup("g", "a", "b")
	a, b := ms[0].id, ms[1].id
	if code := e.commit(commitReq("g", a, 1, "t", map[int32]int64{0: 5})); code != 0 {
		t.Fatalf("member commit: %d", code)
	}
	if code := e.commit(commitReq("g", "", -1, "t", map[int32]int64{0: 6})); code != kerr.UnknownMemberID.Code {
		t.Fatalf("simple commit to a group with members: %d", code)
	}
	if code := e.commit(commitReq("g", "stranger", 1, "t", map[int32]int64{0: 6})); code != kerr.UnknownMemberID.Code {
		t.Fatalf("commit by a stranger: %d", code)
	}
	if code := e.commit(commitReq("nogroup", "x", 3, "t", map[int32]int64{0: 6})); code != kerr.IllegalGeneration.Code {
		t.Fatalf("commit with a generation to an unknown group: %d", code)
	}

	// b leaves; a rejoins into generation 2, whose assignment is not settled yet.
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version = 2
	leave.Group, leave.MemberID = "g", b
	e.c.LeaveGroup(e.ctx, leave)
	// During PreparingRebalance, commits of the current generation are still accepted.
	if code := e.commit(commitReq("g", a, 1, "t", map[int32]int64{0: 7})); code != 0 {
		t.Fatalf("commit during PreparingRebalance: %d", code)
	}
	if r := e.join("a", joinReq("g", a)); r.ErrorCode != 0 || r.Generation != 2 {
		t.Fatalf("rejoin: %+v", r)
	}
	if code := e.commit(commitReq("g", a, 2, "t", map[int32]int64{0: 8})); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("commit during CompletingRebalance: %d", code)
	}
	if r := e.sync(syncReq("g", a, 2, map[string]string{a: "x"})); r.ErrorCode != 0 {
		t.Fatal(r.ErrorCode)
	}
	if code := e.commit(commitReq("g", a, 1, "t", map[int32]int64{0: 9})); code != kerr.IllegalGeneration.Code {
		t.Fatalf("commit of a stale generation: %d", code)
	}
	if code := e.commit(commitReq("g", a, 2, "t", map[int32]int64{0: 10})); code != 0 {
		t.Fatalf("commit of the current generation: %d", code)
	}
	if got := e.fetch("g", "t", 0); got[0] != 10 {
		t.Fatalf("fetched %v, want 10", got)
	}
}

func TestCommitStoreFailure(t *testing.T) {
	e := newEnv(t)
	if code := e.commit(commitReq("g", "", -1, "t", map[int32]int64{0: 1})); code != 0 {
		t.Fatal(code)
	}
	e.store.setFail(errBoom)
	if code := e.commit(commitReq("g", "", -1, "t", map[int32]int64{0: 2})); code != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("commit with a failing store: %d", code)
	}
	e.store.setFail(fmt.Errorf("partition moved: %w", kerr.NotCoordinator))
	if code := e.commit(commitReq("g", "", -1, "t", map[int32]int64{0: 2})); code != kerr.NotCoordinator.Code {
		t.Fatalf("commit with a store returning a Kafka error: %d", code)
	}
	if got := e.fetch("g", "t", 0); got[0] != 1 {
		t.Fatalf("failed commit was applied: %v", got)
	}
}

func TestCommitUnknownPartition(t *testing.T) {
	e := newEnv(t, func(cfg *Config) {
		cfg.PartitionExists = func(topic string, p int32) bool { return topic == "t" && p < 2 }
	})
	resp := e.c.OffsetCommit(e.ctx, commitReq("g", "", -1, "t", map[int32]int64{1: 1, 5: 1}))
	for _, p := range resp.Topics[0].Partitions {
		want := int16(0)
		if p.Partition == 5 {
			want = kerr.UnknownTopicOrPartition.Code
		}
		if p.ErrorCode != want {
			t.Fatalf("partition %d: %d, want %d", p.Partition, p.ErrorCode, want)
		}
	}
}

func TestDeleteGroups(t *testing.T) {
	e := newEnv(t)
	e.formGroup("busy", "a")
	if code := e.commit(commitReq("idle", "", -1, "t", map[int32]int64{0: 1, 1: 2})); code != 0 {
		t.Fatal(code)
	}
	before := len(e.store.records())

	req := kmsg.NewPtrDeleteGroupsRequest()
	req.Version = 3
	req.Groups = []string{"busy", "idle", "unknown"}
	resp := e.c.DeleteGroups(e.ctx, req)
	want := []int16{kerr.NonEmptyGroup.Code, 0, kerr.GroupIDNotFound.Code}
	for i, g := range resp.Groups {
		if g.Group != req.Groups[i] || g.ErrorCode != want[i] {
			t.Fatalf("DeleteGroups %s: %d, want %d", g.Group, g.ErrorCode, want[i])
		}
	}
	roundTrip(t, resp)
	if st := e.state("busy"); st != "Stable" {
		t.Fatalf("refused deletion changed the group: %s", st)
	}
	if st := e.state("idle"); st != "none" {
		t.Fatalf("deleted group still there: %s", st)
	}
	if got := e.fetch("idle", "t", 0); got[0] != -1 {
		t.Fatalf("offsets of a deleted group: %v", got)
	}
	// Two offset tombstones and a group metadata tombstone.
	recs := e.store.records()[before:]
	if len(recs) != 3 {
		t.Fatalf("%d records written, want 3", len(recs))
	}
	for _, r := range recs {
		if r.Value != nil {
			t.Fatalf("record with a value: %x", r.Key)
		}
	}
	if version := int16(recs[2].Key[0])<<8 | int16(recs[2].Key[1]); version != groupMetadataKeyVersion {
		t.Fatalf("last tombstone has key version %d", version)
	}
}

func TestOffsetDelete(t *testing.T) {
	e := newEnv(t)
	ms := e.formGroup("g", "a") // subscribed to t1 (consumer protocol)
	if code := e.commit(commitReq("g", ms[0].id, 1, "t1", map[int32]int64{0: 1})); code != 0 {
		t.Fatal(code)
	}
	if code := e.commit(commitReq("g", ms[0].id, 1, "t2", map[int32]int64{0: 2})); code != 0 {
		t.Fatal(code)
	}
	del := func(group string, topics ...string) *kmsg.OffsetDeleteResponse {
		req := kmsg.NewPtrOffsetDeleteRequest()
		req.Group = group
		for _, topic := range topics {
			rt := kmsg.NewOffsetDeleteRequestTopic()
			rt.Topic = topic
			rp := kmsg.NewOffsetDeleteRequestTopicPartition()
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
		}
		return e.c.OffsetDelete(e.ctx, req)
	}
	resp := del("g", "t1", "t2")
	if resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != kerr.GroupSubscribedToTopic.Code || resp.Topics[1].Partitions[0].ErrorCode != 0 {
		t.Fatalf("OffsetDelete: %+v", resp)
	}
	roundTrip(t, resp)
	if got := e.fetch("g", "t1", 0); got[0] != 1 {
		t.Fatalf("t1: %v", got)
	}
	if got := e.fetch("g", "t2", 0); got[0] != -1 {
		t.Fatalf("t2 after deletion: %v", got)
	}
	if resp := del("unknown", "t1"); resp.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("unknown group: %d", resp.ErrorCode)
	}

	// A group whose protocol is not the consumer protocol: its subscriptions are unknown.
	e2 := newEnv(t, func(cfg *Config) { cfg.InitialRebalanceDelay = -1 })
	req := joinReq("c", "")
	req.Version = 3
	req.ProtocolType = "connect"
	if r := e2.join("w", req); r.ErrorCode != 0 {
		t.Fatal(r.ErrorCode)
	}
	req2 := kmsg.NewPtrOffsetDeleteRequest()
	req2.Group = "c"
	if resp := e2.c.OffsetDelete(e2.ctx, req2); resp.ErrorCode != kerr.NonEmptyGroup.Code {
		t.Fatalf("non-consumer group: %d", resp.ErrorCode)
	}
}

// TestLoadRestoresState replays what one coordinator wrote into a new one, as the broker does
// on restart.
func TestLoadRestoresState(t *testing.T) {
	e := newEnv(t)
	commit := func(group string, offsets map[int32]int64) {
		t.Helper()
		if code := e.commit(commitReq(group, "", -1, "t", offsets)); code != 0 {
			t.Fatal(code)
		}
	}
	commit("g", map[int32]int64{0: 10, 1: 20, 2: 30})
	commit("g", map[int32]int64{0: 15}) // last write wins
	req := kmsg.NewPtrOffsetDeleteRequest()
	req.Group = "g"
	rt := kmsg.NewOffsetDeleteRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewOffsetDeleteRequestTopicPartition()
	rp.Partition = 1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	if resp := e.c.OffsetDelete(e.ctx, req); resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatal("OffsetDelete failed")
	}
	commit("gone", map[int32]int64{0: 1})
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"gone"}
	if resp := e.c.DeleteGroups(e.ctx, del); resp.Groups[0].ErrorCode != 0 {
		t.Fatal("DeleteGroups failed")
	}
	ms := e.formGroup("live", "a", "b")
	if code := e.commit(commitReq("live", ms[1].id, 1, "t", map[int32]int64{3: 33})); code != 0 {
		t.Fatal(code)
	}

	// Restart.
	e2 := newEnv(t)
	for i, r := range e.store.records() {
		if err := e2.c.Load(r.Key, r.Value); err != nil {
			t.Fatalf("Load record %d: %v", i, err)
		}
	}
	if got := e2.fetch("g", "t", 0, 1, 2); !maps.Equal(got, map[int32]int64{0: 15, 1: -1, 2: 30}) {
		t.Fatalf("restored offsets %v", got)
	}
	if got := e2.fetch("live", "t", 3); got[3] != 33 {
		t.Fatalf("restored offsets of live: %v", got)
	}
	if st := e2.state("gone"); st != "none" {
		t.Fatalf("deleted group restored as %s", st)
	}
	d := e2.describe(5, "live")
	if d.State != "Stable" || d.Protocol != "range" || len(d.Members) != 2 || d.Members[0].MemberID != ms[0].id ||
		string(d.Members[1].MemberAssignment) != ms[1].assignment || d.Members[0].ClientID != "a" {
		t.Fatalf("restored group %+v", d)
	}
	// The members carry on where they were...
	if code := e2.heartbeat("live", ms[0].id, 1); code != 0 {
		t.Fatalf("heartbeat after restart: %d", code)
	}
	if r := e2.sync(syncReq("live", ms[1].id, 1, nil)); r.ErrorCode != 0 || string(r.MemberAssignment) != ms[1].assignment {
		t.Fatalf("SyncGroup after restart: %+v", r)
	}
	// ...and one that does not come back expires.
	e2.clock.Advance(6 * time.Second)
	e2.heartbeat("live", ms[0].id, 1)
	e2.clock.Advance(5 * time.Second)
	if code := e2.heartbeat("live", ms[1].id, 1); code != kerr.UnknownMemberID.Code {
		t.Fatalf("silent member after restart: %d", code)
	}
	// The next generation follows the restored one, so older generations stay fenced.
	if r := e2.join("a", joinReq("live", ms[0].id)); r.Generation != 2 {
		t.Fatalf("generation after restart: %+v", r)
	}
}

func TestLoadTolerance(t *testing.T) {
	e := newEnv(t)
	if err := e.c.Load([]byte{0}, nil); err == nil {
		t.Fatal("Load accepted a one-byte key")
	}
	if err := e.c.Load(offsetCommitKey("g", "t", 0), []byte{0, 3, 1}); err == nil {
		t.Fatal("Load accepted a truncated value")
	}
	// Keys of versions this coordinator does not know (Kafka's newer group records) are skipped.
	if err := e.c.Load([]byte{0, 9, 1, 2, 3}, []byte{1}); err != nil {
		t.Fatalf("Load of an unknown record kind: %v", err)
	}
	// Tombstones for things that do not exist are no-ops.
	if err := e.c.Load(offsetCommitKey("g", "t", 0), nil); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Load(groupMetadataKey("g"), nil); err != nil {
		t.Fatal(err)
	}
	if st := e.state("g"); st != "none" {
		t.Fatalf("tombstones created a group: %s", st)
	}
	// Older value versions Kafka wrote still load.
	v1 := kmsg.NewOffsetCommitValue()
	v1.Version = 1
	v1.Offset = 42
	v1.Metadata = "m"
	v1.CommitTimestamp = 1
	v1.ExpireTimestamp = 2
	if err := e.c.Load(offsetCommitKey("g", "t", 0), v1.AppendTo(nil)); err != nil {
		t.Fatal(err)
	}
	if got := e.fetch("g", "t", 0); got[0] != 42 {
		t.Fatalf("v1 offset: %v", got)
	}
}

func TestEncodingLayout(t *testing.T) {
	key := offsetCommitKey("grp", "top", 7)
	want := []byte{0, 1, 0, 3, 'g', 'r', 'p', 0, 3, 't', 'o', 'p', 0, 0, 0, 7}
	if string(key) != string(want) {
		t.Fatalf("offset commit key %x, want %x", key, want)
	}
	val := offsetCommitValue(offsetEntry{offset: 5, leaderEpoch: 2, metadata: "m", commitTime: 9})
	want = []byte{0, 3, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 2, 0, 1, 'm', 0, 0, 0, 0, 0, 0, 0, 9}
	if string(val) != string(want) {
		t.Fatalf("offset commit value %x, want %x", val, want)
	}
	if got := groupMetadataKey("grp"); string(got) != string([]byte{0, 2, 0, 3, 'g', 'r', 'p'}) {
		t.Fatalf("group metadata key %x", got)
	}
}

func TestCloseWaitsForCalls(t *testing.T) {
	block := make(chan struct{})
	st := blockingStore{entered: make(chan struct{}), release: block}
	c := New(Config{Store: st, Clock: newFakeClock()})
	done := make(chan int16, 1)
	go func() {
		resp := c.OffsetCommit(context.Background(), commitReq("g", "", -1, "t", map[int32]int64{0: 1}))
		done <- resp.Topics[0].Partitions[0].ErrorCode
	}()
	<-st.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Close gives up at once and aborts the write in progress.
	if err := c.Close(ctx); err == nil {
		t.Fatal("Close returned nil with a call in progress")
	}
	if code := recv(t, done); code != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("aborted commit: %d", code)
	}
	close(block)
}

// blockingStore blocks Append until its context ends or release is closed.
type blockingStore struct {
	entered chan struct{}
	release chan struct{}
}

func (s blockingStore) AppendTxn(ctx context.Context, grp string, _ int64, _ int16, recs []Record) error {
	return s.Append(ctx, grp, recs)
}

func (s blockingStore) Append(ctx context.Context, _ string, _ []Record) error {
	close(s.entered)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.release:
		return nil
	}
}
