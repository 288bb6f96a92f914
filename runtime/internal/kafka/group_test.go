package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnel-io/runnel/runtime/internal/outage"
)

// member is a test GroupHandler: it records its assignments and claims,
// marks every record it takes and commits whenever it has caught up.
type member struct {
	name   string
	cancel context.CancelFunc
	done   chan error // Join's result

	mu       sync.Mutex
	gen      int32 // generation of the last assignment, -1 before the first
	mem      *Member
	owned    map[int32]bool
	claims   map[string][]int32
	first    map[string]int64 // "topic/p" -> offset of the first record since p was last assigned
	consumed map[string]int64 // "topic/p" -> next offset, over all assignments
	revoked  []int32          // every partition revoked, in order
}

func newMember(name string) *member {
	return &member{name: name, gen: -1, owned: map[int32]bool{}, claims: map[string][]int32{},
		first: map[string]int64{}, consumed: map[string]int64{}}
}

func (m *member) Assigned(_ context.Context, a *Assignment) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen, m.mem = a.Generation, a.Member
	for _, p := range a.Partitions {
		m.owned[p] = true
		for _, t := range a.Topics {
			delete(m.first, fmt.Sprintf("%s/%d", t, p))
		}
	}
	return nil
}

func (m *member) Consume(ctx context.Context, c *Claim) error {
	key := fmt.Sprintf("%s/%d", c.Topic, c.Partition)
	m.mu.Lock()
	m.claims[c.Topic] = append(m.claims[c.Topic], c.Partition)
	m.mu.Unlock()
	buf := make([]*Record, 0, 16)
	for {
		recs, ok := c.Poll(nil, buf)
		for _, r := range recs {
			m.mu.Lock()
			if _, ok := m.first[key]; !ok {
				m.first[key] = r.Offset
			}
			m.consumed[key] = r.Offset + 1
			m.mu.Unlock()
			c.MarkOffset(r.Offset + 1)
		}
		if len(recs) > 0 {
			if err := c.Commit(ctx); err != nil && ctx.Err() == nil {
				return err
			}
		}
		if !ok {
			return nil
		}
	}
}

func (m *member) Revoked(ctx context.Context, a *Assignment) error {
	m.mu.Lock()
	for _, p := range a.Partitions {
		delete(m.owned, p)
		for t, ps := range m.claims {
			m.claims[t] = slices.DeleteFunc(ps, func(q int32) bool { return q == p })
		}
	}
	m.revoked = append(m.revoked, a.Partitions...)
	m.mu.Unlock()
	return a.Member.Commit(ctx)
}

// view is a member's state, copied.
type view struct {
	gen        int32
	partitions []int32
	claims     map[string][]int32
	first      map[string]int64
	consumed   map[string]int64
	revoked    []int32
}

func (m *member) view() (view, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gen < 0 {
		return view{}, false
	}
	v := view{gen: m.gen, partitions: slices.Sorted(maps.Keys(m.owned)), claims: map[string][]int32{},
		first: maps.Clone(m.first), consumed: maps.Clone(m.consumed), revoked: slices.Clone(m.revoked)}
	if v.partitions == nil {
		v.partitions = []int32{}
	}
	for t, ps := range m.claims {
		v.claims[t] = slices.Sorted(slices.Values(ps))
	}
	return v, true
}

// join starts a member of group on c.
func join(t *testing.T, c *Client, name, group string, topics []string) *member {
	ctx, cancel := context.WithCancel(ctxFor(t))
	m := newMember(name)
	m.cancel, m.done = cancel, make(chan error, 1)
	go func() { m.done <- c.Join(ctx, group, topics, m) }()
	t.Cleanup(func() {
		cancel()
		<-m.done
	})
	return m
}

// leave stops m and checks that Join returned ctx's error.
func (m *member) leave(t *testing.T) {
	t.Helper()
	m.cancel()
	if err := <-m.done; !errors.Is(err, context.Canceled) {
		t.Fatalf("member %s: Join returned %v, want context.Canceled", m.name, err)
	}
	m.done <- nil // for the cleanup
}

