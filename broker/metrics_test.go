package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// gather returns the samples of g's runnel_broker_* metrics, keyed by name
// and labels as the text format writes them (labels sorted by name), with
// histograms as their _count and _sum.
func gather(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	samples := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "runnel_broker_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := func(name string) string {
				if len(labels) == 0 {
					return name
				}
				return name + "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				samples[key(mf.GetName())] = m.Counter.GetValue()
			case m.Gauge != nil:
				samples[key(mf.GetName())] = m.Gauge.GetValue()
			case m.Histogram != nil:
				samples[key(mf.GetName()+"_count")] = float64(m.Histogram.GetSampleCount())
				samples[key(mf.GetName()+"_sum")] = m.Histogram.GetSampleSum()
			}
		}
	}
	return samples
}

// checkSamples fails the test for every sample of want that got lacks or
// has another value of.
func checkSamples(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if v, ok := got[k]; !ok || v != want[k] {
			t.Errorf("%s = %v (present %v), want %v", k, v, ok, want[k])
		}
	}
}

// requestsKey is the requests_total sample of an API and error label.
func requestsKey(api, errLabel string) string {
	return fmt.Sprintf("runnel_broker_requests_total{api=%q,error=%q}", api, errLabel)
}

// exchange sends req on r and returns its response and the bytes each way,
// size prefixes included, as the broker counts them.
func exchange(r *rawClient, req kmsg.Request) (resp kmsg.Response, in, out int) {
	r.t.Helper()
	r.corr++
	frame := r.f.AppendRequest(nil, req, r.corr)
	r.write(frame)
	respFrame, err := r.readFrame()
	if err != nil {
		r.t.Fatalf("read response: %v", err)
	}
	body := respFrame[4:]
	if req.IsFlexible() {
		if body, err = skipTags(body); err != nil {
			r.t.Fatal(err)
		}
	}
	resp = req.ResponseKind()
	if err := resp.ReadFrom(body); err != nil {
		r.t.Fatalf("decode response: %v", err)
	}
	return resp, len(frame), len(respFrame) + 4
}

