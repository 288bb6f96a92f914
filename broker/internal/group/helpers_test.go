package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker/internal/clock"
)

// fakeClock is the Clock of the tests: its time moves only when a test
// advances it.
type fakeClock = clock.Fake

func newFakeClock() *fakeClock { return clock.NewFake() }

// memStore is an in-memory Store that records what was appended: recs holds the records of
// every batch, plain or transactional, and log the batches and the markers the test appends
// with marker, in order, as one partition of the OffsetsTopic would hold them.
type memStore struct {
	mu   sync.Mutex
	recs []Record
	log  []logEntry
	fail error
}

// logEntry is one batch or marker of a memStore.
type logEntry struct {
	pid    int64 // -1: a plain batch
	marker bool
	commit bool
	recs   []Record
}

func (s *memStore) Append(_ context.Context, _ string, recs []Record) error {
	return s.appendBatch(-1, recs)
}

func (s *memStore) AppendTxn(_ context.Context, _ string, pid int64, _ int16, recs []Record) error {
	return s.appendBatch(pid, recs)
}

func (s *memStore) appendBatch(pid int64, recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	ent := logEntry{pid: pid}
	for _, r := range recs {
		r = Record{Key: append([]byte(nil), r.Key...), Value: cloneNil(r.Value)}
		s.recs = append(s.recs, r)
		ent.recs = append(ent.recs, r)
	}
	s.log = append(s.log, ent)
	return nil
}

func (s *memStore) appendMarker(pid int64, commit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, logEntry{pid: pid, marker: true, commit: commit})
}

func (s *memStore) entries() []logEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]logEntry(nil), s.log...)
}

// replay feeds entries to c as the broker does on restart.
func replay(t *testing.T, c *Coordinator, entries []logEntry) {
	t.Helper()
	for i, ent := range entries {
		switch {
		case ent.marker:
			c.LoadMarker(ent.pid, ent.commit)
		case ent.pid >= 0:
			for _, r := range ent.recs {
				if err := c.LoadTxn(ent.pid, r.Key, r.Value); err != nil {
					t.Fatalf("LoadTxn, entry %d: %v", i, err)
				}
			}
		default:
			for _, r := range ent.recs {
				if err := c.Load(r.Key, r.Value); err != nil {
					t.Fatalf("Load, entry %d: %v", i, err)
				}
			}
		}
	}
}

func (s *memStore) setFail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

func (s *memStore) records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.recs...)
}

