package broker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// saramaMember is one sarama consumer group member: it records which
// partitions each generation gave it, and the records it consumed, and
// marks every record so sarama commits it.
type saramaMember struct {
	name     string
	mu       sync.Mutex
	claims   [][]int32 // per session
	consumed map[string]bool
	got      chan string
	setup    chan struct{} // signalled when a session starts
}

func (m *saramaMember) Setup(s sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.claims = append(m.claims, s.Claims()["grp-topic"])
	select {
	case m.setup <- struct{}{}:
	default:
	}
	return nil
}

func (m *saramaMember) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (m *saramaMember) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for msg := range c.Messages() {
		s.MarkMessage(msg, "")
		m.got <- string(msg.Value)
	}
	return nil
}

func (m *saramaMember) lastClaims() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.claims) == 0 {
		return nil
	}
	return m.claims[len(m.claims)-1]
}

// Three sarama consumers share a 6-partition topic; one leaves and its
// partitions move to the other two, which go on to consume everything.
// The group's offsets are committed, survive a broker restart, and a new
// member resumes from them.
func TestSaramaConsumerGroupRebalanceAndRestart(t *testing.T) {
	dir := t.TempDir()
	fast := func(c *Config) { c.GroupInitialRebalanceDelay = -1 }
	b := startBroker(t, dir, fast)
	createTopic(t, b, "grp-topic", 6)

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Interval = 50 * time.Millisecond
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Partitioner = sarama.NewManualPartitioner

	prod, err := sarama.NewSyncProducer([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	produce := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "grp-topic", Partition: int32(i % 6), Value: sarama.StringEncoder(fmt.Sprint(i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(0, 60)

	got := make(chan string, 1000)
	setup := make(chan struct{}, 1)
	type running struct {
		m      *saramaMember
		g      sarama.ConsumerGroup
		cancel context.CancelFunc
		done   chan struct{}
	}
	start := func(name string, addr string) *running {
		g, err := sarama.NewConsumerGroup([]string{addr}, "sarama-group", cfg)
		if err != nil {
			t.Fatal(err)
		}
		r := &running{m: &saramaMember{name: name, consumed: map[string]bool{}, got: got, setup: setup}, g: g, done: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		go func() {
			defer close(r.done)
			for ctx.Err() == nil {
				if err := g.Consume(ctx, []string{"grp-topic"}, r.m); err != nil && ctx.Err() == nil {
					t.Errorf("%s: consume: %v", name, err)
					return
				}
			}
		}()
		return r
	}
	stop := func(r *running) {
		r.cancel()
		<-r.done
		if err := r.g.Close(); err != nil {
			t.Errorf("close %s: %v", r.m.name, err)
		}
	}
	seen := map[string]bool{}
	await := func(n int) {
		t.Helper()
		ctx := ctxFor(t)
		for len(seen) < n {
			select {
			case v := <-got:
				seen[v] = true
			case <-ctx.Done():
				t.Fatalf("consumed %d distinct records, want %d", len(seen), n)
			}
		}
	}
	// split reports whether the members' current sessions split the 6
	// partitions between them, each owning some.
	split := func(ms ...*running) bool {
		owned := map[int32]bool{}
		for _, r := range ms {
			claims := r.m.lastClaims()
			if len(claims) == 0 {
				return false
			}
			for _, p := range claims {
				if owned[p] {
					return false
				}
				owned[p] = true
			}
		}
		return len(owned) == 6
	}
	// awaitClaims waits, session start by session start, for the split.
	awaitClaims := func(ms ...*running) {
		t.Helper()
		ctx := ctxFor(t)
		for !split(ms...) {
			select {
			case <-setup:
			case v := <-got:
				seen[v] = true
			case <-ctx.Done():
				t.Fatalf("partitions never split across %d members", len(ms))
			}
		}
	}

	a, bm, c := start("a", b.Addr()), start("b", b.Addr()), start("c", b.Addr())
	awaitClaims(a, bm, c)
	await(60)
	cClaims := c.m.lastClaims()
	stop(c)
	// c's partitions move to a and b.
	awaitClaims(a, bm)
	moved := 0
	for _, p := range cClaims {
		for _, r := range []*running{a, bm} {
			for _, q := range r.m.lastClaims() {
				if p == q {
					moved++
				}
			}
		}
	}
	if moved != len(cClaims) || len(cClaims) == 0 {
		t.Fatalf("c owned %v; after it left a owns %v and b owns %v", cClaims, a.m.lastClaims(), bm.m.lastClaims())
	}
	produce(60, 120)
	await(120)
	stop(a)
	stop(bm)

	// The committed offsets are the ends of every partition.
	adm := newKadm(t, b)
	offs, err := adm.FetchOffsets(ctxFor(t), "sarama-group")
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(6) {
		o, ok := offs.Lookup("grp-topic", p)
		if !ok || o.At != 20 {
			t.Fatalf("partition %d committed offset %+v, want 20", p, o)
		}
	}

	// Restart the broker: the offsets are still there, and a new member
	// resumes from them, reading only what came after.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = startBroker(t, dir, fast)
	offs, err = newKadm(t, b).FetchOffsets(ctxFor(t), "sarama-group")
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(6) {
		if o, _ := offs.Lookup("grp-topic", p); o.At != 20 {
			t.Fatalf("after restart partition %d committed offset %d, want 20", p, o.At)
		}
	}
	prod2, err := sarama.NewSyncProducer([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod2.Close()
	if _, _, err := prod2.SendMessage(&sarama.ProducerMessage{Topic: "grp-topic", Partition: 3, Value: sarama.StringEncoder("after-restart")}); err != nil {
		t.Fatal(err)
	}
	d := start("d", b.Addr())
	defer stop(d)
	select {
	case v := <-got:
		if v != "after-restart" {
			t.Fatalf("after restart the group re-read %q: it did not resume from its committed offsets", v)
		}
	case <-ctxFor(t).Done():
		t.Fatal("the resumed member consumed nothing")
	}
}

// A franz-go group consumer (cooperative-sticky, its default) reads all of
// an idempotently produced topic and commits.
func TestKgoGroupConsumer(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.GroupInitialRebalanceDelay = -1 })
	createTopic(t, b, "kgo-grp", 4)
	prod := newKgo(t, b, kgo.DefaultProduceTopic("kgo-grp"))
	ctx := ctxFor(t)
	for i := range 200 {
		if err := prod.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cons := newKgo(t, b, kgo.ConsumerGroup("kgo-group"), kgo.ConsumeTopics("kgo-grp"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	seen := map[string]bool{}
	for len(seen) < 200 {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of 200", len(seen))
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	offs, err := newKadm(t, b).FetchOffsets(ctx, "kgo-group")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != 200 {
		t.Fatalf("committed offsets add up to %d, want 200", sum)
	}
}

// The group admin APIs over the wire, through kadm: a live group is
// listed and described with its member and assignment, cannot be deleted
// while it has members, its offsets for a subscribed topic cannot be
// deleted, and once empty both deletes work.
func TestGroupAdminAPIs(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.GroupInitialRebalanceDelay = -1 })
	createTopic(t, b, "adm-grp", 2)
	ctx := ctxFor(t)
	prod := newKgo(t, b, kgo.DefaultProduceTopic("adm-grp"))
	if err := prod.ProduceSync(ctx, kgo.StringRecord("x")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cons := newKgo(t, b, kgo.ConsumerGroup("adm-group"), kgo.ConsumeTopics("adm-grp"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ClientID("adm-client"))
	for got := 0; got < 1; {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("consumed nothing")
		}
		got += len(fs.Records())
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	adm := newKadm(t, b)

	listed, err := adm.ListGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := listed["adm-group"]; !ok || l.State != "Stable" || l.ProtocolType != "consumer" {
		t.Fatalf("list groups: %+v, want adm-group Stable of protocol type consumer", listed)
	}
	described, err := adm.DescribeGroups(ctx, "adm-group")
	if err != nil {
		t.Fatal(err)
	}
	d := described["adm-group"]
	if d.Err != nil || d.State != "Stable" || len(d.Members) != 1 || d.Members[0].ClientID != "adm-client" {
		t.Fatalf("describe group: %+v", d)
	}
	if a, ok := d.Members[0].Assigned.AsConsumer(); !ok || len(a.Topics) != 1 || len(a.Topics[0].Partitions) != 2 {
		t.Fatalf("described assignment %+v, want both partitions of adm-grp", d.Members[0].Assigned)
	}
	del, err := adm.DeleteGroups(ctx, "adm-group")
	if err != nil {
		t.Fatal(err)
	}
	if del["adm-group"].Err == nil {
		t.Fatal("deleting a group with a live member succeeded")
	}
	od, err := adm.DeleteOffsets(ctx, "adm-group", kadm.TopicsSet{"adm-grp": {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	if od.Error() == nil {
		t.Fatal("deleting offsets of a topic the live group subscribes to succeeded")
	}

	cons.Close() // leaves the group
	od, err = adm.DeleteOffsets(ctx, "adm-group", kadm.TopicsSet{"adm-grp": {0: {}, 1: {}}})
	if err != nil || od.Error() != nil {
		t.Fatalf("delete offsets of the empty group: %v %v", err, od.Error())
	}
	offs, err := adm.FetchOffsets(ctx, "adm-group")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := offs.Lookup("adm-grp", 0); ok {
		t.Fatal("deleted offsets are still committed")
	}
	del, err = adm.DeleteGroups(ctx, "adm-group")
	if err != nil || del["adm-group"].Err != nil {
		t.Fatalf("delete the empty group: %v %v", err, del["adm-group"].Err)
	}
	listed, _ = adm.ListGroups(ctx)
	if _, ok := listed["adm-group"]; ok {
		t.Fatal("a deleted group is still listed")
	}
}
