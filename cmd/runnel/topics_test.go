package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestTopics creates, lists, describes, alters and deletes topics through
// the CLI against a broker, with golden tables, parsed JSON, and the
// mistakes a person makes.
func TestTopics(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr

	// Flags after the topic names, as people type them.
	out := mustRun(t, "topics", "create", "clicks", "views", "--partitions", "3", "--config", "cleanup.policy=compact", "--config", "retention.ms=3600000", b)
	if want := "created topic clicks with 3 partitions\ncreated topic views with 3 partitions\n"; out != want {
		t.Errorf("create printed %q, want %q", out, want)
	}
	mustRun(t, "topics", "create", b, "--partitions=1", "a-single")
	produceTo(t, addr,
		&kgo.Record{Topic: "clicks", Partition: 0, Key: []byte("k0"), Value: []byte("v")},
		&kgo.Record{Topic: "clicks", Partition: 2, Key: []byte("k1"), Value: []byte("v")},
		&kgo.Record{Topic: "clicks", Partition: 2, Key: []byte("k2"), Value: []byte("v")},
	)

	checkGolden(t, "topics_list", mustRun(t, "topics", "list", b))
	var list []topicSummary
	decodeJSON(t, mustRun(t, "topics", "list", "--output", "json", "--internal", b), &list)
	names := map[string]topicSummary{}
	for _, s := range list {
		names[s.Topic] = s
	}
	if s := names["clicks"]; s.Partitions != 3 || s.ReplicationFactor != 1 || s.Internal {
		t.Errorf("topics list JSON: clicks is %+v", s)
	}
	if s, ok := names["__consumer_offsets"]; !ok || !s.Internal {
		t.Errorf("topics list --internal JSON lacks the offsets topic as internal: %+v", list)
	}
	if strings.Contains(mustRun(t, "topics", "list", b), "__consumer_offsets") {
		t.Error("topics list shows internal topics without --internal")
	}

	checkGolden(t, "topics_describe", mustRun(t, "topics", "describe", "clicks", "a-single", b))
	var descs []topicDescription
	decodeJSON(t, mustRun(t, "topics", "describe", "clicks", "--output=json", b), &descs)
	if len(descs) != 1 || descs[0].Topic != "clicks" || len(descs[0].Partitions) != 3 {
		t.Fatalf("describe JSON: %+v", descs)
	}
	for i, want := range []int64{1, 0, 2} {
		if p := descs[0].Partitions[i]; p.Partition != int32(i) || p.LogStartOffset != 0 || p.LogEndOffset != want || p.Leader != 0 {
			t.Errorf("describe JSON partition %d: %+v, want log end %d", i, p, want)
		}
	}
	if got := configMap(descs[0].Configs); got["cleanup.policy"] != "compact" || got["retention.ms"] != "3600000" || len(got) != 2 {
		t.Errorf("describe JSON configs: %v, want only those set at creation", got)
	}
	decodeJSON(t, mustRun(t, "topics", "describe", "clicks", "--all-configs", "--output=json", b), &descs)
	if got := configMap(descs[0].Configs); len(got) <= 2 || got["cleanup.policy"] != "compact" {
		t.Errorf("describe --all-configs: %v, want the defaults as well", got)
	}

	out = mustRun(t, "topics", "alter", "clicks", "--config", "retention.ms=60000", "--delete-config", "cleanup.policy", "--partitions", "5", b)
	if want := "altered topic clicks: set retention.ms=60000, removed cleanup.policy, partitions 3 -> 5\n"; out != want {
		t.Errorf("alter printed %q, want %q", out, want)
	}
	decodeJSON(t, mustRun(t, "topics", "describe", "clicks", "--output=json", b), &descs)
	if got := configMap(descs[0].Configs); len(descs[0].Partitions) != 5 || got["retention.ms"] != "60000" || len(got) != 1 {
		t.Errorf("after alter: %d partitions, configs %v; want 5 and only retention.ms=60000", len(descs[0].Partitions), got)
	}

	out = mustRun(t, "topics", "delete", "views", "a-single", b)
	if want := "deleted topic views\ndeleted topic a-single\n"; out != want {
		t.Errorf("delete printed %q, want %q", out, want)
	}
	if out := mustRun(t, "topics", "list", b); strings.Contains(out, "views") || !strings.Contains(out, "clicks") {
		t.Errorf("after delete, list shows:\n%s", out)
	}

	t.Run("errors", func(t *testing.T) {
		wantFailure(t, 1, "runnel topics create: topic \"clicks\" already exists\n", "topics", "create", "clicks", b)
		wantFailure(t, 1, "runnel topics describe: topic \"nosuch\" does not exist\n", "topics", "describe", "nosuch", b)
		wantFailure(t, 1, "runnel topics delete: topic \"nosuch\" does not exist\n", "topics", "delete", "nosuch", b)
		wantFailure(t, 1, "runnel topics alter: topic \"nosuch\" does not exist\n", "topics", "alter", "nosuch", "--config", "retention.ms=1", b)
		wantFailure(t, 1, "partitions can only be added", "topics", "alter", "clicks", "--partitions", "2", b)
		wantFailure(t, 1, `unknown topic config "no.such.config"`, "topics", "alter", "clicks", "--config", "no.such.config=1", b)
		wantFailure(t, 1, "runnel topics list: cannot reach brokers 127.0.0.1:1: ", "topics", "list", "--brokers", "127.0.0.1:1")

		wantFailure(t, 2, "runnel topics: missing command", "topics")
		wantFailure(t, 2, `runnel topics: unknown command "frob"`, "topics", "frob")
		wantFailure(t, 2, "runnel topics create: no topic given", "topics", "create", b)
		wantFailure(t, 2, "--partitions 0", "topics", "create", "x", "--partitions", "0", b)
		wantFailure(t, 2, "is not of the form key=value", "topics", "create", "x", "--config", "retention.ms", b)
		wantFailure(t, 2, "nothing to change", "topics", "alter", "clicks", b)
		wantFailure(t, 2, `"xml" is neither table nor json`, "topics", "list", "--output", "xml", b)
		wantFailure(t, 2, "unexpected arguments", "topics", "list", "extra", b)
	})
}

