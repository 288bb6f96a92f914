package group

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnReq builds a TxnOffsetCommit of producer pid (epoch 0) at the given version, with
// generation -1 and no member.
func txnReq(version int16, grp string, pid int64, topic string, offsets map[int32]int64) *kmsg.TxnOffsetCommitRequest {
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.Version = version
	req.TransactionalID = fmt.Sprintf("tx-%d", pid)
	req.Group = grp
	req.ProducerID = pid
	t := kmsg.NewTxnOffsetCommitRequestTopic()
	t.Topic = topic
	for _, p := range slices.Sorted(maps.Keys(offsets)) {
		rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		rp.Partition = p
		rp.Offset = offsets[p]
		rp.LeaderEpoch = 4
		md := fmt.Sprintf("txn-%d", offsets[p])
		rp.Metadata = &md
		t.Partitions = append(t.Partitions, rp)
	}
	req.Topics = append(req.Topics, t)
	return req
}

// txnCommit sends req and returns the error code of its partitions, which must all be equal.
func (e *env) txnCommit(req *kmsg.TxnOffsetCommitRequest) int16 {
	e.t.Helper()
	resp := e.c.TxnOffsetCommit(e.ctx, req)
	if resp.Version != req.Version {
		e.t.Fatalf("response version %d to request version %d", resp.Version, req.Version)
	}
	code := int16(-100)
	for i, t := range resp.Topics {
		if t.Topic != req.Topics[i].Topic || len(t.Partitions) != len(req.Topics[i].Partitions) {
			e.t.Fatalf("response topics %+v do not match the request", resp.Topics)
		}
		for _, p := range t.Partitions {
			if code != -100 && p.ErrorCode != code {
				e.t.Fatalf("partitions of one commit got different errors: %+v", resp.Topics)
			}
			code = p.ErrorCode
		}
	}
	return code
}

// mustTxn commits offsets of pid for grp, which must succeed.
func (e *env) mustTxn(grp string, pid int64, topic string, offsets map[int32]int64) {
	e.t.Helper()
	if code := e.txnCommit(txnReq(5, grp, pid, topic, offsets)); code != 0 {
		e.t.Fatalf("TxnOffsetCommit of producer %d to %s: error %d", pid, grp, code)
	}
}

// mustCommit commits offsets for grp outside any group generation, which must succeed.
func (e *env) mustCommit(grp, topic string, offsets map[int32]int64) {
	e.t.Helper()
	if code := e.commit(commitReq(grp, "", -1, topic, offsets)); code != 0 {
		e.t.Fatalf("OffsetCommit to %s: error %d", grp, code)
	}
}

// marker ends pid's transaction as the broker does: the marker goes to the log, then
// CompleteTxn.
func (e *env) marker(pid int64, commit bool) {
	e.store.appendMarker(pid, commit)
	e.c.CompleteTxn(pid, commit)
}

// fetched is one partition of an OffsetFetch answer.
type fetched struct {
	offset int64
	code   int16
}

// fetchStable fetches with RequireStable at v7 (one group) and v8 (the groups array), checks
// that both agree, and returns each partition's offset and error code.
func (e *env) fetchStable(grp, topic string, partitions ...int32) map[int32]fetched {
	e.t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 7
	req.Group = grp
	req.RequireStable = true
	t := kmsg.NewOffsetFetchRequestTopic()
	t.Topic = topic
	t.Partitions = partitions
	req.Topics = append(req.Topics, t)
	resp := e.c.OffsetFetch(e.ctx, req)
	if resp.ErrorCode != 0 {
		e.t.Fatalf("OffsetFetch v7: error %d", resp.ErrorCode)
	}
	out := make(map[int32]fetched)
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			if p.ErrorCode != 0 && (p.Offset != -1 || p.LeaderEpoch != -1 || deref(p.Metadata) != "") {
				e.t.Fatalf("OffsetFetch v7 %s[%d]: error %d with offset %d", rt.Topic, p.Partition, p.ErrorCode, p.Offset)
			}
			out[p.Partition] = fetched{p.Offset, p.ErrorCode}
		}
	}

	req8 := kmsg.NewPtrOffsetFetchRequest()
	req8.Version = 8
	req8.RequireStable = true
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = grp
	gt := kmsg.NewOffsetFetchRequestGroupTopic()
	gt.Topic = topic
	gt.Partitions = partitions
	rg.Topics = append(rg.Topics, gt)
	req8.Groups = append(req8.Groups, rg)
	resp8 := e.c.OffsetFetch(e.ctx, req8)
	out8 := make(map[int32]fetched)
	for _, rt := range resp8.Groups[0].Topics {
		for _, p := range rt.Partitions {
			out8[p.Partition] = fetched{p.Offset, p.ErrorCode}
		}
	}
	if !maps.Equal(out, out8) {
		e.t.Fatalf("OffsetFetch v7 %v and v8 %v disagree", out, out8)
	}
	return out
}