func cloneNil(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// testLogger writes the coordinator's logs to the test log, shown only on failure.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

type env struct {
	t     *testing.T
	c     *Coordinator
	clock *fakeClock
	store *memStore
	ctx   context.Context
}

// Defaults of the requests built by the helpers.
const (
	testSession   = 10 * time.Second
	testRebalance = 20 * time.Second
	testDelay     = 3 * time.Second
)

func newEnv(t *testing.T, adjust ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, clock: newFakeClock(), store: &memStore{}, ctx: context.Background()}
	cfg := Config{
		Store:                 e.store,
		Clock:                 e.clock,
		Logger:                slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		InitialRebalanceDelay: testDelay,
	}
	for _, f := range adjust {
		f(&cfg)
	}
	e.c = New(cfg)
	t.Cleanup(func() {
		if err := e.c.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

func consumerMeta(topics ...string) []byte {
	md := kmsg.NewConsumerMemberMetadata()
	md.Version = 0
	md.Topics = topics
	return md.AppendTo(nil)
}

// joinReq builds a v9 consumer-protocol JoinGroup. Protocols alternate name, metadata topic.
func joinReq(grp, memberID string, protocols ...string) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = 9
	req.Group = grp
	req.MemberID = memberID
	req.SessionTimeoutMillis = int32(testSession / time.Millisecond)
	req.RebalanceTimeoutMillis = int32(testRebalance / time.Millisecond)
	req.ProtocolType = "consumer"
	if len(protocols) == 0 {
		protocols = []string{"range", "t1"}
	}
	for i := 0; i+1 < len(protocols); i += 2 {
		p := kmsg.NewJoinGroupRequestProtocol()
		p.Name = protocols[i]
		p.Metadata = consumerMeta(protocols[i+1])
		req.Protocols = append(req.Protocols, p)
	}
	return req
}

func (e *env) join(client string, req *kmsg.JoinGroupRequest) *kmsg.JoinGroupResponse {
	return e.c.JoinGroup(e.ctx, Client{ID: client, Host: "/127.0.0.1"}, req)
}

// joinAsync runs a JoinGroup in its own goroutine.
func (e *env) joinAsync(client string, req *kmsg.JoinGroupRequest) <-chan *kmsg.JoinGroupResponse {
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	go func() { ch <- e.join(client, req) }()
	return ch
}

// memberID gets a member id through the KIP-394 MEMBER_ID_REQUIRED round trip.
func (e *env) memberID(grp, client string) string {
	e.t.Helper()
	resp := e.join(client, joinReq(grp, ""))
	if resp.ErrorCode != kerr.MemberIDRequired.Code {
		e.t.Fatalf("first JoinGroup of %s: error %d, want MEMBER_ID_REQUIRED", client, resp.ErrorCode)
	}
	return resp.MemberID
}

func syncReq(grp, memberID string, generation int32, assignments map[string]string) *kmsg.SyncGroupRequest {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Version = 5
	req.Group = grp
	req.MemberID = memberID
	req.Generation = generation
	for id, a := range assignments {
		ga := kmsg.NewSyncGroupRequestGroupAssignment()
		ga.MemberID = id
		ga.MemberAssignment = []byte(a)
		req.GroupAssignment = append(req.GroupAssignment, ga)
	}
	return req
}

func (e *env) sync(req *kmsg.SyncGroupRequest) *kmsg.SyncGroupResponse {
	return e.c.SyncGroup(e.ctx, req)
}

func (e *env) syncAsync(req *kmsg.SyncGroupRequest) <-chan *kmsg.SyncGroupResponse {
	ch := make(chan *kmsg.SyncGroupResponse, 1)
	go func() { ch <- e.sync(req) }()
	return ch
}

func (e *env) heartbeat(grp, memberID string, generation int32) int16 {
	req := kmsg.NewPtrHeartbeatRequest()
	req.Version = 4
	req.Group = grp
	req.MemberID = memberID
	req.Generation = generation
	return e.c.Heartbeat(e.ctx, req).ErrorCode
}

func (e *env) describe(version int16, grp string) kmsg.DescribeGroupsResponseGroup {
	e.t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Version = version
	req.Groups = []string{grp}
	resp := e.c.DescribeGroups(e.ctx, req)
	if len(resp.Groups) != 1 {
		e.t.Fatalf("DescribeGroups: %d groups, want 1", len(resp.Groups))
	}
	return resp.Groups[0]
}

// inspect runs f on the named group under its lock; f gets nil if there is no such group.
func (e *env) inspect(grp string, f func(g *group)) {
	g := e.c.lockGroup(grp)
	if g != nil {
		defer g.mu.Unlock()
	}
	f(g)
}

// waitUntil waits for cond, which must become true because of work other goroutines are
// doing (a JoinGroup parking, a real timer firing), checking it every millisecond.
func (e *env) waitUntil(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting until %s", what)
		}
		<-tick.C
	}
}

// waitParked waits until the given members have a JoinGroup parked.
func (e *env) waitJoinParked(grp string, ids ...string) {
	e.t.Helper()
	e.waitUntil(fmt.Sprintf("%v wait in JoinGroup", ids), func() bool {
		ok := true
		e.inspect(grp, func(g *group) {
			for _, id := range ids {
				if g == nil || g.members[id] == nil || g.members[id].join == nil {
					ok = false
				}
			}
		})
		return ok
	})
}

func (e *env) waitSyncParked(grp string, ids ...string) {
	e.t.Helper()
	e.waitUntil(fmt.Sprintf("%v wait in SyncGroup", ids), func() bool {
		ok := true
		e.inspect(grp, func(g *group) {
			for _, id := range ids {
				if g == nil || g.members[id] == nil || g.members[id].sync == nil {
					ok = false
				}
			}
		})
		return ok
	})
}

func (e *env) state(grp string) string {
	s := "none"
	e.inspect(grp, func(g *group) {
		if g != nil {
			s = g.state.String()
		}
	})
	return s
}

// recv waits for a response, failing the test if none comes.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for a response")
		panic("unreachable")
	}
}

// notYet checks that no response has come.
func notYet[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s answered early: %+v", what, v)
	default:
	}
}

// stableMember is a member of a group formed by formGroup.
type stableMember struct {
	id         string
	generation int32
	assignment string
}