// TestMetrics drives known traffic through a broker, with franz-go and
// with a raw client where exact request counts and sizes are wanted, and
// checks every metric it moves: requests by API and error (an unknown
// topic, a failed acks=0 produce that closes the connection, a group
// join's MEMBER_ID_REQUIRED), bytes each way, the latency histograms, and
// the gauges read at scrape time.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry() // also checks Collect against Describe
	b := startBroker(t, "", func(c *Config) {
		c.Metrics = reg
		c.DisableAutoCreate = true
		c.GroupInitialRebalanceDelay = -1
	})
	createTopic(t, b, "events", 2)
	ctx := ctxFor(t)

	// At rest: every API's requests_total{error="none"} present at 0, so
	// that rates start from the broker's start, and every group state.
	rest := gather(t, reg)
	checkSamples(t, rest, map[string]float64{
		`runnel_broker_topic_partitions{topic="events"}`:             2,
		`runnel_broker_topic_partitions{topic="__consumer_offsets"}`: 1,
		`runnel_broker_log_size_bytes{topic="events"}`:               0,
		`runnel_broker_groups{state="Empty"}`:                        0,
		`runnel_broker_groups{state="PreparingRebalance"}`:           0,
		`runnel_broker_groups{state="CompletingRebalance"}`:          0,
		`runnel_broker_groups{state="Stable"}`:                       0,
		`runnel_broker_connections`:                                  0,
		`runnel_broker_produce_duration_seconds_count`:               0,
		`runnel_broker_fetch_duration_seconds_count`:                 0,
	})
	for key := range b.apis {
		if k := requestsKey(kmsg.NameForKey(key), "none"); rest[k] != 0 {
			t.Errorf("%s = %v before any request", k, rest[k])
		} else if _, ok := rest[k]; !ok {
			t.Errorf("%s missing before any request", k)
		}
	}
	checkNoOtherErrors(t, rest)

	// n records, one ProduceSync each, so one Produce request each.
	const n = 10
	value := bytes.Repeat([]byte("v"), 100)
	producer := newKgo(t, b, kgo.DefaultProduceTopic("events"), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression())) // so that sizes compare with the values
	for i := range n {
		if err := producer.ProduceSync(ctx, &kgo.Record{Partition: int32(i % 2), Value: value}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}

	raw := dialRaw(t, b)
	resp, _, _ := exchange(raw, produceRequest("missing", 0, -1, mustBatch(t, value)))
	if code := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("produce to a missing topic: %v", kerr.ErrorForCode(code))
	}
	resp, fetchIn, fetchOut := exchange(raw, fetchRequest("events", 0, 0, 0))
	if got := len(resp.(*kmsg.FetchResponse).Topics[0].Partitions[0].RecordBatches); got < n/2*len(value) {
		t.Fatalf("fetched %d bytes of records, want at least %d", got, n/2*len(value))
	}
	resp, in, out := exchange(raw, fetchRequest("missing", 0, 0, 0))
	if code := resp.(*kmsg.FetchResponse).Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("fetch of a missing topic: %v", kerr.ErrorForCode(code))
	}
	fetchIn, fetchOut = fetchIn+in, fetchOut+out

	// An acks=0 produce that fails is answered by closing the connection.
	closing := dialRaw(t, b)
	closing.send(produceRequest("missing", 0, 0, mustBatch(t, value)))
	closing.expectClosed()

	got := gather(t, reg)
	checkSamples(t, got, map[string]float64{
		requestsKey("Produce", "none"):                       n,
		requestsKey("Produce", "UNKNOWN_TOPIC_OR_PARTITION"): 1,
		requestsKey("Produce", "closed"):                     1,
		requestsKey("Fetch", "none"):                         1,
		requestsKey("Fetch", "UNKNOWN_TOPIC_OR_PARTITION"):   1,
		requestsKey("InitProducerID", "none"):                1,
		`runnel_broker_request_bytes_total{api="Fetch"}`:     float64(fetchIn),
		`runnel_broker_response_bytes_total{api="Fetch"}`:    float64(fetchOut),
		`runnel_broker_produce_duration_seconds_count`:       n + 2,
		`runnel_broker_fetch_duration_seconds_count`:         2,
		`runnel_broker_log_size_bytes{topic="events"}`:       float64(topicSize(b, "events")),
	})
	for _, k := range []string{requestsKey("ApiVersions", "none"), requestsKey("Metadata", "none")} {
		if got[k] < 1 {
			t.Errorf("%s = %v, want at least 1", k, got[k])
		}
	}
	if in := got[`runnel_broker_request_bytes_total{api="Produce"}`]; in <= (n+2)*float64(len(value)) {
		t.Errorf("Produce request bytes %v, want more than the %d bytes of values", in, (n+2)*len(value))
	}
	if size := got[`runnel_broker_log_size_bytes{topic="events"}`]; size <= n*float64(len(value)) {
		t.Errorf("events log size %v, want more than the %d bytes of values", size, n*len(value))
	}
	if got[`runnel_broker_connections`] < 2 {
		t.Errorf("connections %v with a franz-go client and a raw one open, want at least 2", got[`runnel_broker_connections`])
	}
	for _, k := range []string{`runnel_broker_produce_duration_seconds_sum`, `runnel_broker_fetch_duration_seconds_sum`} {
		if got[k] <= 0 {
			t.Errorf("%s = %v, want above 0", k, got[k])
		}
	}
	checkNoOtherErrors(t, got, requestsKey("Produce", "UNKNOWN_TOPIC_OR_PARTITION"), requestsKey("Produce", "closed"),
		requestsKey("Fetch", "UNKNOWN_TOPIC_OR_PARTITION"))

	// Groups: one Empty with a commit, one Stable with a member. franz-go's
	// first JoinGroup gets MEMBER_ID_REQUIRED (KIP-394), as from Kafka.
	commit := kadm.Offsets{}
	commit.Add(kadm.Offset{Topic: "events", Partition: 0, At: 1, LeaderEpoch: -1})
	if err := newKadm(t, b).CommitAllOffsets(ctx, "idle", commit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	joinGroup(t, b, "readers", "events", 2)
	got = gather(t, reg)
	checkSamples(t, got, map[string]float64{
		`runnel_broker_groups{state="Empty"}`:               1,
		`runnel_broker_groups{state="PreparingRebalance"}`:  0,
		`runnel_broker_groups{state="CompletingRebalance"}`: 0,
		`runnel_broker_groups{state="Stable"}`:              1,
		requestsKey("JoinGroup", "MEMBER_ID_REQUIRED"):      1,
		requestsKey("JoinGroup", "none"):                    1,
		requestsKey("SyncGroup", "none"):                    1,
	})
	if c := got[requestsKey("OffsetCommit", "none")]; c < 1 {
		t.Errorf("OffsetCommit requests %v, want at least 1", c)
	}
	checkNoOtherErrors(t, got, requestsKey("Produce", "UNKNOWN_TOPIC_OR_PARTITION"), requestsKey("Produce", "closed"),
		requestsKey("Fetch", "UNKNOWN_TOPIC_OR_PARTITION"), requestsKey("JoinGroup", "MEMBER_ID_REQUIRED"))
}