// awaitStable waits until the members are in one generation, with
// partition counts that differ by at most one and cover all n partitions,
// each having claimed partition p of every topic for each p it owns, and
// returns their views.
func awaitStable(t *testing.T, topics []string, n int32, members ...*member) []view {
	t.Helper()
	var views []view
	await(t, fmt.Sprintf("a stable generation of %d members", len(members)), func() bool {
		views = views[:0]
		seen := map[int32]bool{}
		for _, m := range members {
			v, ok := m.view()
			if !ok || (len(views) > 0 && v.gen != views[0].gen) {
				return false
			}
			for _, p := range v.partitions {
				if seen[p] {
					return false
				}
				seen[p] = true
			}
			for _, topic := range topics {
				if !slices.Equal(v.claims[topic], v.partitions) {
					return false
				}
			}
			views = append(views, v)
		}
		lo, hi := int(n), 0
		for _, v := range views {
			lo, hi = min(lo, len(v.partitions)), max(hi, len(v.partitions))
		}
		return len(seen) == int(n) && hi-lo <= 1
	})
	return views
}

// awaitConsumed waits until the members together have consumed every
// partition of topics up to next.
func awaitConsumed(t *testing.T, topics []string, n int32, next int64, members ...*member) {
	t.Helper()
	await(t, fmt.Sprintf("all records up to %d consumed", next), func() bool {
		for _, topic := range topics {
			for p := range n {
				key := fmt.Sprintf("%s/%d", topic, p)
				ok := false
				for _, m := range members {
					m.mu.Lock()
					ok = ok || m.consumed[key] >= next
					m.mu.Unlock()
				}
				if !ok {
					return false
				}
			}
		}
		return true
	})
}

func TestGroup(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	testGroup(t, addr)
}

// testGroup runs the group scenario against the cluster at addrs: one
// member, three, one leaving, one rejoining, with co-partitioning,
// stickiness and committed offsets checked at each step.
func testGroup(t *testing.T, addrs ...string) {
	c := newClient(t, testConfig(t, addrs...))
	ctx := ctxFor(t)
	const n = 12
	topics := []string{"clicks", "views", "grp-loop"}
	for _, topic := range topics {
		if err := c.EnsureTopic(ctx, topic, n, nil); err != nil {
			t.Fatal(err)
		}
		fill(t, c, topic, n, 5)
	}

	// One member gets everything.
	a := join(t, c, "a", "grp", topics)
	awaitStable(t, topics, n, a)
	awaitConsumed(t, topics, n, 5, a)

	// Three split it four ways each, co-partitioned; a keeps part of what
	// it had.
	b := join(t, c, "b", "grp", topics)
	cm := join(t, c, "c", "grp", topics)
	three := awaitStable(t, topics, n, a, b, cm)
	for i, v := range three {
		if len(v.partitions) != 4 {
			t.Fatalf("member %d of 3 owns %v, want 4 partitions", i, v.partitions)
		}
	}

	// Offsets committed through the API are the group's, for kadm too.
	adm := newKadm(t, addrs...)
	await(t, "offsets 5 committed everywhere", func() bool {
		offs, err := adm.FetchOffsets(ctx, "grp")
		if err != nil {
			t.Fatal(err)
		}
		for _, topic := range topics {
			for p := range int32(n) {
				if o, ok := offs.Lookup(topic, p); !ok || o.At != 5 {
					return false
				}
			}
		}
		return true
	})
	if offs, err := c.CommittedOffsets(ctx, "grp", "views"); err != nil || len(offs) != n || offs[7] != 5 {
		t.Fatalf("CommittedOffsets: %v, %v", offs, err)
	}

	// c leaves: its partitions move to a and b, which keep theirs.
	cm.leave(t)
	two := awaitStable(t, topics, n, a, b)
	for i, v := range two {
		if len(v.partitions) != 6 {
			t.Fatalf("member %d of 2 owns %v, want 6", i, v.partitions)
		}
		if prev := three[i].partitions; !isSubset(prev, v.partitions) {
			t.Fatalf("member %d owned %v, now %v: it lost partitions when another left", i, prev, v.partitions)
		}
	}

	// A new member joins: it and the others resume from the committed
	// offsets, and the two that stayed keep four of their six.
	d := join(t, c, "d", "grp", topics)
	last := awaitStable(t, topics, n, a, b, d)
	for i := range 2 {
		if !isSubset(last[i].partitions, two[i].partitions) {
			t.Fatalf("member %d owned %v, now %v: partitions moved between members that stayed", i, two[i].partitions, last[i].partitions)
		}
	}
	for _, topic := range topics {
		fill(t, c, topic, n, 2)
	}
	awaitConsumed(t, topics, n, 7, a, b, d)
	for i, m := range []*member{a, b, d} {
		v, ok := m.view()
		if !ok || v.gen != last[i].gen {
			t.Fatalf("member %d: generation changed while consuming", i)
		}
		var before view
		if i < 2 {
			before = two[i]
		}
		// The rebalance revoked only what moved: a partition that stayed
		// was never revoked, and consumed on from where it was; one that
		// came resumed from the committed offsets.
		for _, p := range v.revoked[len(before.revoked):] {
			if slices.Contains(v.partitions, p) {
				t.Errorf("member %d: partition %d revoked though it stayed (owns %v)", i, p, v.partitions)
			}
		}
		for _, topic := range topics {
			for _, p := range v.partitions {
				key := fmt.Sprintf("%s/%d", topic, p)
				if bf, ok := before.first[key]; ok && slices.Contains(before.partitions, p) {
					if v.first[key] != bf {
						t.Errorf("member %d: %s restarted at offset %d while it stayed (first %d)", i, key, v.first[key], bf)
					}
				} else if v.first[key] != 5 {
					t.Errorf("member %d started %s at offset %d, want the committed 5", i, key, v.first[key])
				}
			}
		}
	}
}

