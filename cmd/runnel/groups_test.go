package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestGroups lists and describes groups, idle and active, and resets the
// offsets of an idle one to every kind of position; an active one refuses.
func TestGroups(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr
	// orders: partition 0 holds offsets 0-4, partition 1 offsets 0-2, the
	// n-th record of a partition stamped n minutes after logStart, each in a
	// batch of its own (see fillLog).
	createTopic(t, addr, "orders", 2, nil)
	for p, n := range []int{5, 3} {
		for i := range n {
			produceTo(t, addr, &kgo.Record{Topic: "orders", Partition: int32(p), Value: fmt.Appendf(nil, "o%d-%d", p, i),
				Timestamp: logStart.Add(time.Duration(i) * time.Minute)})
		}
	}
	adm := kadm.NewClient(newClient(t, addr))
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: "orders", Partition: 0, At: 2, LeaderEpoch: -1})
	commit.Add(kadm.Offset{Topic: "orders", Partition: 1, At: 3, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(t.Context(), "idle", commit); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "consume", "orders", "--group", "reader", "-n", "1", b)

	checkGolden(t, "groups_list", mustRun(t, "groups", "list", b))
	checkGolden(t, "groups_describe", mustRun(t, "groups", "describe", "idle", b))
	var descs []groupDescription
	decodeJSON(t, mustRun(t, "groups", "describe", "idle", "reader", "--output", "json", b), &descs)
	if len(descs) != 2 || descs[0].Group != "idle" || descs[1].Group != "reader" {
		t.Fatalf("describe JSON: %+v", descs)
	}
	if d := descs[0]; d.State != "Empty" || len(d.Members) != 0 || len(d.Offsets) != 2 ||
		*d.Offsets[0].Committed != 2 || d.Offsets[0].Lag != 3 || d.Offsets[0].LogEnd != 5 ||
		*d.Offsets[1].Committed != 3 || d.Offsets[1].Lag != 0 {
		t.Errorf("describe JSON of idle: %+v", d)
	}

	t.Run("active", func(t *testing.T) {
		assigned := make(chan struct{})
		member := newClient(t, addr, kgo.ConsumerGroup("busy"), kgo.ConsumeTopics("orders"),
			kgo.ClientID("busy-client"), kgo.InstanceID("busy-1"),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
				if len(a["orders"]) == 2 {
					close(assigned)
				}
			}))
		ctx, cancel := context.WithCancel(t.Context())
		polled := make(chan struct{})
		go func() {
			defer close(polled)
			for ctx.Err() == nil {
				member.PollFetches(ctx)
			}
		}()
		defer func() { cancel(); <-polled }()
		select {
		case <-assigned:
		case <-time.After(cliTimeout):
			t.Fatal("the busy member was never assigned both partitions")
		}

		var descs []groupDescription
		decodeJSON(t, mustRun(t, "groups", "describe", "busy", "--output", "json", b), &descs)
		d := descs[0]
		if d.State != "Stable" || d.ProtocolType != "consumer" || len(d.Members) != 1 {
			t.Fatalf("describe JSON of busy: %+v", d)
		}
		m := d.Members[0]
		if m.ClientID != "busy-client" || m.InstanceID == nil || *m.InstanceID != "busy-1" || m.MemberID == "" || !strings.Contains(m.ClientHost, "127.0.0.1") ||
			len(m.Assignments) != 1 || m.Assignments[0].Topic != "orders" || !slices.Equal(m.Assignments[0].Partitions, []int32{0, 1}) {
			t.Errorf("member: %+v", m)
		}
		if len(d.Offsets) != 2 || d.Offsets[0].MemberID != m.MemberID || d.Offsets[1].MemberID != m.MemberID {
			t.Errorf("offsets of busy: %+v, want both partitions assigned to %s", d.Offsets, m.MemberID)
		}
		out := mustRun(t, "groups", "describe", "busy", b)
		for _, want := range []string{"State: Stable\n", "busy-client", "busy-1", "orders:0,1", m.MemberID} {
			if !strings.Contains(out, want) {
				t.Errorf("describe of busy lacks %q:\n%s", want, out)
			}
		}
		wantFailure(t, 1, "runnel groups reset-offsets: group \"busy\" is not empty (state Stable, 1 member): stop its consumers before resetting its offsets\n",
			"groups", "reset-offsets", "busy", "--topic", "orders", "--to", "earliest", b)
	})

	t.Run("reset", func(t *testing.T) {
		committed := func(group string) [2]int64 {
			t.Helper()
			offs, err := adm.FetchOffsets(t.Context(), group)
			if err != nil {
				t.Fatal(err)
			}
			var at [2]int64
			for p := range int32(2) {
				o, _ := offs.Lookup("orders", p)
				at[p] = o.At
			}
			return at
		}
		r := runCLI(t, "groups", "reset-offsets", "idle", "--topic", "orders", "--to", "earliest", "--dry-run", b)
		if r.code != 0 || r.stderr != "dry run: no offsets committed\n" {
			t.Fatalf("dry run: status %d, stderr %q", r.code, r.stderr)
		}
		if got := committed("idle"); got != [2]int64{2, 3} {
			t.Errorf("a dry run committed: %v", got)
		}
		for _, c := range []struct {
			to   string
			want [2]int64
		}{
			{"earliest", [2]int64{0, 0}},
			{"latest", [2]int64{5, 3}},
			{"1", [2]int64{1, 1}},
			{"4", [2]int64{4, 3}},  // beyond partition 1's end: its end
			{"99", [2]int64{5, 3}}, // beyond both
			{"2026-01-02T15:06:00Z", [2]int64{2, 2}},
			{fmt.Sprintf("@%d", logStart.Add(3*time.Minute).UnixMilli()), [2]int64{3, 3}}, // after partition 1's last record: its end
		} {
			mustRun(t, "groups", "reset-offsets", "idle", "--topic", "orders", "--to", c.to, b)
			if got := committed("idle"); got != c.want {
				t.Errorf("--to %s committed %v, want %v", c.to, got, c.want)
			}
		}
		checkGolden(t, "groups_reset", mustRun(t, "groups", "reset-offsets", "idle", "--topic", "orders", "--to", "1", b))
		var resets []offsetReset
		decodeJSON(t, mustRun(t, "groups", "reset-offsets", "idle", "--topic", "orders", "--to", "latest", "--output", "json", b), &resets)
		if len(resets) != 2 || *resets[0].Old != 1 || resets[0].New != 5 || *resets[1].Old != 1 || resets[1].New != 3 {
			t.Errorf("reset JSON: %+v", resets)
		}

		// A group that does not exist yet is created with the offsets.
		decodeJSON(t, mustRun(t, "groups", "reset-offsets", "fresh", "--topic", "orders", "--to", "2", "--output", "json", b), &resets)
		if resets[0].Old != nil || resets[0].New != 2 {
			t.Errorf("reset of a new group: %+v", resets)
		}
		if got := committed("fresh"); got != [2]int64{2, 2} {
			t.Errorf("new group committed %v", got)
		}
	})

	t.Run("errors", func(t *testing.T) {
		wantFailure(t, 1, "runnel groups describe: group \"nosuch\" does not exist\n", "groups", "describe", "nosuch", b)
		wantFailure(t, 1, "runnel groups reset-offsets: topic \"nosuch\" does not exist\n", "groups", "reset-offsets", "idle", "--topic", "nosuch", "--to", "earliest", b)
		wantFailure(t, 2, "--topic is required", "groups", "reset-offsets", "idle", "--to", "earliest", b)
		wantFailure(t, 2, "--to is required", "groups", "reset-offsets", "idle", "--topic", "orders", b)
		wantFailure(t, 2, `invalid value "soon" for flag -to`, "groups", "reset-offsets", "idle", "--topic", "orders", "--to", "soon", b)
		wantFailure(t, 2, "no group given", "groups", "describe", b)
		wantFailure(t, 2, `runnel groups: unknown command "delete"`, "groups", "delete", "idle", b)
	})
}

