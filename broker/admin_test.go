package broker

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestKadmCreateTopics creates topics with partitions and configs, checks
// what the response and the log say, and the per-topic errors.
func TestKadmCreateTopics(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.DefaultPartitions = 4 })
	adm := newKadm(t, b)
	ctx := ctxFor(t)

	resp, err := adm.CreateTopic(ctx, 3, 1, map[string]*string{
		"retention.ms":   kadm.StringPtr("60000"),
		"cleanup.policy": kadm.StringPtr("compact"),
	}, "orders")
	if err != nil || resp.Err != nil {
		t.Fatalf("create topic: %v / %v", err, resp.Err)
	}
	topic := b.Log().Topic("orders")
	switch {
	case topic == nil:
		t.Fatal("topic orders does not exist after CreateTopics")
	case topic.NumPartitions() != 3 || resp.NumPartitions != 3 || resp.ReplicationFactor != 1:
		t.Fatalf("orders has %d partitions (response: %d, rf %d), want 3, rf 1", topic.NumPartitions(), resp.NumPartitions, resp.ReplicationFactor)
	case [16]byte(resp.ID) != topic.ID():
		t.Fatalf("response topic id %v, log has %x", resp.ID, topic.ID())
	case !topic.Config().Compact || topic.Config().RetentionMs != 60000:
		t.Fatalf("orders config %+v, want compact and retention.ms 60000", topic.Config())
	case value(resp.Configs["retention.ms"]) != "60000" || resp.Configs["retention.ms"].Source != kmsg.ConfigSourceDynamicTopicConfig:
		t.Fatalf("response config retention.ms = %+v, want 60000 from the topic", resp.Configs["retention.ms"])
	}

	// -1 partitions means the broker's default.
	if resp, err := adm.CreateTopic(ctx, -1, -1, nil, "defaulted"); err != nil || resp.Err != nil {
		t.Fatalf("create topic with defaults: %v / %v", err, resp.Err)
	}
	if n := b.Log().Topic("defaulted").NumPartitions(); n != 4 {
		t.Fatalf("topic created with -1 partitions has %d, want the default 4", n)
	}

	// Validate-only creates nothing.
	vresp, err := adm.ValidateCreateTopics(ctx, 2, 1, nil, "dry-run")
	if err != nil || vresp["dry-run"].Err != nil {
		t.Fatalf("validate create: %v / %v", err, vresp["dry-run"].Err)
	}
	if b.Log().Topic("dry-run") != nil {
		t.Fatal("validate-only CreateTopics created the topic")
	}

	for _, tc := range []struct {
		name       string
		partitions int32
		rf         int16
		configs    map[string]*string
		want       error
	}{
		{"orders", 1, 1, nil, kerr.TopicAlreadyExists},
		{"bad/name", 1, 1, nil, kerr.InvalidTopicException},
		{"zero-partitions", 0, 1, nil, kerr.InvalidPartitions},
		{"three-replicas", 1, 3, nil, kerr.InvalidReplicationFactor},
		{"bad-config", 1, 1, map[string]*string{"retention.ms": kadm.StringPtr("soon")}, kerr.InvalidConfig},
		{"unknown-config", 1, 1, map[string]*string{"no.such.config": kadm.StringPtr("1")}, kerr.InvalidConfig},
	} {
		rs, err := adm.CreateTopics(ctx, tc.partitions, tc.rf, tc.configs, tc.name)
		if err != nil {
			t.Fatalf("create %s: %v", tc.name, err)
		}
		resp := rs[tc.name]
		if !errors.Is(resp.Err, tc.want) {
			t.Errorf("create %s: error %v, want %v", tc.name, resp.Err, tc.want)
		}
		if resp.ErrMessage == "" {
			t.Errorf("create %s: %v without a message", tc.name, resp.Err)
		}
	}
}

