package broker

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/broker/internal/group"
)

// TestStatus checks the snapshot of topics and groups after known traffic:
// offsets and sizes per partition, an Empty group with a commit and its
// lag, and a Stable group with a member, its assignment and its commits.
func TestStatus(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.GroupInitialRebalanceDelay = -1; c.NodeID = 7 })
	createTopic(t, b, "events", 2)
	ctx := ctxFor(t)
	// 3 records to partition 0, 1 to partition 1.
	producer := newKgo(t, b, kgo.DefaultProduceTopic("events"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i, p := range []int32{0, 0, 0, 1} {
		if err := producer.ProduceSync(ctx, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "v%d", i)}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: "events", Partition: 0, At: 1, LeaderEpoch: -1})
	if err := newKadm(t, b).CommitAllOffsets(ctx, "idle", commit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	reader := joinGroup(t, b, "readers", "events", 2)
	// The member commits what it has read: the whole of partition 1.
	if err := reader.CommitRecords(ctx, &kgo.Record{Topic: "events", Partition: 1, Offset: 0, LeaderEpoch: -1}); err != nil {
		t.Fatalf("member commit: %v", err)
	}

	st := b.Status()
	if st.ClusterID != b.ClusterID() || st.NodeID != 7 || st.Addr != b.Addr() {
		t.Errorf("status header: %q %d %q, want %q 7 %q", st.ClusterID, st.NodeID, st.Addr, b.ClusterID(), b.Addr())
	}
	if len(st.Topics) != 3 || st.Topics[0].Name != group.OffsetsTopic || !st.Topics[0].Internal ||
		st.Topics[1].Name != transactionTopic || !st.Topics[1].Internal ||
		st.Topics[2].Name != "events" || st.Topics[2].Internal {
		t.Fatalf("topics: %+v, want %s and %s (internal) and events", st.Topics, group.OffsetsTopic, transactionTopic)
	}
	events := st.Topics[2]
	if len(events.Partitions) != 2 {
		t.Fatalf("events partitions: %+v", events.Partitions)
	}
	var sum int64
	for i, want := range []int64{3, 1} {
		p := events.Partitions[i]
		size := b.Log().Topic("events").Partition(int32(i)).Size()
		if p.Partition != int32(i) || p.LogStartOffset != 0 || p.HighWatermark != want || p.LogEndOffset != want ||
			p.SizeBytes != size || size == 0 {
			t.Errorf("events-%d: %+v, want offsets 0, %d, %d and size %d", i, p, want, want, size)
		}
		sum += p.SizeBytes
	}
	if events.SizeBytes != sum {
		t.Errorf("events size %d, want the partitions' %d", events.SizeBytes, sum)
	}

	if len(st.Groups) != 2 || st.Groups[0].Group != "idle" || st.Groups[1].Group != "readers" {
		t.Fatalf("groups: %+v, want idle and readers", st.Groups)
	}
	idle := st.Groups[0]
	if idle.State != "Empty" || len(idle.Members) != 0 || len(idle.Offsets) != 1 {
		t.Fatalf("idle: %+v", idle)
	}
	if o := idle.Offsets[0]; o.Topic != "events" || o.Partition != 0 || o.Committed == nil || *o.Committed != 1 ||
		o.LogStartOffset != 0 || o.HighWatermark != 3 || o.Lag != 2 || o.MemberID != "" {
		t.Errorf("idle offset: %+v, want events-0 committed 1, high watermark 3, lag 2", o)
	}

	readers := st.Groups[1]
	if readers.State != "Stable" || readers.ProtocolType != "consumer" || readers.Protocol == "" || readers.Generation < 1 ||
		len(readers.Members) != 1 {
		t.Fatalf("readers: %+v", readers)
	}
	m := readers.Members[0]
	if m.ClientID != "readers-client" || m.MemberID == "" || m.ClientHost == "" ||
		len(m.Assignments) != 1 || m.Assignments[0].Topic != "events" || fmt.Sprint(m.Assignments[0].Partitions) != "[0 1]" {
		t.Errorf("readers member: %+v, want client readers-client assigned events [0 1]", m)
	}
	if len(readers.Offsets) != 2 {
		t.Fatalf("readers offsets: %+v, want both partitions", readers.Offsets)
	}
	// Partition 0: assigned, nothing committed, so lag counts from the log
	// start. Partition 1: committed to its end.
	if o := readers.Offsets[0]; o.Partition != 0 || o.Committed != nil || o.HighWatermark != 3 || o.Lag != 3 || o.MemberID != m.MemberID {
		t.Errorf("readers events-0: %+v, want uncommitted, lag 3, owned by %s", o, m.MemberID)
	}
	if o := readers.Offsets[1]; o.Partition != 1 || o.Committed == nil || *o.Committed != 1 || o.Lag != 0 || o.MemberID != m.MemberID {
		t.Errorf("readers events-1: %+v, want committed 1, lag 0, owned by %s", o, m.MemberID)
	}

	// The JSON field names are what runnel serve's monitor page reads.
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Topics []struct {
			Name       string `json:"name"`
			Partitions []struct {
				HighWatermark int64 `json:"high_watermark"`
				SizeBytes     int64 `json:"size_bytes"`
			} `json:"partitions"`
		} `json:"topics"`
		Groups []struct {
			Group   string `json:"group"`
			State   string `json:"state"`
			Offsets []struct {
				Committed *int64 `json:"committed"`
				Lag       int64  `json:"lag"`
				MemberID  string `json:"member_id"`
			} `json:"offsets"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Topics[2].Partitions[0].HighWatermark != 3 || doc.Topics[2].Partitions[0].SizeBytes == 0 ||
		doc.Groups[1].State != "Stable" || doc.Groups[1].Offsets[0].Committed != nil || doc.Groups[1].Offsets[1].Lag != 0 ||
		doc.Groups[1].Offsets[1].MemberID != m.MemberID {
		t.Errorf("status JSON lacks what the page reads:\n%s", raw)
	}
}
