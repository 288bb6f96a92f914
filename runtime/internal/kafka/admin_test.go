package kafka

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/runnel-io/runnel/runtime/internal/outage"
)

func TestEnsureTopic(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	c := newClient(t, testConfig(t, addr))
	adm := newKadm(t, addr)
	ctx := ctxFor(t)

	compact := map[string]string{"cleanup.policy": "compact", "segment.bytes": "1048576"}
	if err := c.EnsureTopic(ctx, "table", 4, compact); err != nil {
		t.Fatalf("create: %v", err)
	}
	td, err := adm.ListTopics(ctx, "table")
	if err != nil || td["table"].Err != nil {
		t.Fatalf("list topics: %v %v", err, td["table"].Err)
	}
	if n := len(td["table"].Partitions); n != 4 {
		t.Fatalf("created with %d partitions, want 4", n)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, "table")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On("table", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range rc.Configs {
		if want, ok := compact[cfg.Key]; ok && cfg.MaybeValue() != want {
			t.Errorf("created with %s=%q, want %q", cfg.Key, cfg.MaybeValue(), want)
		}
	}

	// Asking again, with the same or fewer configs, or the policy list
	// written otherwise, is fine.
	for _, cfg := range []map[string]string{compact, nil, {"cleanup.policy": "compact"}} {
		if err := c.EnsureTopic(ctx, "table", 4, cfg); err != nil {
			t.Fatalf("ensure existing topic with %v: %v", cfg, err)
		}
	}
	if err := c.EnsureTopic(ctx, "both", 1, map[string]string{"cleanup.policy": "compact,delete"}); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureTopic(ctx, "both", 1, map[string]string{"cleanup.policy": "delete, compact"}); err != nil {
		t.Fatalf("same policies in another order: %v", err)
	}

	mismatch := func(err error, setting string, words ...string) {
		t.Helper()
		var me *TopicMismatchError
		if !errors.As(err, &me) || me.Setting != setting {
			t.Fatalf("got %v, want a %s mismatch", err, setting)
		}
		for _, w := range words {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
	}
	mismatch(c.EnsureTopic(ctx, "table", 8, compact), "partitions", `"table"`, "4", "8")
	mismatch(c.EnsureTopic(ctx, "table", 4, map[string]string{"cleanup.policy": "delete"}), "cleanup.policy", `"table"`, `"compact"`, `"delete"`)
	if err := c.EnsureTopic(ctx, "stream", 2, nil); err != nil {
		t.Fatal(err)
	}
	mismatch(c.EnsureTopic(ctx, "stream", 2, map[string]string{"cleanup.policy": "compact"}), "cleanup.policy", `"stream"`, `"delete"`, `"compact"`)
}

func TestPartitionsAndOffsets(t *testing.T) {
	t.Parallel()
	addr := startBroker(t)
	c := newClient(t, testConfig(t, addr))
	adm := newKadm(t, addr)
	ctx := ctxFor(t)

	if _, err := c.Partitions(ctx, "nope"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("partitions of a missing topic: %v, want ErrUnknownTopic", err)
	}
	if _, _, err := c.Offsets(ctx, "nope", 0); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("offsets of a missing topic: %v, want ErrUnknownTopic", err)
	}
	// Asking about a topic must not create it (some clients ask brokers to
	// auto-create by default).
	if td, err := adm.ListTopics(ctx); err != nil || td.Has("nope") {
		t.Fatalf("asking about a missing topic created it (%v)", err)
	}

	if err := c.EnsureTopic(ctx, "offs", 3, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Partitions(ctx, "offs"); err != nil || n != 3 {
		t.Fatalf("partitions: %d, %v; want 3", n, err)
	}
	fill(t, c, "offs", 3, 5)
	if ls, hw, err := c.Offsets(ctx, "offs", 1); err != nil || ls != 0 || hw != 5 {
		t.Fatalf("offsets: %d, %d, %v; want 0, 5", ls, hw, err)
	}
	deleteRecords(t, adm, "offs", 1, 2)
	if ls, hw, err := c.Offsets(ctx, "offs", 1); err != nil || ls != 2 || hw != 5 {
		t.Fatalf("offsets after deleting records: %d, %d, %v; want 2, 5", ls, hw, err)
	}
}

// deleteRecords moves the log start offset of topic/partition to offset.
func deleteRecords(t *testing.T, adm *kadm.Client, topic string, partition int32, offset int64) {
	t.Helper()
	o := kadm.Offsets{}
	o.Add(kadm.Offset{Topic: topic, Partition: partition, At: offset})
	res, err := adm.DeleteRecords(ctxFor(t), o)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}
}

// TestAdminDuringOutage calls the admin methods the runtime uses while it
// runs, while the broker is unreachable for 6s, longer than a client's own
// retries of any of them last: each returns its answer once the broker is
// back. With a short delivery timeout, a call fails after it, with an
// error that says so.
func TestAdminDuringOutage(t *testing.T) {
	t.Parallel()
	o := outage.Start(t, testLogger(t))
	c := newClient(t, testConfig(t, o.Addr()))
	ctx := ctxFor(t)
	const topic = "adminoutage"
	if err := c.EnsureTopic(ctx, topic, 2, nil); err != nil {
		t.Fatal(err)
	}
	fill(t, c, topic, 2, 3)
	m := join(t, c, "m", "adminoutage-group", []string{topic})
	awaitConsumed(t, []string{topic}, 2, 3, m)
	m.leave(t)

	o.Cut()
	type result struct {
		what string
		got  string
		err  error
	}
	results := make(chan result, 4)
	go func() {
		n, err := c.Partitions(ctx, topic)
		results <- result{"Partitions", fmt.Sprint(n), err}
	}()
	go func() {
		start, hw, err := c.Offsets(ctx, topic, 1)
		results <- result{"Offsets", fmt.Sprint(start, hw), err}
	}()
	go func() {
		offs, err := c.CommittedOffsets(ctx, "adminoutage-group", topic)
		results <- result{"CommittedOffsets", fmt.Sprint(offs), err}
	}()
	go func() {
		err := c.EnsureTopic(ctx, "adminoutage-new", 3, nil)
		results <- result{"EnsureTopic", "", err}
	}()
	outage := time.NewTimer(6 * time.Second)
	select {
	case r := <-results:
		t.Fatalf("%s returned during the outage: %q, %v", r.what, r.got, r.err)
	case <-outage.C:
	}
	o.Restore()
	want := map[string]string{"Partitions": "2", "Offsets": "0 3", "CommittedOffsets": "map[0:3 1:3]", "EnsureTopic": ""}
	for range want {
		r := <-results
		if r.err != nil || r.got != want[r.what] {
			t.Errorf("%s across the outage: %q, %v; want %q", r.what, r.got, r.err, want[r.what])
		}
	}
	if n, err := c.Partitions(ctx, "adminoutage-new"); err != nil || n != 3 {
		t.Fatalf("topic created across the outage: %d partitions, %v", n, err)
	}

	cfg := testConfig(t, o.Addr())
	cfg.DeliveryTimeout = time.Second
	short := newClient(t, cfg)
	o.Cut()
	start := time.Now()
	// A client made before the cut: New needs the broker.
	_, err := short.Partitions(ctx, topic)
	if !errors.Is(err, ErrDeliveryTimeout) || !strings.Contains(err.Error(), "failing for") {
		t.Fatalf("Partitions in a long outage: %v, want a delivery timeout", err)
	}
	if took := time.Since(start); took < cfg.DeliveryTimeout {
		t.Fatalf("Partitions gave up after %v, before the delivery timeout", took)
	}
	o.Restore()
}