// TestKadmDescribeConfigs checks values and sources (topic override or
// default) of topic configs, synonyms, and the broker's configs.
func TestKadmDescribeConfigs(t *testing.T) {
	b := startBroker(t, "")
	if _, err := b.Log().CreateTopic("described", 1, map[string]string{"retention.ms": "1234"}); err != nil {
		t.Fatal(err)
	}
	adm := newKadm(t, b)
	rcs, err := adm.DescribeTopicConfigs(ctxFor(t), "described", "missing")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]kadm.ResourceConfig{}
	for _, rc := range rcs {
		byName[rc.Name] = rc
	}
	if !errors.Is(byName["missing"].Err, kerr.UnknownTopicOrPartition) {
		t.Errorf("describe configs of a missing topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", byName["missing"].Err)
	}
	got := map[string]kadm.Config{}
	for _, c := range byName["described"].Configs {
		got[c.Key] = c
	}
	for _, name := range []string{"cleanup.policy", "retention.ms", "retention.bytes", "segment.bytes", "segment.ms",
		"delete.retention.ms", "min.cleanable.dirty.ratio", "max.message.bytes", "message.timestamp.type"} {
		if _, ok := got[name]; !ok {
			t.Errorf("config %s not described", name)
		}
	}
	rm := got["retention.ms"]
	if value(rm) != "1234" || rm.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Errorf("retention.ms = %s from %v, want 1234 from the topic", value(rm), rm.Source)
	}
	if len(rm.Synonyms) != 2 || rm.Synonyms[1].Key != "log.retention.ms" || rm.Synonyms[1].Source != kmsg.ConfigSourceDefaultConfig {
		t.Errorf("retention.ms synonyms %+v, want the override then log.retention.ms's default", rm.Synonyms)
	}
	sb := got["segment.bytes"]
	if value(sb) != "1073741824" || sb.Source != kmsg.ConfigSourceDefaultConfig {
		t.Errorf("segment.bytes = %s from %v, want 1073741824 by default", value(sb), sb.Source)
	}
	if cp := got["cleanup.policy"]; value(cp) != "delete" {
		t.Errorf("cleanup.policy = %s, want delete", value(cp))
	}

	brcs, err := adm.DescribeBrokerConfigs(ctxFor(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	bc := map[string]string{}
	for _, c := range brcs[0].Configs {
		bc[c.Key] = value(c)
	}
	if bc["num.partitions"] != "1" || bc["auto.create.topics.enable"] != "true" || bc["log.retention.ms"] != "604800000" {
		t.Errorf("broker configs %v lack the expected defaults", bc)
	}
}

// TestKadmAlterConfigs alters topic configs with the legacy (replace all)
// and the incremental API: SET, DELETE, APPEND and SUBTRACT.
func TestKadmAlterConfigs(t *testing.T) {
	b := startBroker(t, "")
	if _, err := b.Log().CreateTopic("altered", 1, map[string]string{"retention.ms": "1000", "segment.ms": "5000"}); err != nil {
		t.Fatal(err)
	}
	adm := newKadm(t, b)
	ctx := ctxFor(t)
	overrides := func() map[string]string { return b.Log().Topic("altered").Overrides() }
	check := func(what string, rs kadm.AlterConfigsResponses, err error, want error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(rs) != 1 || !errors.Is(rs[0].Err, want) {
			t.Fatalf("%s: %+v, want error %v", what, rs, want)
		}
	}

	// Legacy AlterConfigs replaces every override.
	rs, err := adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.bytes", Value: kadm.StringPtr("99999")}}, "altered")
	check("alter configs", rs, err, nil)
	if o := overrides(); len(o) != 1 || o["retention.bytes"] != "99999" {
		t.Fatalf("after AlterConfigs, overrides are %v, want only retention.bytes=99999", o)
	}

	// Incremental: set one, keep the rest.
	rs, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "segment.ms", Value: kadm.StringPtr("7000")}}, "altered")
	check("incremental set", rs, err, nil)
	if o := overrides(); o["segment.ms"] != "7000" || o["retention.bytes"] != "99999" {
		t.Fatalf("after SET, overrides are %v", o)
	}
	// APPEND to a list starts from the default ("delete").
	rs, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.AppendConfig, Name: "cleanup.policy", Value: kadm.StringPtr("compact")}}, "altered")
	check("incremental append", rs, err, nil)
	if cfg := b.Log().Topic("altered").Config(); !cfg.Compact || !cfg.Delete {
		t.Fatalf("after APPEND compact, cleanup.policy is %q", overrides()["cleanup.policy"])
	}
	rs, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SubtractConfig, Name: "cleanup.policy", Value: kadm.StringPtr("delete")}}, "altered")
	check("incremental subtract", rs, err, nil)
	if p := overrides()["cleanup.policy"]; p != "compact" {
		t.Fatalf("after SUBTRACT delete, cleanup.policy is %q, want compact", p)
	}
	rs, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: "segment.ms"}}, "altered")
	check("incremental delete", rs, err, nil)
	if _, ok := overrides()["segment.ms"]; ok {
		t.Fatal("segment.ms still overridden after DELETE")
	}

	// Refusals change nothing.
	before := overrides()
	rs, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.AppendConfig, Name: "retention.ms", Value: kadm.StringPtr("5")}}, "altered")
	check("append to a non-list", rs, err, kerr.InvalidConfig)
	rs, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("forever")}}, "altered")
	check("set a bad value", rs, err, kerr.InvalidConfig)
	rs, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("5")}}, "no-such-topic")
	check("alter a missing topic", rs, err, kerr.UnknownTopicOrPartition)
	if after := overrides(); !equalMaps(before, after) {
		t.Fatalf("refused alters changed overrides from %v to %v", before, after)
	}
}