const unstable = 88 // UNSTABLE_OFFSET_COMMIT

func TestTxnOffsetsBecomeVisibleOnCommit(t *testing.T) {
	if kerr.UnstableOffsetCommit.Code != unstable {
		t.Fatal("UNSTABLE_OFFSET_COMMIT is not 88")
	}
	e := newEnv(t)
	e.mustCommit("g", "t", map[int32]int64{0: 5})
	e.mustTxn("g", 1, "t", map[int32]int64{0: 10, 1: 11})

	// Pending: invisible, and unstable for a client that asks.
	if got := e.fetch("g", "t", 0, 1); !maps.Equal(got, map[int32]int64{0: 5, 1: -1}) {
		t.Fatalf("offsets with a transaction open: %v", got)
	}
	if got := e.fetchStable("g", "t", 0, 1, 2); !maps.Equal(got, map[int32]fetched{0: {-1, unstable}, 1: {-1, unstable}, 2: {-1, 0}}) {
		t.Fatalf("stable offsets with a transaction open: %v", got)
	}
	// Without RequireStable, or before v7, a pending partition answers its committed offset.
	all := kmsg.NewPtrOffsetFetchRequest()
	all.Version = 6
	all.Group = "g"
	all.RequireStable = true // not on the wire before v7
	if resp := e.c.OffsetFetch(e.ctx, all); len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 ||
		resp.Topics[0].Partitions[0].Offset != 5 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("OffsetFetch v6 of every offset: %+v", resp.Topics)
	}
	// Every offset, stable: only committed partitions are listed, as in Kafka.
	all.Version = 7
	if resp := e.c.OffsetFetch(e.ctx, all); len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 ||
		resp.Topics[0].Partitions[0].ErrorCode != unstable {
		t.Fatalf("OffsetFetch v7 of every offset: %+v", resp.Topics)
	}

	// Another producer's transaction on the same partition aborts: nothing changes.
	e.mustTxn("g", 2, "t", map[int32]int64{0: 99})
	e.marker(2, false)
	if got := e.fetchStable("g", "t", 0); got[0].code != unstable {
		t.Fatalf("producer 1 is still open: %v", got)
	}

	e.marker(1, true)
	if got := e.fetchStable("g", "t", 0, 1); !maps.Equal(got, map[int32]fetched{0: {10, 0}, 1: {11, 0}}) {
		t.Fatalf("offsets after commit: %v", got)
	}
	e.inspect("g", func(g *group) {
		if e := g.offsets["t"][1]; e.leaderEpoch != 4 || e.metadata != "txn-11" {
			t.Fatalf("committed entry %+v", e)
		}
	})

	// A new transaction that aborts leaves the committed offsets as they were.
	e.mustTxn("g", 1, "t", map[int32]int64{0: 20})
	e.marker(1, false)
	if got := e.fetchStable("g", "t", 0); got[0] != (fetched{10, 0}) {
		t.Fatalf("offset after abort: %v", got)
	}
	// Markers with nothing pending, repeated or unknown, are harmless.
	e.marker(1, true)
	e.marker(77, true)
	if got := e.fetchStable("g", "t", 0, 1); !maps.Equal(got, map[int32]fetched{0: {10, 0}, 1: {11, 0}}) {
		t.Fatalf("offsets after stray markers: %v", got)
	}
}