// TestTopicsDeleteMany deletes more topics than fit one request, with
// progress on stderr (not a terminal here, so only with --progress).
func TestTopicsDeleteMany(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr
	var topics []string
	for i := range 3*deleteBatch + 2 {
		topics = append(topics, fmt.Sprintf("many-%02d", i))
	}
	mustRun(t, append([]string{"topics", "create", b, "--partitions=1"}, topics...)...)
	r := runCLI(t, append([]string{"topics", "delete", b, "--progress"}, topics...)...)
	if r.code != 0 {
		t.Fatalf("exit status %d: %s", r.code, r.stderr)
	}
	if n := strings.Count(r.stdout, "deleted topic many-"); n != len(topics) {
		t.Errorf("stdout reports %d deletions, want %d:\n%s", n, len(topics), r.stdout)
	}
	if want := fmt.Sprintf("deleted %d of %d topics\n", len(topics), len(topics)); !strings.HasSuffix(r.stderr, want) {
		t.Errorf("progress on stderr does not end with %q:\n%s", want, r.stderr)
	}
	if out := mustRun(t, "topics", "list", b); strings.Contains(out, "many-") {
		t.Errorf("topics left after delete:\n%s", out)
	}
	// Without --progress and with stderr not a terminal, nothing is reported.
	mustRun(t, "topics", "create", b, "quiet")
	if r := runCLI(t, "topics", "delete", b, "quiet"); r.code != 0 || r.stderr != "" {
		t.Errorf("delete without --progress: status %d, stderr %q", r.code, r.stderr)
	}
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("output is not the JSON expected: %v\n%s", err, s)
	}
}

func configMap(cs []configEntry) map[string]string {
	m := map[string]string{}
	for _, c := range cs {
		if c.Value != nil {
			m[c.Name] = *c.Value
		}
	}
	return m
}