// TestGroupsDescribeTransactions leaves a franz-go transaction open on a
// partition group reader has committed an offset for: describe shows it,
// in text and in JSON, for reader and not for elsewhere, which reads
// another topic; once the transaction commits, it shows none.
func TestGroupsDescribeTransactions(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr
	createTopic(t, addr, "orders", 2, nil)
	createTopic(t, addr, "audit", 1, nil)
	for _, tp := range []struct {
		topic     string
		partition int32
	}{{"orders", 0}, {"orders", 1}, {"audit", 0}} {
		produceTo(t, addr, &kgo.Record{Topic: tp.topic, Partition: tp.partition, Value: []byte("plain")})
	}
	adm := kadm.NewClient(newClient(t, addr))
	// A group's partitions, to describe, are all those of the topics it
	// has committed offsets in (as kadm's Lag counts them), so reader's
	// are orders:0 and orders:1.
	for group, topic := range map[string]string{"reader": "orders", "elsewhere": "audit"} {
		commit := kadm.Offsets{}
		commit.Add(kadm.Offset{Topic: topic, Partition: 0, At: 1, LeaderEpoch: -1})
		if err := adm.CommitAllOffsets(t.Context(), group, commit); err != nil {
			t.Fatalf("commit for %s: %v", group, err)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	producer := newClient(t, addr, kgo.TransactionalID("orders-writer"), kgo.TransactionTimeout(30*time.Second),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	began := time.Now()
	if err := producer.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := producer.ProduceSync(ctx, &kgo.Record{Topic: "orders", Partition: 0, Value: []byte("pending")}).FirstErr(); err != nil {
		t.Fatalf("transactional produce: %v", err)
	}
	pid, epoch, err := producer.ProducerID(ctx)
	if err != nil {
		t.Fatalf("producer id: %v", err)
	}

	// Text: the offsets as ever (the log end counts the pending record),
	// then the transaction. Its OPEN-FOR grows with the clock, so the
	// table is checked cell by cell rather than against a golden file.
	out := mustRun(t, "groups", "describe", "reader", b)
	head, txnTable, ok := strings.Cut(out, "\nOpen transactions on the group's partitions:\n")
	if !ok {
		t.Fatalf("describe of reader lacks the open transactions:\n%s", out)
	}
	checkGolden(t, "groups_describe_txn", head)
	lines := strings.Split(strings.TrimSuffix(txnTable, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("open transactions table has %d lines, want a heading and one row:\n%s", len(lines), txnTable)
	}
	if got, want := strings.Fields(lines[0]), []string{"TRANSACTIONAL-ID", "PRODUCER", "EPOCH", "STATE", "OPEN-FOR", "TIMEOUT", "PARTITIONS"}; !slices.Equal(got, want) {
		t.Errorf("heading %q, want %q", got, want)
	}
	row := strings.Fields(lines[1])
	if len(row) != 7 {
		t.Fatalf("row %q, want 7 cells", row)
	}
	wantRow := []string{"orders-writer", fmt.Sprint(pid), fmt.Sprint(epoch), "Ongoing", row[4], "30s", "orders:0"}
	if !slices.Equal(row, wantRow) {
		t.Errorf("row %q, want %q", row, wantRow)
	}
	// The broker keeps the start in wall-clock milliseconds; a second of
	// slack absorbs the rounding and any step of the clock.
	if openFor, err := time.ParseDuration(row[4]); err != nil || openFor < 0 || openFor > time.Since(began)+time.Second {
		t.Errorf("OPEN-FOR %q (%v): want a duration from 0 to the %v since the transaction began", row[4], err, time.Since(began))
	}
	if out := mustRun(t, "groups", "describe", "elsewhere", b); strings.Contains(out, "Open transactions") {
		t.Errorf("describe of elsewhere, whose partitions the transaction does not write, shows it:\n%s", out)
	}

	// JSON: both groups at once, the transaction with the first only.
	describe := func() []groupDescription {
		t.Helper()
		var descs []groupDescription
		decodeJSON(t, mustRun(t, "groups", "describe", "reader", "elsewhere", "--output", "json", b), &descs)
		if len(descs) != 2 || descs[0].Group != "reader" || descs[1].Group != "elsewhere" {
			t.Fatalf("describe JSON: %+v", descs)
		}
		for _, d := range descs {
			if d.Transactions == nil {
				t.Errorf("describe JSON of %s: transactions is null, want a list", d.Group)
			}
		}
		return descs
	}
	descs := describe()
	if len(descs[0].Transactions) != 1 {
		t.Fatalf("describe JSON of reader: transactions %+v, want one", descs[0].Transactions)
	}
	x := descs[0].Transactions[0]
	if x.TransactionalID != "orders-writer" || x.ProducerID != pid || x.ProducerEpoch != epoch || x.State != "Ongoing" || x.TimeoutMs != 30000 ||
		len(x.Partitions) != 1 || x.Partitions[0].Topic != "orders" || !slices.Equal(x.Partitions[0].Partitions, []int32{0}) {
		t.Errorf("describe JSON of reader: transaction %+v, want orders-writer (producer %d, epoch %d) Ongoing on orders:0 with a 30s timeout", x, pid, epoch)
	}
	if from, to := began.Add(-time.Second).UnixMilli(), time.Now().Add(time.Second).UnixMilli(); x.StartedMs < from || x.StartedMs > to {
		t.Errorf("describe JSON of reader: started_ms %d, want between %d and %d", x.StartedMs, from, to)
	}
	if got := descs[1].Transactions; len(got) != 0 {
		t.Errorf("describe JSON of elsewhere: transactions %+v, want none", got)
	}

	// EndTransaction returns once the markers are durable; the coordinator
	// writes CompleteCommit just after, and until then the transaction is
	// still open (PrepareCommit), as describe rightly says.
	if err := producer.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	for {
		descs := describe()
		if len(descs[0].Transactions) == 0 && len(descs[1].Transactions) == 0 {
			break
		}
		if x := descs[0].Transactions[0]; x.State != "PrepareCommit" {
			t.Fatalf("after the commit, describe JSON of reader shows %+v, want none or PrepareCommit", descs[0].Transactions)
		}
		if ctx.Err() != nil {
			t.Fatal("the committed transaction never left describe's output")
		}
	}
	if out := mustRun(t, "groups", "describe", "reader", b); strings.Contains(out, "Open transactions") {
		t.Errorf("describe of reader after the commit shows an open transaction:\n%s", out)
	}
}