func isSubset(small, big []int32) bool {
	for _, p := range small {
		if !slices.Contains(big, p) {
			return false
		}
	}
	return true
}

// TestGroupNotCopartitioned joins with topics of different partition
// counts: the plan cannot be made, and Join says why.
func TestGroupNotCopartitioned(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	c := newClient(t, testConfig(t, addr))
	ctx := ctxFor(t)
	for topic, n := range map[string]int32{"four": 4, "three": 3} {
		if err := c.EnsureTopic(ctx, topic, n, nil); err != nil {
			t.Fatal(err)
		}
	}
	err := c.Join(ctx, "bad", []string{"four", "three"}, newMember("bad"))
	if !errors.Is(err, ErrNotCopartitioned) {
		t.Fatalf("Join: %v, want ErrNotCopartitioned", err)
	}
	t.Log(err)
}

// failing fails in Assigned.
type failing struct {
	member
	revoked chan *Assignment
}

var errHandler = errors.New("handler failed")

func (f *failing) Assigned(context.Context, *Assignment) error { return errHandler }
func (f *failing) Revoked(_ context.Context, g *Assignment) error {
	f.revoked <- g
	return nil
}

// TestGroupHandlerError checks that a handler's error ends Join with it,
// after Revoked.
func TestGroupHandlerError(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	c := newClient(t, testConfig(t, addr))
	ctx := ctxFor(t)
	if err := c.EnsureTopic(ctx, "in", 2, nil); err != nil {
		t.Fatal(err)
	}
	f := &failing{member: *newMember("failing"), revoked: make(chan *Assignment, 1)}
	if err := c.Join(ctx, "failing", []string{"in"}, f); !errors.Is(err, errHandler) {
		t.Fatalf("Join: %v, want the handler's error", err)
	}
	select {
	case g := <-f.revoked:
		if len(g.Partitions) != 2 {
			t.Fatalf("revoked %v, want both partitions", g.Partitions)
		}
	default:
		t.Fatal("Revoked was not called")
	}
	// The member left: the group is empty.
	groups, err := newKadm(t, addr).DescribeGroups(ctx, "failing")
	if err != nil {
		t.Fatal(err)
	}
	if g := groups["failing"]; len(g.Members) != 0 {
		t.Fatalf("group still has members %v after Join returned", g.Members)
	}
}

// TestGroupStaticMember checks Config.InstanceID: a static member's Join
// returns without leaving the group, and the member coming back with the
// same instance id gets its partitions back.
func TestGroupStaticMember(t *testing.T) {
	t.Parallel()
	testGroupStaticMember(t, startBroker(t))
}

func testGroupStaticMember(t *testing.T, addrs ...string) {
	ctx := ctxFor(t)
	cfgA, cfgB := testConfig(t, addrs...), testConfig(t, addrs...)
	cfgA.InstanceID, cfgB.InstanceID = "instance-a", "instance-b"
	ca, cb := newClient(t, cfgA), newClient(t, cfgB)
	if err := ca.EnsureTopic(ctx, "static", 4, nil); err != nil {
		t.Fatal(err)
	}
	topics := []string{"static"}
	a, b := join(t, ca, "a", "static-grp", topics), join(t, cb, "b", "static-grp", topics)
	before := awaitStable(t, topics, 4, a, b)

	a.leave(t)
	groups, err := newKadm(t, addrs...).DescribeGroups(ctx, "static-grp")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(groups["static-grp"].Members); n != 2 {
		t.Fatalf("the group has %d members after a static member's Join returned, want 2", n)
	}
	a = join(t, ca, "a", "static-grp", topics)
	after := awaitStable(t, topics, 4, a, b)
	if !slices.Equal(before[0].partitions, after[0].partitions) || !slices.Equal(before[1].partitions, after[1].partitions) {
		t.Fatalf("partitions before %v and %v, after %v and %v", before[0].partitions, before[1].partitions, after[0].partitions, after[1].partitions)
	}
}