// formGroup makes the clients join group as dynamic members and runs one complete rebalance;
// the first client leads and assigns "assign-<client>" to each. The env's initial rebalance
// delay must be on so that all join the same generation.
func (e *env) formGroup(grp string, clients ...string) []stableMember {
	e.t.Helper()
	ids := make([]string, len(clients))
	joins := make([]<-chan *kmsg.JoinGroupResponse, len(clients))
	for i, cl := range clients {
		ids[i] = e.memberID(grp, cl)
		joins[i] = e.joinAsync(cl, joinReq(grp, ids[i]))
		e.waitJoinParked(grp, ids[i])
	}
	e.advanceThroughDelay(grp)
	members := make([]stableMember, len(clients))
	assignments := make(map[string]string)
	for i := range clients {
		resp := recv(e.t, joins[i])
		if resp.ErrorCode != 0 {
			e.t.Fatalf("JoinGroup of %s: error %d", clients[i], resp.ErrorCode)
		}
		members[i] = stableMember{id: ids[i], generation: resp.Generation, assignment: "assign-" + clients[i]}
		assignments[ids[i]] = members[i].assignment
	}
	syncs := make([]<-chan *kmsg.SyncGroupResponse, len(clients))
	for i := 1; i < len(clients); i++ {
		syncs[i] = e.syncAsync(syncReq(grp, ids[i], members[i].generation, nil))
	}
	e.waitSyncParked(grp, ids[1:]...)
	if resp := e.sync(syncReq(grp, ids[0], members[0].generation, assignments)); resp.ErrorCode != 0 || string(resp.MemberAssignment) != members[0].assignment {
		e.t.Fatalf("leader SyncGroup: error %d, assignment %q", resp.ErrorCode, resp.MemberAssignment)
	}
	for i := 1; i < len(clients); i++ {
		if resp := recv(e.t, syncs[i]); resp.ErrorCode != 0 || string(resp.MemberAssignment) != members[i].assignment {
			e.t.Fatalf("SyncGroup of %s: error %d, assignment %q", clients[i], resp.ErrorCode, resp.MemberAssignment)
		}
	}
	if st := e.state(grp); st != "Stable" {
		e.t.Fatalf("group state %s after formGroup, want Stable", st)
	}
	return members
}

func commitReq(grp, memberID string, generation int32, topic string, offsets map[int32]int64) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 9
	req.Group = grp
	req.MemberID = memberID
	req.Generation = generation
	t := kmsg.NewOffsetCommitRequestTopic()
	t.Topic = topic
	for p, o := range offsets {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition = p
		rp.Offset = o
		rp.LeaderEpoch = 7
		md := fmt.Sprintf("md-%d", o)
		rp.Metadata = &md
		t.Partitions = append(t.Partitions, rp)
	}
	req.Topics = append(req.Topics, t)
	return req
}

// commit commits and returns the error code of every partition, which must all be equal.
func (e *env) commit(req *kmsg.OffsetCommitRequest) int16 {
	e.t.Helper()
	resp := e.c.OffsetCommit(e.ctx, req)
	code := int16(-100)
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if code != -100 && p.ErrorCode != code {
				e.t.Fatalf("partitions of one commit got different errors: %+v", resp.Topics)
			}
			code = p.ErrorCode
		}
	}
	return code
}

// fetch returns the committed offset of each partition (v7, one group).
func (e *env) fetch(grp, topic string, partitions ...int32) map[int32]int64 {
	e.t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 7
	req.Group = grp
	t := kmsg.NewOffsetFetchRequestTopic()
	t.Topic = topic
	t.Partitions = partitions
	req.Topics = append(req.Topics, t)
	resp := e.c.OffsetFetch(e.ctx, req)
	if resp.ErrorCode != 0 {
		e.t.Fatalf("OffsetFetch: error %d", resp.ErrorCode)
	}
	out := make(map[int32]int64)
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			if p.ErrorCode != 0 {
				e.t.Fatalf("OffsetFetch %s[%d]: error %d", rt.Topic, p.Partition, p.ErrorCode)
			}
			out[p.Partition] = p.Offset
		}
	}
	return out
}

var errBoom = errors.New("disk on fire")

// advanceThroughDelay moves time forward, a delay period at a time, until the group's first
// rebalance has left PreparingRebalance.
func (e *env) advanceThroughDelay(grp string) {
	e.t.Helper()
	for i := 0; e.state(grp) == "PreparingRebalance"; i++ {
		if i == 10 {
			e.t.Fatal("the initial rebalance delay never ends")
		}
		e.clock.Advance(testDelay)
	}
}