// TestTxnOffsetsLogOrder checks Kafka's rule for mixing plain and transactional commits of a
// partition: whichever record is later in the log wins, whenever the transaction commits.
func TestTxnOffsetsLogOrder(t *testing.T) {
	e := newEnv(t)
	// Transactional, then plain, then the commit marker: the plain commit stays.
	e.mustTxn("g", 1, "t", map[int32]int64{0: 10})
	e.mustCommit("g", "t", map[int32]int64{0: 15})
	if got := e.fetch("g", "t", 0); got[0] != 15 {
		t.Fatalf("plain commit during a transaction: %v", got)
	}
	e.marker(1, true)
	if got := e.fetch("g", "t", 0); got[0] != 15 {
		t.Fatalf("an older transactional offset overrode a later plain one: %v", got)
	}

	// Plain, then transactional, then the marker: the transaction's offset wins.
	e.mustCommit("g", "t", map[int32]int64{1: 5})
	e.mustTxn("g", 1, "t", map[int32]int64{1: 6})
	e.marker(1, true)
	if got := e.fetch("g", "t", 1); got[1] != 6 {
		t.Fatalf("transactional offset after a plain one: %v", got)
	}

	// Two producers on one partition: the later record wins even if its transaction
	// commits first.
	e.mustTxn("g", 1, "t", map[int32]int64{2: 100})
	e.mustTxn("g", 2, "t", map[int32]int64{2: 200})
	e.marker(2, true)
	e.marker(1, true)
	if got := e.fetch("g", "t", 2); got[2] != 200 {
		t.Fatalf("two producers: %v", got)
	}

	// Within one transaction the last commit of a partition counts.
	e.mustTxn("g", 3, "t", map[int32]int64{3: 1})
	e.mustTxn("g", 3, "t", map[int32]int64{3: 2})
	e.marker(3, true)
	if got := e.fetch("g", "t", 3); got[3] != 2 {
		t.Fatalf("two commits in one transaction: %v", got)
	}

	// One producer's transaction spans groups; its marker completes all of them.
	e.mustTxn("g", 4, "t", map[int32]int64{4: 4})
	e.mustTxn("h", 4, "u", map[int32]int64{0: 40})
	e.marker(4, true)
	if a, b := e.fetch("g", "t", 4), e.fetch("h", "u", 0); a[4] != 4 || b[0] != 40 {
		t.Fatalf("transaction over two groups: %v %v", a, b)
	}
}

