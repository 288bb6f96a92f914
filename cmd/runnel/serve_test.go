package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker"
)

// TestServeProcess builds runnel, runs `runnel serve --addr 127.0.0.1:0
// --metrics 127.0.0.1:0` as a process, reads the addresses it logs,
// produces and consumes with franz-go, reads the metrics and the monitor
// page over HTTP, and stops it with SIGTERM: it must exit 0 after closing
// the log.
func TestServeProcess(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build runnel with")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "runnel")
	if out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	cmd := exec.CommandContext(ctx, bin, "serve", "--addr", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
		"--data", filepath.Join(t.TempDir(), "data"), "--partitions", "2")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // only if the test fails before SIGTERM

	// Scan the log for the listening line; keep the rest for the end.
	var logs bytes.Buffer
	addrCh, webCh := make(chan string, 1), make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		re := regexp.MustCompile(`msg="runnel serve listening" addr=(\S+)`)
		webRE := regexp.MustCompile(`msg="runnel serve monitor listening" addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logs.WriteString(line + "\n")
			if m := re.FindStringSubmatch(line); m != nil {
				addrCh <- m[1]
			}
			if m := webRE.FindStringSubmatch(line); m != nil {
				webCh <- m[1]
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	var addr, web string
	for addr == "" || web == "" {
		select {
		case addr = <-addrCh:
		case web = <-webCh:
		case <-scanned:
			t.Fatalf("runnel serve exited without logging its addresses:\n%s", logs.String())
		case <-ctx.Done():
			t.Fatal("runnel serve did not log its addresses")
		}
	}
	for _, a := range []string{addr, web} {
		if !strings.HasPrefix(a, "127.0.0.1:") || strings.HasSuffix(a, ":0") {
			t.Fatalf("logged address %q, want 127.0.0.1 and the port chosen", a)
		}
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("served"), kgo.AllowAutoTopicCreation(),
		kgo.ConsumeTopics("served"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 20
	for i := range n {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "v%d", i)}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	seen := map[string]bool{}
	for len(seen) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records", len(seen), n)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", topic, p, err) })
		for _, r := range fs.Records() {
			seen[string(r.Value)] = true
		}
	}
	cl.Close()

	// One Produce request per ProduceSync.
	metrics := scrape(t, "http://"+web+"/metrics")
	if got := metrics[`runnel_broker_requests_total{api="Produce",error="none"}`]; got != n {
		t.Errorf("Produce requests %v, want %d", got, n)
	}
	if got := metrics[`runnel_broker_topic_partitions{topic="served"}`]; got != 2 {
		t.Errorf("partitions of served %v, want 2", got)
	}
	if page, ctype := httpGet(t, "http://"+web+"/"); !strings.HasPrefix(ctype, "text/html") || !strings.Contains(page, "monitor.js") {
		t.Errorf("monitor page is %q:\n%s", ctype, page)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-scanned // the log is complete once stderr closes
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) || err != nil {
		t.Fatalf("runnel serve exited with %v after SIGTERM:\n%s", err, logs.String())
	}
	for _, want := range []string{`msg="auto-created topic" topic=served partitions=2`, `msg="runnel serve stopped"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
}

// TestUnknownCommand checks that an unknown subcommand is an error that
// names it, with exit status 2.
func TestUnknownCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"frobnicate"}, &stdout, &stderr); code != 2 {
		t.Fatalf("exit status %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), `unknown command "frobnicate"`) || !strings.Contains(stderr.String(), "serve") {
		t.Fatalf("stderr does not name the unknown command and list the known ones:\n%s", stderr.String())
	}
}

// TestServeHelp prints serve's flags to stdout with exit status 0.
func TestServeHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"serve", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", code, stderr.String())
	}
	for _, flag := range []string{"-addr", "-data", "-fsync", "-partitions", "-auto-create", "-metrics"} {
		if !strings.Contains(stdout.String(), flag) {
			t.Errorf("help lacks %s:\n%s", flag, stdout.String())
		}
	}
}

