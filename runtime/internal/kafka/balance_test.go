package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// checkBalanced checks that assigned gives every partition of n to exactly
// one member and that shares differ by at most one.
func checkBalanced(t *testing.T, assigned map[string][]int32, n int32) {
	t.Helper()
	seen := make([]bool, n)
	lo, hi := int(n), 0
	for id, ps := range assigned {
		lo, hi = min(lo, len(ps)), max(hi, len(ps))
		for _, p := range ps {
			if p < 0 || p >= n || seen[p] {
				t.Fatalf("member %s: partition %d out of range or assigned twice in %v", id, p, assigned)
			}
			seen[p] = true
		}
	}
	if slices.Contains(seen, false) {
		t.Fatalf("partitions left out: %v", assigned)
	}
	if hi-lo > 1 {
		t.Fatalf("shares from %d to %d: %v", lo, hi, assigned)
	}
}

func fresh(ids ...string) []memberState {
	ms := make([]memberState, len(ids))
	for i, id := range ids {
		ms[i] = memberState{id: id, topics: []string{"a", "b"}, generation: -1}
	}
	return ms
}

// owning returns members owning what assigned gives them, in generation gen.
func owning(assigned map[string][]int32, gen int32) []memberState {
	var ms []memberState
	for id, ps := range assigned {
		ms = append(ms, memberState{id: id, topics: []string{"a", "b"}, owned: ps, generation: gen})
	}
	return ms
}

func counts(n int32) map[string]int32 { return map[string]int32{"a": n, "b": n} }

func TestPlanEvenSpread(t *testing.T) {
	t.Parallel()
	for _, n := range []int32{1, 5, 12, 13, 100} {
		for _, m := range []int{1, 2, 3, 5, 7, 20} {
			var ids []string
			for i := range m {
				ids = append(ids, fmt.Sprintf("m%02d", i))
			}
			assigned, err := planCopartitioned(fresh(ids...), counts(n))
			if err != nil {
				t.Fatal(err)
			}
			if len(assigned) != m {
				t.Fatalf("%d partitions, %d members: plan names %d members", n, m, len(assigned))
			}
			checkBalanced(t, assigned, n)
		}
	}
}

// TestPlanCopartitioned checks through kgo's balancer interface that each
// member gets the same partitions of every topic.
func TestPlanCopartitioned(t *testing.T) {
	t.Parallel()
	b := &copartitionBalancer{log: slog.New(slog.DiscardHandler)}
	var members []kmsg.JoinGroupResponseMember
	for _, id := range []string{"x", "y", "z", "w"} {
		members = append(members, joinMember(id, b.JoinGroupMetadata([]string{"in", "loop", "other"}, nil, -1)))
	}
	plan := balance(t, b, members, map[string]int32{"in": 6, "loop": 6, "other": 6})
	all := map[string][]int32{}
	for _, m := range members {
		parts := plan[m.MemberID]["in"]
		all[m.MemberID] = parts
		for _, topic := range []string{"loop", "other"} {
			if !slices.Equal(plan[m.MemberID][topic], parts) {
				t.Fatalf("member %s: %s gets %v, in gets %v", m.MemberID, topic, plan[m.MemberID][topic], parts)
			}
		}
	}
	checkBalanced(t, all, 6)
}

func joinMember(id string, meta []byte) kmsg.JoinGroupResponseMember {
	m := kmsg.NewJoinGroupResponseMember()
	m.MemberID = id
	m.ProtocolMetadata = meta
	return m
}

// balance runs the leader's side of a rebalance and returns each member's
// assignment as the members parse it.
func balance(t *testing.T, b *copartitionBalancer, members []kmsg.JoinGroupResponseMember, topics map[string]int32) map[string]map[string][]int32 {
	t.Helper()
	mb, _, err := b.MemberBalancer(members)
	if err != nil {
		t.Fatal(err)
	}
	into, err := mb.(kgo.GroupMemberBalancerOrError).BalanceOrError(topics)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]int32{}
	for _, a := range into.IntoSyncAssignment() {
		parsed, err := b.ParseSyncAssignment(a.MemberAssignment)
		if err != nil {
			t.Fatal(err)
		}
		for _, ps := range parsed {
			slices.Sort(ps)
		}
		out[a.MemberID] = parsed
	}
	return out
}