func TestTxnOffsetCommitValidation(t *testing.T) {
	e := newEnv(t, func(cfg *Config) {
		cfg.MaxMetadataBytes = 8
		cfg.PartitionExists = func(topic string, _ int32) bool { return topic != "missing" }
	})
	ms := e.formGroup("g", "a", "b")
	gen := ms[0].generation
	withMember := func(version int16, memberID string, generation int32, instanceID *string) *kmsg.TxnOffsetCommitRequest {
		req := txnReq(version, "g", 1, "t", map[int32]int64{0: 1})
		req.MemberID = memberID
		req.Generation = generation
		req.InstanceID = instanceID
		return req
	}
	instance := "i"
	cases := []struct {
		name string
		req  *kmsg.TxnOffsetCommitRequest
		want int16
	}{
		{"member of the generation", withMember(3, ms[1].id, gen, nil), 0},
		{"old generation", withMember(3, ms[1].id, gen-1, nil), kerr.IllegalGeneration.Code},
		{"unknown member", withMember(3, "nobody", gen, nil), kerr.UnknownMemberID.Code},
		{"member id without generation", withMember(3, "nobody", -1, nil), kerr.UnknownMemberID.Code},
		{"unknown instance id", withMember(3, ms[1].id, gen, &instance), kerr.UnknownMemberID.Code},
		// Unlike OffsetCommit, a commit with no identity is accepted in a group with members:
		// the versions before v3 cannot carry one.
		{"no identity", withMember(3, "", -1, nil), 0},
		{"v2 ignores the identity fields", withMember(2, "nobody", gen+5, nil), 0},
		{"v6 names topics by id", withMember(6, ms[1].id, gen, nil), kerr.UnsupportedVersion.Code},
	}
	for _, tc := range cases {
		if code := e.txnCommit(tc.req); code != tc.want {
			t.Errorf("%s: error %d, want %d", tc.name, code, tc.want)
		}
	}
	// The plain commit with no identity is refused, which shows the difference is deliberate.
	if code := e.commit(commitReq("g", "", -1, "t", map[int32]int64{0: 1})); code != kerr.UnknownMemberID.Code {
		t.Fatalf("plain commit with no identity: %d", code)
	}

	// An unknown group is created for generation -1, refused for a real generation.
	if code := e.txnCommit(withGroup(txnReq(5, "", 1, "t", map[int32]int64{0: 1}), "new", 3)); code != kerr.IllegalGeneration.Code {
		t.Fatalf("unknown group, generation 3: %d", code)
	}
	if st := e.state("new"); st != "none" {
		t.Fatalf("refused commit created the group: %s", st)
	}
	e.mustTxn("new", 1, "t", map[int32]int64{0: 1})
	if d := e.describe(5, "new"); d.State != "Empty" {
		t.Fatalf("group holding only pending offsets: %+v", d)
	}

	// Per-partition errors: the other partitions are still committed.
	req := txnReq(5, "new", 2, "t", map[int32]int64{1: 1})
	long := "much too long"
	req.Topics[0].Partitions[0].Metadata = &long
	miss := kmsg.NewTxnOffsetCommitRequestTopic()
	miss.Topic = "missing"
	miss.Partitions = []kmsg.TxnOffsetCommitRequestTopicPartition{kmsg.NewTxnOffsetCommitRequestTopicPartition()}
	ok := kmsg.NewTxnOffsetCommitRequestTopic()
	ok.Topic = "fine"
	ok.Partitions = []kmsg.TxnOffsetCommitRequestTopicPartition{kmsg.NewTxnOffsetCommitRequestTopicPartition()}
	ok.Partitions[0].Offset = 3
	req.Topics = append(req.Topics, miss, ok)
	resp := e.c.TxnOffsetCommit(e.ctx, req)
	if c := []int16{resp.Topics[0].Partitions[0].ErrorCode, resp.Topics[1].Partitions[0].ErrorCode, resp.Topics[2].Partitions[0].ErrorCode}; !slices.Equal(c, []int16{kerr.OffsetMetadataTooLarge.Code, kerr.UnknownTopicOrPartition.Code, 0}) {
		t.Fatalf("per-partition errors %v", c)
	}
	e.marker(2, true)
	if got := e.fetch("new", "fine", 0); got[0] != 3 {
		t.Fatalf("the good partition of a partly failed commit: %v", got)
	}
	if got := e.fetch("new", "t", 1); got[1] != -1 {
		t.Fatalf("the refused partition was committed: %v", got)
	}

	// Leader epochs exist from v2.
	e.mustCommit("epochs", "t", map[int32]int64{0: 0})
	if code := e.txnCommit(txnReq(1, "epochs", 3, "t", map[int32]int64{0: 1})); code != 0 {
		t.Fatal(code)
	}
	if code := e.txnCommit(txnReq(2, "epochs", 3, "t", map[int32]int64{1: 1})); code != 0 {
		t.Fatal(code)
	}
	e.marker(3, true)
	e.inspect("epochs", func(g *group) {
		if a, b := g.offsets["t"][0].leaderEpoch, g.offsets["t"][1].leaderEpoch; a != -1 || b != 4 {
			t.Fatalf("leader epochs %d (v1) and %d (v2)", a, b)
		}
	})
}

func withGroup(req *kmsg.TxnOffsetCommitRequest, grp string, generation int32) *kmsg.TxnOffsetCommitRequest {
	req.Group = grp
	req.Generation = generation
	return req
}

// TestTxnCommitDuringRebalance: between JoinGroup and SyncGroup OffsetCommit answers
// REBALANCE_IN_PROGRESS, but Kafka does not enforce the group's state on TxnOffsetCommit.
func TestTxnCommitDuringRebalance(t *testing.T) {
	e := newEnv(t)
	ms := e.formGroup("g", "a")
	// A change of subscription makes the only member rebalance at once.
	resp := e.join("a", joinReq("g", ms[0].id, "range", "other"))
	if resp.ErrorCode != 0 || resp.Generation != ms[0].generation+1 {
		t.Fatalf("rejoin: %+v", resp)
	}
	if st := e.state("g"); st != "CompletingRebalance" {
		t.Fatalf("state %s", st)
	}
	if code := e.commit(commitReq("g", ms[0].id, resp.Generation, "t", map[int32]int64{0: 1})); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("plain commit while completing a rebalance: %d", code)
	}
	req := withGroup(txnReq(5, "", 1, "t", map[int32]int64{0: 1}), "g", resp.Generation)
	req.MemberID = ms[0].id
	if code := e.txnCommit(req); code != 0 {
		t.Fatalf("transactional commit while completing a rebalance: %d", code)
	}
}