// checkNoOtherErrors fails the test for every requests_total sample with an
// error label other than none and those allowed. ApiVersions'
// UNSUPPORTED_VERSION is always allowed: franz-go opens each connection
// with an ApiVersions newer than the broker's, which is answered so, in v0,
// as KIP-511 asks, and retried at a version the broker knows.
func checkNoOtherErrors(t *testing.T, got map[string]float64, allowed ...string) {
	t.Helper()
	allowed = append(allowed, requestsKey("ApiVersions", "UNSUPPORTED_VERSION"))
	for k := range got {
		if strings.HasPrefix(k, "runnel_broker_requests_total") && !strings.Contains(k, `error="none"`) && !slices.Contains(allowed, k) {
			t.Errorf("unexpected %s = %v", k, got[k])
		}
	}
}

// topicSize is what a topic's partitions hold, read from the log.
func topicSize(b *Broker, topic string) int64 {
	var size int64
	for _, p := range b.Log().Topic(topic).Partitions() {
		size += p.Size()
	}
	return size
}

// joinGroup starts a franz-go member of grp consuming topic, with client
// id grp+"-client" and no autocommits (it commits only when told), and
// returns it once it has all partitions of topic assigned, and so once the
// group is Stable.
func joinGroup(t *testing.T, b *Broker, grp, topic string, partitions int) *kgo.Client {
	t.Helper()
	assigned := make(chan struct{})
	cl := newKgo(t, b, kgo.ConsumerGroup(grp), kgo.ConsumeTopics(topic), kgo.ClientID(grp+"-client"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			if len(a[topic]) == partitions {
				close(assigned)
			}
		}))
	ctx := ctxFor(t)
	go cl.PollFetches(ctx) // joining happens as the client polls
	select {
	case <-assigned:
	case <-ctx.Done():
		t.Fatalf("%s was not assigned %d partitions of %s", grp, partitions, topic)
	}
	return cl
}