func TestPlanSticky(t *testing.T) {
	t.Parallel()
	// Three members with four each; a fourth joins: each keeps three, and
	// only the three partitions the newcomer needs move.
	three, err := planCopartitioned(fresh("a", "b", "c"), counts(12))
	if err != nil {
		t.Fatal(err)
	}
	four, err := planCopartitioned(append(owning(three, 1), fresh("d")...), counts(12))
	if err != nil {
		t.Fatal(err)
	}
	checkBalanced(t, four, 12)
	for _, id := range []string{"a", "b", "c"} {
		if kept := overlap(three[id], four[id]); kept != 3 {
			t.Errorf("member %s kept %d of %v (now %v), want 3", id, kept, three[id], four[id])
		}
	}

	// b leaves: a, c and d keep everything and split b's three.
	var stay []memberState
	for _, m := range owning(four, 2) {
		if m.id != "b" {
			stay = append(stay, m)
		}
	}
	after, err := planCopartitioned(stay, counts(12))
	if err != nil {
		t.Fatal(err)
	}
	checkBalanced(t, after, 12)
	for _, id := range []string{"a", "c", "d"} {
		if kept := overlap(four[id], after[id]); kept != len(four[id]) {
			t.Errorf("member %s lost partitions when b left: %v, now %v", id, four[id], after[id])
		}
	}

	// Nobody comes or goes: nothing moves.
	again, err := planCopartitioned(owning(after, 3), counts(12))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, after) {
		t.Fatalf("a rebalance without changes moved partitions: %v, then %v", after, again)
	}
}

// TestPlanStickyRandom checks, over random membership changes, that the plan
// stays balanced and that no member loses a partition unless it owned more
// than its new share: each keeps min(owned, share) of what it owned.
func TestPlanStickyRandom(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	for round := range 200 {
		n := rng.Int32N(40) + 1
		var ms []memberState
		next := 0
		join := func() {
			ms = append(ms, memberState{id: fmt.Sprintf("m%03d", next), topics: []string{"a", "b"}, generation: -1})
			next++
		}
		for range rng.IntN(6) + 1 {
			join()
		}
		for gen := range int32(8) {
			assigned, err := planCopartitioned(ms, counts(n))
			if err != nil {
				t.Fatal(err)
			}
			checkBalanced(t, assigned, n)
			for _, m := range ms {
				if kept, want := overlap(m.owned, assigned[m.id]), min(len(m.owned), len(assigned[m.id])); kept != want {
					t.Fatalf("round %d: member %s owned %v, got %v: kept %d, want %d", round, m.id, m.owned, assigned[m.id], kept, want)
				}
			}
			for i := range ms {
				ms[i].owned, ms[i].generation = assigned[ms[i].id], gen
			}
			// Members come and go.
			if len(ms) > 1 && rng.IntN(2) == 0 {
				i := rng.IntN(len(ms))
				ms = slices.Delete(ms, i, i+1)
			}
			for range rng.IntN(3) {
				join()
			}
		}
	}
}

func overlap(a, b []int32) int {
	n := 0
	for _, p := range a {
		if slices.Contains(b, p) {
			n++
		}
	}
	return n
}

// TestPlanDeterministic plans the same group in shuffled orders.
func TestPlanDeterministic(t *testing.T) {
	t.Parallel()
	base := owning(map[string][]int32{"a": {0, 1, 2, 9}, "b": {3, 4}, "c": {5, 6, 7, 8, 10, 11}}, 4)
	base = append(base, fresh("d", "e")...)
	want, err := planCopartitioned(base, counts(12))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	for range 50 {
		ms := slices.Clone(base)
		rng.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
		got, err := planCopartitioned(ms, counts(12))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("plan depends on order: %v, then %v", want, got)
		}
	}
}