func TestTxnStoreFailure(t *testing.T) {
	e := newEnv(t)
	e.store.setFail(errBoom)
	if code := e.txnCommit(txnReq(5, "g", 1, "t", map[int32]int64{0: 1})); code != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("failed write: %d", code)
	}
	if st := e.state("g"); st != "none" {
		t.Fatalf("a failed commit left group %s", st)
	}
	e.store.setFail(fmt.Errorf("epoch: %w", kerr.InvalidProducerEpoch))
	if code := e.txnCommit(txnReq(5, "g", 1, "t", map[int32]int64{0: 1})); code != kerr.InvalidProducerEpoch.Code {
		t.Fatalf("failed write with a Kafka error: %d", code)
	}
	e.store.setFail(nil)
	e.marker(1, true)
	if got := e.fetchStable("g", "t", 0); got[0] != (fetched{-1, 0}) {
		t.Fatalf("offsets of failed writes: %v", got)
	}
	if n := len(e.store.entries()); n != 1 {
		t.Fatalf("%d log entries, want only the marker", n)
	}

	// A closed coordinator refuses.
	if err := e.c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code := e.txnCommit(txnReq(5, "g", 1, "t", map[int32]int64{0: 1})); code != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("closed: %d", code)
	}
	if err := e.c.LoadTxn(1, offsetCommitKey("g", "t", 0), offsetCommitValue(offsetEntry{})); err == nil {
		t.Fatal("LoadTxn after Close")
	}
	e.c.CompleteTxn(1, true) // a no-op, and no panic
}

// TestTxnDeletion follows Kafka: OffsetDelete and DeleteGroups are not refused because of
// pending transactional offsets; their tombstones delete those too, so that the transaction's
// commit marker later finds nothing to apply.
func TestTxnDeletion(t *testing.T) {
	e := newEnv(t)
	e.mustCommit("g", "t", map[int32]int64{0: 1})
	e.mustTxn("g", 1, "t", map[int32]int64{0: 2, 1: 3, 2: 4})

	del := kmsg.NewPtrOffsetDeleteRequest()
	del.Group = "g"
	rt := kmsg.NewOffsetDeleteRequestTopic()
	rt.Topic = "t"
	for _, p := range []int32{0, 1, 3} {
		rp := kmsg.NewOffsetDeleteRequestTopicPartition()
		rp.Partition = p
		rt.Partitions = append(rt.Partitions, rp)
	}
	del.Topics = append(del.Topics, rt)
	before := len(e.store.records())
	resp := e.c.OffsetDelete(e.ctx, del)
	if resp.ErrorCode != 0 {
		t.Fatalf("OffsetDelete: %d", resp.ErrorCode)
	}
	for _, p := range resp.Topics[0].Partitions {
		if p.ErrorCode != 0 {
			t.Fatalf("OffsetDelete %d: %d", p.Partition, p.ErrorCode)
		}
	}
	// Tombstones for the committed partition 0 and the pending-only partition 1, none for 3.
	recs := e.store.records()[before:]
	if len(recs) != 2 || recs[0].Value != nil || recs[1].Value != nil ||
		string(recs[1].Key) != string(offsetCommitKey("g", "t", 1)) {
		t.Fatalf("OffsetDelete wrote %d records", len(recs))
	}
	if got := e.fetchStable("g", "t", 0, 1, 2); !maps.Equal(got, map[int32]fetched{0: {-1, 0}, 1: {-1, 0}, 2: {-1, unstable}}) {
		t.Fatalf("after OffsetDelete: %v", got)
	}
	e.marker(1, true)
	if got := e.fetch("g", "t", 0, 1, 2); !maps.Equal(got, map[int32]int64{0: -1, 1: -1, 2: 4}) {
		t.Fatalf("after commit: %v", got)
	}

	// DeleteGroups of a group with a committed offset and pending ones on other partitions.
	e.mustTxn("g", 2, "t", map[int32]int64{2: 5, 7: 8})
	before = len(e.store.records())
	dg := kmsg.NewPtrDeleteGroupsRequest()
	dg.Groups = []string{"g"}
	if resp := e.c.DeleteGroups(e.ctx, dg); resp.Groups[0].ErrorCode != 0 {
		t.Fatalf("DeleteGroups: %d", resp.Groups[0].ErrorCode)
	}
	var keys []string
	for _, r := range e.store.records()[before:] {
		if r.Value != nil {
			t.Fatal("DeleteGroups wrote a value")
		}
		keys = append(keys, fmt.Sprintf("%x", r.Key))
	}
	want := []string{fmt.Sprintf("%x", offsetCommitKey("g", "t", 2)), fmt.Sprintf("%x", offsetCommitKey("g", "t", 7)), fmt.Sprintf("%x", groupMetadataKey("g"))}
	if !slices.Equal(keys, want) {
		t.Fatalf("DeleteGroups tombstones %v, want %v", keys, want)
	}
	e.marker(2, true)
	if st := e.state("g"); st != "none" {
		t.Fatalf("the commit marker revived the deleted group: %s", st)
	}
}