// TestServeMetrics runs `runnel serve --metrics` in-process, drives known
// traffic with franz-go (n records produced one request each, a produce to
// a missing topic, a consumer group that reads and commits them all), and
// reads the monitor over HTTP: the exact request counts and gauges at
// /metrics, the topics and the group's lag at /api/status, and the page and
// its script with their content types. The broker then stops on cancel.
func TestServeMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	stderr := newSyncBuffer()
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
			"--data", t.TempDir(), "--auto-create=false", "--group-initial-rebalance-delay", "0"}, io.Discard, stderr)
	}()
	addr := awaitLogged(t, stderr, "runnel serve listening")
	web := "http://" + awaitLogged(t, stderr, "runnel serve monitor listening")

	createTopic(t, addr, "clicks", 3, nil)
	const n = 6
	value := bytes.Repeat([]byte("c"), 200)
	producer := newClient(t, addr, kgo.DefaultProduceTopic("clicks"), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	for i := range n {
		if err := producer.ProduceSync(ctx, &kgo.Record{Partition: int32(i % 3), Value: value}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	// Straight to the broker: franz-go's producer would not send a produce
	// for a topic that metadata says does not exist.
	missing := kmsg.NewPtrProduceRequest()
	missing.Acks, missing.TimeoutMillis = -1, 5000
	mt := kmsg.NewProduceRequestTopic()
	mt.Topic = "missing"
	mt.Partitions = append(mt.Partitions, kmsg.NewProduceRequestTopicPartition())
	missing.Topics = append(missing.Topics, mt)
	resp, err := producer.Broker(0).Request(ctx, missing)
	if err != nil {
		t.Fatalf("produce to a missing topic: %v", err)
	}
	if code := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode; code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("produce to a missing topic: %v", kerr.ErrorForCode(code))
	}

	assigned := make(chan struct{})
	consumer := newClient(t, addr, kgo.ConsumerGroup("audit"), kgo.ConsumeTopics("clicks"), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { close(assigned) }))
	for read := 0; read < n; {
		fs := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records", read, n)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", topic, p, err) })
		read += fs.NumRecords()
	}
	<-assigned
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}

	m := scrape(t, web+"/metrics")
	for key, want := range map[string]float64{
		`runnel_broker_requests_total{api="Produce",error="none"}`:                       n,
		`runnel_broker_requests_total{api="Produce",error="UNKNOWN_TOPIC_OR_PARTITION"}`: 1,
		`runnel_broker_produce_duration_seconds_count`:                                   n + 1,
		`runnel_broker_topic_partitions{topic="clicks"}`:                                 3,
		`runnel_broker_topic_partitions{topic="__consumer_offsets"}`:                     1,
		`runnel_broker_groups{state="Stable"}`:                                           1,
		`runnel_broker_groups{state="Empty"}`:                                            0,
	} {
		if got, ok := m[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	for key, atLeast := range map[string]float64{
		`runnel_broker_requests_total{api="Fetch",error="none"}`:     1,
		`runnel_broker_requests_total{api="JoinGroup",error="none"}`: 1,
		`runnel_broker_fetch_duration_seconds_count`:                 1,
		`runnel_broker_request_bytes_total{api="Produce"}`:           n*float64(len(value)) + 1,
		`runnel_broker_response_bytes_total{api="Fetch"}`:            n*float64(len(value)) + 1,
		`runnel_broker_log_size_bytes{topic="clicks"}`:               n*float64(len(value)) + 1,
		`runnel_broker_connections`:                                  2,
		`go_goroutines`:                                              1, // the process's own metrics too
	} {
		if got := m[key]; got < atLeast {
			t.Errorf("%s = %v, want at least %v", key, got, atLeast)
		}
	}

	var st broker.Status
	body, ctype := httpGet(t, web+"/api/status")
	if ctype != "application/json" {
		t.Errorf("/api/status Content-Type %q, want application/json", ctype)
	}
	decodeJSON(t, body, &st)
	var clicks *broker.TopicStatus
	for i := range st.Topics {
		if st.Topics[i].Name == "clicks" {
			clicks = &st.Topics[i]
		}
	}
	if clicks == nil || len(clicks.Partitions) != 3 {
		t.Fatalf("/api/status topics: %+v", st.Topics)
	}
	for _, p := range clicks.Partitions {
		if p.HighWatermark != n/3 || p.LogEndOffset != n/3 || p.SizeBytes <= n/3*int64(len(value)) {
			t.Errorf("/api/status clicks-%d: %+v, want %d records", p.Partition, p, n/3)
		}
	}
	if len(st.Groups) != 1 || st.Groups[0].Group != "audit" || st.Groups[0].State != "Stable" ||
		len(st.Groups[0].Members) != 1 || len(st.Groups[0].Offsets) != 3 {
		t.Fatalf("/api/status groups: %+v", st.Groups)
	}
	for _, o := range st.Groups[0].Offsets {
		if o.Committed == nil || *o.Committed != n/3 || o.Lag != 0 || o.MemberID != st.Groups[0].Members[0].MemberID {
			t.Errorf("/api/status audit offset: %+v, want committed %d, lag 0, owned by the member", o, n/3)
		}
	}

	page, ctype := httpGet(t, web+"/")
	if !strings.HasPrefix(ctype, "text/html") || !strings.Contains(page, `<script src="monitor.js"></script>`) {
		t.Errorf("/ is %q:\n%s", ctype, page)
	}
	script, ctype := httpGet(t, web+"/monitor.js")
	if !strings.HasPrefix(ctype, "text/javascript") || !strings.Contains(script, `fetch("api/status"`) {
		t.Errorf("/monitor.js is %q:\n%s", ctype, script)
	}
	if resp, err := http.Get(web + "/nope"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("/nope: %v %v, want 404", resp, err)
	} else {
		resp.Body.Close()
	}

	cancel()
	if code := <-exited; code != 0 {
		t.Fatalf("runnel serve exited %d:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), `msg="runnel serve stopped"`) {
		t.Errorf("log lacks the stop:\n%s", stderr.String())
	}
}

// awaitLogged waits for the log line with msg and returns its addr.
func awaitLogged(t *testing.T, logs *syncBuffer, msg string) string {
	t.Helper()
	re := regexp.MustCompile(`msg="` + regexp.QuoteMeta(msg) + `" addr=(\S+)`)
	var addr string
	logs.await(t, msg, func(s string) bool {
		if m := re.FindStringSubmatch(s); m != nil {
			addr = m[1]
			return true
		}
		return false
	})
	return addr
}

// httpGet fetches url, fails the test unless it answers 200, and returns
// the body and the Content-Type.
func httpGet(t *testing.T, url string) (body, contentType string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b), resp.Header.Get("Content-Type")
}

// scrape fetches url in the Prometheus text format and returns its samples
// keyed by name and labels as written there (labels sorted by name), with
// histograms as their _count and _sum.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	body, ctype := httpGet(t, url)
	if !strings.HasPrefix(ctype, "text/plain") {
		t.Fatalf("GET %s: Content-Type %q, want the text format", url, ctype)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", url, err, body)
	}
	samples := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			slices.Sort(labels)
			key := func(name string) string {
				if len(labels) == 0 {
					return name
				}
				return name + "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				samples[key(name)] = m.Counter.GetValue()
			case m.Gauge != nil:
				samples[key(name)] = m.Gauge.GetValue()
			case m.Histogram != nil:
				samples[key(name+"_count")] = float64(m.Histogram.GetSampleCount())
				samples[key(name+"_sum")] = m.Histogram.GetSampleSum()
			}
		}
	}
	return samples
}