// TestMetricsRegistration checks that a broker whose metrics cannot be
// registered does not start and leaves the Registerer as it was, and that
// Close unregisters, so that a broker started again may register.
func TestMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	withReg := func(c *Config) { c.Metrics = reg }
	first := startBroker(t, "", withReg)
	_, err := Start(t.Context(), Config{Addr: "127.0.0.1:0", Dir: t.TempDir(), Metrics: reg})
	var already prometheus.AlreadyRegisteredError
	if !errors.As(err, &already) || !strings.Contains(err.Error(), "register metrics") {
		t.Fatalf("second broker on one registry: %v, want AlreadyRegisteredError", err)
	}
	if len(gather(t, reg)) == 0 {
		t.Fatal("the failed start unregistered the first broker's metrics")
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if got := gather(t, reg); len(got) != 0 {
		t.Fatalf("metrics left after Close: %v", slices.Sorted(maps.Keys(got)))
	}
	again := startBroker(t, "", withReg)
	createTopic(t, again, "t", 3)
	checkSamples(t, gather(t, reg), map[string]float64{`runnel_broker_topic_partitions{topic="t"}`: 3})
}

// TestCodePlans checks that the error code of every API's response is
// found, and that the first non-zero one in response order is reported.
func TestCodePlans(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.Metrics = prometheus.NewRegistry() })
	for key, m := range b.metrics.byAPI {
		if m.codes.errorCode < 0 && len(m.codes.nested) == 0 {
			t.Errorf("%s: no ErrorCode field found in its response", kmsg.NameForKey(key))
		}
	}

	first := func(resp kmsg.Response) int16 {
		return b.metrics.api(resp.Key()).codes.first(reflect.ValueOf(resp).Elem())
	}
	produce := kmsg.NewPtrProduceResponse()
	for _, codes := range [][]int16{{0, kerr.NotLeaderForPartition.Code}, {kerr.MessageTooLarge.Code}} {
		rt := kmsg.NewProduceResponseTopic()
		for _, c := range codes {
			p := kmsg.NewProduceResponseTopicPartition()
			p.ErrorCode = c
			rt.Partitions = append(rt.Partitions, p)
		}
		produce.Topics = append(produce.Topics, rt)
	}
	if got := first(produce); got != kerr.NotLeaderForPartition.Code {
		t.Errorf("produce: %v, want NOT_LEADER_OR_FOLLOWER, the first in order", kerr.ErrorForCode(got))
	}
	produce.Topics[0].Partitions[1].ErrorCode = 0
	produce.Topics[1].Partitions[0].ErrorCode = 0
	if got := first(produce); got != 0 {
		t.Errorf("produce without errors: %v", kerr.ErrorForCode(got))
	}

	fetch := kmsg.NewPtrFetchResponse()
	fetch.ErrorCode = kerr.FetchSessionIDNotFound.Code
	ft := kmsg.NewFetchResponseTopic()
	fp := kmsg.NewFetchResponseTopicPartition()
	fp.ErrorCode = kerr.OffsetOutOfRange.Code
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	if got := first(fetch); got != kerr.FetchSessionIDNotFound.Code {
		t.Errorf("fetch: %v, want the top-level FETCH_SESSION_ID_NOT_FOUND", kerr.ErrorForCode(got))
	}
	fetch.ErrorCode = 0
	if got := first(fetch); got != kerr.OffsetOutOfRange.Code {
		t.Errorf("fetch: %v, want the partition's OFFSET_OUT_OF_RANGE", kerr.ErrorForCode(got))
	}

	configs := kmsg.NewPtrDescribeConfigsResponse()
	configs.Resources = append(configs.Resources, kmsg.NewDescribeConfigsResponseResource(), kmsg.NewDescribeConfigsResponseResource())
	configs.Resources[1].ErrorCode = kerr.InvalidRequest.Code
	if got := first(configs); got != kerr.InvalidRequest.Code {
		t.Errorf("describe configs: %v, want INVALID_REQUEST", kerr.ErrorForCode(got))
	}

	for code, want := range map[int16]string{
		kerr.UnknownTopicOrPartition.Code: "UNKNOWN_TOPIC_OR_PARTITION",
		kerr.MemberIDRequired.Code:        "MEMBER_ID_REQUIRED",
		-2:                                "-2",
		32000:                             "32000",
	} {
		if got := errorLabel(code); got != want {
			t.Errorf("errorLabel(%d) = %q, want %q", code, got, want)
		}
	}
}