// userTopics lists the non-internal topics of a metadata response, sorted.
func userTopics(md kadm.Metadata) []string {
	var names []string
	for _, name := range md.Topics.Names() {
		if !md.Topics[name].IsInternal {
			names = append(names, name)
		}
	}
	return names
}

func value(c kadm.Config) string { return c.MaybeValue() }

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestKadmCreatePartitions grows a topic and refuses to shrink it.
func TestKadmCreatePartitions(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "growing", 1)
	adm := newKadm(t, b)
	rs, err := adm.CreatePartitions(ctxFor(t), 2, "growing")
	if err != nil || rs["growing"].Err != nil {
		t.Fatalf("create partitions: %v / %+v", err, rs)
	}
	if n := b.Log().Topic("growing").NumPartitions(); n != 3 {
		t.Fatalf("growing has %d partitions, want 3", n)
	}
	md, err := adm.Metadata(ctxFor(t), "growing")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(md.Topics["growing"].Partitions); n != 3 {
		t.Fatalf("metadata shows %d partitions, want 3", n)
	}
	rs, err = adm.UpdatePartitions(ctxFor(t), 2, "growing")
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(rs["growing"].Err, kerr.InvalidPartitions) {
		t.Fatalf("shrinking to 2 partitions: %v, want INVALID_PARTITIONS", rs["growing"].Err)
	}
}