// TestPlanConflictingClaims gives a partition claimed twice to the claim of
// the later generation.
func TestPlanConflictingClaims(t *testing.T) {
	t.Parallel()
	ms := []memberState{
		{id: "a", topics: []string{"t"}, owned: []int32{0, 1}, generation: 4}, // back from a missed generation
		{id: "b", topics: []string{"t"}, owned: []int32{1, 2}, generation: 5},
		{id: "c", topics: []string{"t"}, owned: []int32{3}, generation: 5},
	}
	got, err := planCopartitioned(ms, map[string]int32{"t": 6})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got["b"], 1) || !slices.Contains(got["b"], 2) || !slices.Contains(got["a"], 0) || !slices.Contains(got["c"], 3) {
		t.Fatalf("plan %v: want b to keep 1 and 2, a to keep 0, c to keep 3", got)
	}
	checkBalanced(t, got, 6)
}

func TestPlanErrors(t *testing.T) {
	t.Parallel()
	ms := fresh("a", "b")
	ms[1].topics = []string{"a", "c"}
	_, err := planCopartitioned(ms, map[string]int32{"a": 4, "b": 4, "c": 4})
	if !errors.Is(err, ErrNotCopartitioned) || !strings.Contains(err.Error(), "a to [a b], b to [a c]") {
		t.Fatalf("different subscriptions: %v", err)
	}
	_, err = planCopartitioned(fresh("a"), map[string]int32{"a": 4, "b": 3})
	if !errors.Is(err, ErrNotCopartitioned) || !strings.Contains(err.Error(), "a and b have 4 and 3 partitions") {
		t.Fatalf("different partition counts: %v", err)
	}
}

// TestStrategyCarriesOwnership checks the path of a member's partitions:
// from what kgo says it owns, through its subscription, into the leader's
// plan.
func TestStrategyCarriesOwnership(t *testing.T) {
	t.Parallel()
	b := &copartitionBalancer{log: slog.New(slog.DiscardHandler)}
	topics := []string{"t", "u"}
	x := b.JoinGroupMetadata(topics, map[string][]int32{"t": {4, 5}, "u": {5, 4}}, 7)
	y := b.JoinGroupMetadata(topics, map[string][]int32{"t": {0, 1}, "u": {0, 1}}, 7)
	// Member ids sort so that a fresh plan would give "1" partitions 0-2.
	members := []kmsg.JoinGroupResponseMember{joinMember("2", x), joinMember("1", y)}
	plan := balance(t, b, members, map[string]int32{"t": 6, "u": 6})
	if got := plan["2"]["t"]; !slices.Contains(got, 4) || !slices.Contains(got, 5) {
		t.Fatalf("x owned 4 and 5 and got %v", got)
	}
	if got := plan["1"]["u"]; !slices.Contains(got, 0) || !slices.Contains(got, 1) {
		t.Fatalf("y owned 0 and 1 and got %v", got)
	}

	// Unreadable user data costs stickiness, not the plan.
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = topics
	meta.UserData = []byte{9, 9}
	members[1] = joinMember("1", meta.AppendTo(nil))
	balance(t, b, members, map[string]int32{"t": 2, "u": 2})

	// A plan that cannot be made fails the balance with the reason.
	mb, _, err := b.MemberBalancer([]kmsg.JoinGroupResponseMember{joinMember("1", b.JoinGroupMetadata([]string{"t", "u"}, nil, -1))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mb.(kgo.GroupMemberBalancerOrError).BalanceOrError(map[string]int32{"t": 2, "u": 3}); !errors.Is(err, ErrNotCopartitioned) {
		t.Fatalf("balance of topics with different counts: %v, want ErrNotCopartitioned", err)
	}
}

func TestSubscriptionEncoding(t *testing.T) {
	t.Parallel()
	for _, s := range []subscription{{generation: -1}, {owned: []int32{0, 3, 2147483647}, generation: 12}} {
		got, err := decodeSubscription(encodeSubscription(s))
		if err != nil || got.generation != s.generation || !slices.Equal(got.owned, s.owned) {
			t.Fatalf("round trip of %+v: %+v, %v", s, got, err)
		}
	}
	for _, bad := range [][]byte{{1}, {0, 0}, {0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1}} {
		if _, err := decodeSubscription(bad); err == nil {
			t.Errorf("decoded %v", bad)
		}
	}
}