// dump describes every group's offsets, committed and pending, with the order numbers that
// decide which wins, so that two coordinators can be compared.
func dump(c *Coordinator) string {
	var b strings.Builder
	for _, g := range c.snapshotGroups() {
		g.mu.Lock()
		fmt.Fprintf(&b, "group %s %s\n", g.name, g.state)
		writeOffsets := func(prefix string, offsets map[string]map[int32]offsetEntry) {
			for _, t := range sortedTopics(offsets) {
				for _, p := range sortedPartitions(offsets[t]) {
					fmt.Fprintf(&b, "  %s %s[%d] %+v\n", prefix, t, p, offsets[t][p])
				}
			}
		}
		writeOffsets("committed", g.offsets)
		for _, pid := range slices.Sorted(maps.Keys(g.txnOffsets)) {
			writeOffsets(fmt.Sprintf("pending(%d)", pid), g.txnOffsets[pid])
		}
		g.mu.Unlock()
	}
	return b.String()
}

// TestTxnReplayEveryBoundary runs a history of plain and transactional commits, markers and
// deletions, and checks that replaying the log cut after any of its batches or markers rebuilds
// exactly the state the live coordinator had at that point, order numbers included.
func TestTxnReplayEveryBoundary(t *testing.T) {
	e := newEnv(t)
	deleteOffset := func(grp, topic string, partition int32) {
		req := kmsg.NewPtrOffsetDeleteRequest()
		req.Group = grp
		rt := kmsg.NewOffsetDeleteRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewOffsetDeleteRequestTopicPartition()
		rp.Partition = partition
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		if resp := e.c.OffsetDelete(e.ctx, req); resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("OffsetDelete %s %s[%d] failed", grp, topic, partition)
		}
	}
	deleteGroup := func(grp string) {
		req := kmsg.NewPtrDeleteGroupsRequest()
		req.Groups = []string{grp}
		if resp := e.c.DeleteGroups(e.ctx, req); resp.Groups[0].ErrorCode != 0 {
			t.Fatalf("DeleteGroups %s: %d", grp, resp.Groups[0].ErrorCode)
		}
	}
	history := []func(){
		func() { e.mustCommit("g1", "t", map[int32]int64{0: 5}) },
		func() { e.mustTxn("g1", 100, "t", map[int32]int64{0: 10, 1: 11}) },
		func() { e.mustTxn("g1", 200, "t", map[int32]int64{0: 20}) },
		func() { e.mustCommit("g1", "t", map[int32]int64{1: 15}) },
		func() { e.marker(100, true) },
		func() { e.mustTxn("g2", 100, "t", map[int32]int64{0: 1}) },
		func() { e.marker(200, false) },
		func() { e.mustTxn("g1", 300, "t", map[int32]int64{2: 7}) },
		func() { e.mustTxn("g1", 300, "t", map[int32]int64{2: 8}) },
		func() { deleteOffset("g1", "t", 2) },
		func() { e.mustTxn("g1", 300, "t", map[int32]int64{3: 9}) },
		func() { e.marker(300, true) },
		func() { e.marker(100, true) },
		func() { e.mustTxn("g3", 400, "t", map[int32]int64{0: 4}) },
		func() { e.mustCommit("g3", "u", map[int32]int64{0: 44}) },
		func() { deleteGroup("g3") },
		func() { e.marker(400, true) },
		func() { e.marker(500, true) },
		func() { e.mustTxn("g4", 600, "t", map[int32]int64{0: 6}) },
		func() { e.marker(600, false) },
		func() { e.mustTxn("g1", 600, "t", map[int32]int64{0: 60}) },
		func() { e.mustTxn("g5", 700, "t", map[int32]int64{0: 70}) },
	}
	states := map[int]string{0: dump(e.c)}
	for i, step := range history {
		step()
		n, d := len(e.store.entries()), dump(e.c)
		if prev, ok := states[n]; ok && prev != d {
			t.Fatalf("step %d changed the state without writing to the log:\n%s\nthen\n%s", i, prev, d)
		}
		states[n] = d
	}
	entries := e.store.entries()
	if len(states) != len(entries)+1 {
		t.Fatalf("%d states for %d log entries", len(states), len(entries))
	}
	for n := 0; n <= len(entries); n++ {
		r := New(Config{Clock: e.clock})
		replay(t, r, entries[:n])
		if got := dump(r); got != states[n] {
			t.Errorf("replay of the first %d log entries:\n%s\nlive:\n%s", n, got, states[n])
		}
		if err := r.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	// After a restart the open transactions are still pending, and their markers apply them.
	e2 := newEnv(t)
	replay(t, e2.c, entries)
	if got := e2.fetchStable("g1", "t", 0, 1, 3); !maps.Equal(got, map[int32]fetched{0: {-1, unstable}, 1: {15, 0}, 3: {9, 0}}) {
		t.Fatalf("g1 after restart: %v", got)
	}
	if got := e2.fetch("g1", "t", 0); got[0] != 10 {
		t.Fatalf("g1 t[0] after restart: %v", got)
	}
	e2.marker(600, true)
	e2.marker(700, false)
	if got := e2.fetchStable("g1", "t", 0); got[0] != (fetched{60, 0}) {
		t.Fatalf("g1 after the marker: %v", got)
	}
	if st := e2.state("g5"); st != "none" {
		t.Fatalf("aborted group g5 after restart: %s", st)
	}
}