// TestKadmListOffsetsAndDeleteRecords lists earliest, latest, by-timestamp
// and max-timestamp offsets, then deletes records and lists again.
func TestKadmListOffsetsAndDeleteRecords(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "listed", 1)
	cl := newKgo(t, b, kgo.DefaultProduceTopic("listed"))
	base := time.UnixMilli(1_700_000_000_000)
	// Record i is stamped base+i seconds, except record 7, stamped last.
	for i := range 10 {
		ts := base.Add(time.Duration(i) * time.Second)
		if i == 7 {
			ts = base.Add(time.Hour)
		}
		// One batch per record, so that timestamps resolve to records.
		if err := cl.ProduceSync(ctxFor(t), &kgo.Record{Value: []byte{byte(i)}, Timestamp: ts}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	ctx := ctxFor(t)
	offset := func(what string, l kadm.ListedOffsets, err error) kadm.ListedOffset {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		o, ok := l.Lookup("listed", 0)
		if !ok || o.Err != nil {
			t.Fatalf("%s: %+v", what, o)
		}
		return o
	}
	l, err := adm.ListStartOffsets(ctx, "listed")
	if o := offset("earliest", l, err); o.Offset != 0 {
		t.Errorf("earliest offset %d, want 0", o.Offset)
	}
	l, err = adm.ListEndOffsets(ctx, "listed")
	if o := offset("latest", l, err); o.Offset != 10 {
		t.Errorf("latest offset %d, want 10", o.Offset)
	}
	l, err = adm.ListOffsetsAfterMilli(ctx, base.Add(4500*time.Millisecond).UnixMilli(), "listed")
	if o := offset("by timestamp", l, err); o.Offset != 5 || o.Timestamp != base.Add(5*time.Second).UnixMilli() {
		t.Errorf("offset after record 4's time: %d at %d, want 5 at %d", o.Offset, o.Timestamp, base.Add(5*time.Second).UnixMilli())
	}
	l, err = adm.ListMaxTimestampOffsets(ctx, "listed")
	if o := offset("max timestamp", l, err); o.Offset != 7 || o.Timestamp != base.Add(time.Hour).UnixMilli() {
		t.Errorf("max timestamp offset %d at %d, want 7 at %d", o.Offset, o.Timestamp, base.Add(time.Hour).UnixMilli())
	}

	dr, err := adm.DeleteRecords(ctx, kadm.Offsets{"listed": {0: {Topic: "listed", Partition: 0, At: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := dr.Lookup("listed", 0); r.Err != nil || r.LowWatermark != 4 {
		t.Fatalf("delete records before 4: %+v", r)
	}
	l, err = adm.ListStartOffsets(ctx, "listed")
	if o := offset("earliest after deleting", l, err); o.Offset != 4 {
		t.Errorf("earliest offset after deleting records %d, want 4", o.Offset)
	}
	dr, err = adm.DeleteRecords(ctx, kadm.Offsets{"listed": {0: {Topic: "listed", Partition: 0, At: 11}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := dr.Lookup("listed", 0); !errors.Is(r.Err, kerr.OffsetOutOfRange) {
		t.Fatalf("delete records past the end: %v, want OFFSET_OUT_OF_RANGE", r.Err)
	}
}

// TestKadmDeleteTopics deletes topics by name and, with DeleteTopics v6, by
// id.
func TestKadmDeleteTopics(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "doomed", 2)
	createTopic(t, b, "doomed-by-id", 1)
	cl := newKgo(t, b)
	adm := kadm.NewClient(cl)
	ctx := ctxFor(t)
	rs, err := adm.DeleteTopics(ctx, "doomed", "never-was")
	if err != nil {
		t.Fatal(err)
	}
	if rs["doomed"].Err != nil {
		t.Fatalf("delete doomed: %v", rs["doomed"].Err)
	}
	if !errors.Is(rs["never-was"].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("delete a missing topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", rs["never-was"].Err)
	}
	if b.Log().Topic("doomed") != nil {
		t.Fatal("doomed still exists")
	}

	id := b.Log().Topic("doomed-by-id").ID()
	req := kmsg.NewPtrDeleteTopicsRequest()
	rt := kmsg.NewDeleteTopicsRequestTopic()
	rt.TopicID = id
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Version < 6 {
		t.Fatalf("DeleteTopics negotiated v%d, want v6 for ids", resp.Version)
	}
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 || resp.Topics[0].Topic == nil || *resp.Topics[0].Topic != "doomed-by-id" {
		t.Fatalf("delete by id: %+v", resp.Topics)
	}
	if b.Log().Topic("doomed-by-id") != nil {
		t.Fatal("doomed-by-id still exists")
	}
	md, err := adm.Metadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if names := userTopics(md); len(names) != 0 {
		t.Fatalf("metadata lists %v after deleting every topic", names)
	}
}

// TestMetadataDescribesCluster checks the cluster, broker, topics,
// partitions and topic ids Metadata reports, and DescribeCluster.
func TestMetadataDescribesCluster(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.NodeID = 3 })
	createTopic(t, b, "m1", 2)
	createTopic(t, b, "m2", 1)
	cl := newKgo(t, b)
	adm := kadm.NewClient(cl)
	md, err := adm.Metadata(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if md.Cluster != b.ClusterID() || md.Controller != 3 {
		t.Errorf("cluster %q controller %d, want %q and 3", md.Cluster, md.Controller, b.ClusterID())
	}
	if len(md.Brokers) != 1 || md.Brokers[0].NodeID != 3 || md.Brokers[0].Host != "127.0.0.1" {
		t.Errorf("brokers %+v, want node 3 on 127.0.0.1", md.Brokers)
	}
	if names := userTopics(md); !slices.Equal(names, []string{"m1", "m2"}) {
		t.Fatalf("topics %v, want m1 and m2", names)
	}
	if off, ok := md.Topics["__consumer_offsets"]; !ok || !off.IsInternal {
		t.Errorf("__consumer_offsets is not listed as internal: %+v", off)
	}
	m1 := md.Topics["m1"]
	if [16]byte(m1.ID) != b.Log().Topic("m1").ID() {
		t.Errorf("m1 id %v, want %x", m1.ID, b.Log().Topic("m1").ID())
	}
	for _, p := range m1.Partitions {
		if p.Leader != 3 || p.LeaderEpoch != 0 || !slices.Equal(p.Replicas, []int32{3}) || !slices.Equal(p.ISR, []int32{3}) {
			t.Errorf("m1 partition %+v, want led by 3 at epoch 0 with replicas and ISR [3]", p)
		}
	}

	dreq := kmsg.NewPtrDescribeClusterRequest()
	dresp, err := dreq.RequestWith(ctxFor(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	if dresp.ErrorCode != 0 || dresp.ClusterID != b.ClusterID() || dresp.ControllerID != 3 || len(dresp.Brokers) != 1 || dresp.Brokers[0].NodeID != 3 {
		t.Fatalf("describe cluster: %+v", dresp)
	}
}

// TestMetadataAutoCreate creates topics that Metadata asks for, unless the
// request or the config forbids it.
func TestMetadataAutoCreate(t *testing.T) {
	for _, disabled := range []bool{false, true} {
		b := startBroker(t, "", func(c *Config) { c.DisableAutoCreate = disabled; c.DefaultPartitions = 2 })
		cl := newKgo(t, b)
		for _, allow := range []bool{false, true} {
			topic := map[bool]string{false: "forbidden", true: "allowed"}[allow]
			req := kmsg.NewPtrMetadataRequest()
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(topic)
			req.Topics = append(req.Topics, rt)
			req.AllowAutoTopicCreation = allow
			resp, err := req.RequestWith(ctxFor(t), cl)
			if err != nil {
				t.Fatal(err)
			}
			created := allow && !disabled
			wantCode := map[bool]int16{true: 0, false: kerr.UnknownTopicOrPartition.Code}[created]
			if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != wantCode {
				t.Fatalf("disabled=%v allow=%v: metadata %+v, want error code %d", disabled, allow, resp.Topics, wantCode)
			}
			if got := b.Log().Topic(topic) != nil; got != created {
				t.Fatalf("disabled=%v allow=%v: topic exists = %v, want %v", disabled, allow, got, created)
			}
			if created && (len(resp.Topics[0].Partitions) != 2 || b.Log().Topic(topic).NumPartitions() != 2) {
				t.Fatalf("auto-created topic has %d partitions, want the default 2", len(resp.Topics[0].Partitions))
			}
		}
	}
}