// TestGroupBrokerRestart stops the broker under a member for 3s and starts
// it again: Join goes on, the member has its partitions again in a
// generation, and its claims deliver what is produced after the restart.
func TestGroupBrokerRestart(t *testing.T) {
	t.Parallel()
	o := outage.Start(t, testLogger(t))
	c := newClient(t, testConfig(t, o.Addr()))
	topics := []string{"grestart"}
	const n = 2
	if err := c.EnsureTopic(ctxFor(t), topics[0], n, nil); err != nil {
		t.Fatal(err)
	}
	fill(t, c, topics[0], n, 5)
	m := join(t, c, "m", "grestart-group", topics)
	awaitStable(t, topics, n, m)
	awaitConsumed(t, topics, n, 5, m)

	o.Bounce(3 * time.Second)
	fill(t, c, topics[0], n, 5)
	awaitConsumed(t, topics, n, 10, m)
	if v := awaitStable(t, topics, n, m); !slices.Equal(v[0].partitions, []int32{0, 1}) {
		t.Fatalf("after the restart the member has partitions %v, want [0 1]", v[0].partitions)
	}
	select {
	case err := <-m.done:
		t.Fatalf("Join returned across the restart: %v", err)
	default:
	}
	committed, err := c.CommittedOffsets(ctxFor(t), "grestart-group", topics[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int32]int64{0: 10, 1: 10}; !maps.Equal(committed, want) {
		t.Fatalf("committed offsets %v, want %v", committed, want)
	}
}

// TestGroupCommitDuringOutage commits while the broker is unreachable for
// 10s, longer than a client's own retries of a commit usually last, and shorter
// than the member's session: the commit returns nil once the broker is
// back, and the offset is committed.
func TestGroupCommitDuringOutage(t *testing.T) {
	t.Parallel()
	o := outage.Start(t, testLogger(t))
	cfg := testConfig(t, o.Addr())
	cfg.SessionTimeout = 30 * time.Second
	c := newClient(t, cfg)
	topics := []string{"gcommit"}
	if err := c.EnsureTopic(ctxFor(t), topics[0], 1, nil); err != nil {
		t.Fatal(err)
	}
	m := join(t, c, "m", "gcommit-group", topics)
	awaitStable(t, topics, 1, m)
	m.mu.Lock()
	g := m.mem
	m.mu.Unlock()

	g.MarkOffset(topics[0], 0, 42)
	o.Cut()
	committed := make(chan error, 1)
	go func() { committed <- g.Commit(ctxFor(t)) }()
	outage := time.NewTimer(10 * time.Second)
	select {
	case err := <-committed:
		t.Fatalf("commit returned during the outage: %v", err)
	case <-outage.C:
	}
	o.Restore()
	if err := <-committed; err != nil {
		t.Fatalf("commit across the outage: %v", err)
	}
	offs, err := c.CommittedOffsets(ctxFor(t), "gcommit-group", topics[0])
	if err != nil {
		t.Fatal(err)
	}
	if offs[0] != 42 {
		t.Fatalf("committed offsets %v, want 42 for partition 0", offs)
	}
}

// TestGroupJoinTimeout cuts the broker off, for good, from a member, and
// then has another join, with a short delivery timeout: each Join keeps
// trying for that long, then returns an error that says so.
func TestGroupJoinTimeout(t *testing.T) {
	t.Parallel()
	o := outage.Start(t, testLogger(t))
	cfg := testConfig(t, o.Addr())
	cfg.DeliveryTimeout = time.Second
	c := newClient(t, cfg)
	topics := []string{"jtimeout"}
	if err := c.EnsureTopic(ctxFor(t), topics[0], 1, nil); err != nil {
		t.Fatal(err)
	}
	running := join(t, c, "running", "jtimeout-group", topics)
	awaitStable(t, topics, 1, running)
	o.Cut()
	late := join(t, c, "late", "jtimeout-group", topics)
	for _, m := range []*member{running, late} {
		select {
		case err := <-m.done:
			m.done <- nil // for the cleanup
			t.Logf("member %s: %v", m.name, err)
			if !errors.Is(err, ErrDeliveryTimeout) || !strings.Contains(err.Error(), "failing for") {
				t.Fatalf("member %s: Join in a long outage: %v, want a delivery timeout", m.name, err)
			}
		case <-ctxFor(t).Done():
			t.Fatalf("member %s: Join went on past the delivery timeout", m.name)
		}
	}
}
