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