// TestTxnConcurrentReplay runs producers concurrently against shared groups and partitions,
// with plain commits in between, and checks that the log replays to the live state. Order
// numbers are left out of the comparison: groups append concurrently, so numbers of different
// groups may interleave differently live and in replay; within a group they agree.
func TestTxnConcurrentReplay(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pid := int64(1000 + w)
			for i := range 30 {
				grp := fmt.Sprintf("c%d", (w+i)%2)
				part := int32((w * i) % 3)
				req := txnReq(5, grp, pid, "t", map[int32]int64{part: int64(w*100 + i)})
				if resp := e.c.TxnOffsetCommit(e.ctx, req); resp.Topics[0].Partitions[0].ErrorCode != 0 {
					t.Errorf("TxnOffsetCommit: %d", resp.Topics[0].Partitions[0].ErrorCode)
					return
				}
				if i%3 == 0 {
					plain := commitReq(grp, "", -1, "t", map[int32]int64{part: int64(-w*100 - i)})
					if resp := e.c.OffsetCommit(e.ctx, plain); resp.Topics[0].Partitions[0].ErrorCode != 0 {
						t.Errorf("OffsetCommit: %d", resp.Topics[0].Partitions[0].ErrorCode)
						return
					}
				}
				if i%2 == 1 {
					e.marker(pid, i%4 != 3)
				}
			}
		}()
	}
	wg.Wait()
	r := newEnv(t)
	replay(t, r.c, e.store.entries())
	seqs := regexp.MustCompile(` seq:\d+`)
	live, replayed := seqs.ReplaceAllString(dump(e.c), ""), seqs.ReplaceAllString(dump(r.c), "")
	if live != replayed {
		t.Fatalf("replay:\n%s\nlive:\n%s", replayed, live)
	}
	if !strings.Contains(live, "committed") {
		t.Fatalf("nothing committed:\n%s", live)
	}
}
