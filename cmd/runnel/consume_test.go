package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// logStart is the timestamp of the first record of the "log" topic; each
// next record is a minute later.
var logStart = time.Date(2026, 1, 2, 15, 4, 0, 0, time.UTC)

// fillLog creates topic "log", one partition, with six records: k0=v0 to
// k4=v4 with header h=0..4, and a last one with neither key nor value. Each
// is a batch of its own: runnel serve finds offsets by time to the batch (see
// broker/storage Partition.OffsetForTimestamp), Kafka to the record.
func fillLog(t *testing.T, addr string) {
	t.Helper()
	createTopic(t, addr, "log", 1, nil)
	var recs []*kgo.Record
	for i := range 5 {
		recs = append(recs, &kgo.Record{
			Topic: "log", Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i),
			Headers:   []kgo.RecordHeader{{Key: "h", Value: fmt.Appendf(nil, "%d", i)}},
			Timestamp: logStart.Add(time.Duration(i) * time.Minute),
		})
	}
	recs = append(recs, &kgo.Record{Topic: "log", Timestamp: logStart.Add(5 * time.Minute)})
	for _, r := range recs {
		produceTo(t, addr, r)
	}
}

// TestConsume prints records with templates and JSON, from every kind of
// position, as a group member that commits, and stops at -n.
func TestConsume(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr
	fillLog(t, addr)

	checkGolden(t, "consume_format", mustRun(t, "consume", "log", "-n", "6", b,
		"--format", `{{.Topic}}\t{{.Partition}}\t{{.Offset}}\t{{printf "%q" .Key}}={{.Value}}\th={{index .Headers "h"}}\t{{.Timestamp.UTC.Format "2006-01-02T15:04:05Z07:00"}}`))

	// The default format is the value alone.
	if out := mustRun(t, "consume", "log", "-n", "2", b); out != "v0\nv1\n" {
		t.Errorf("default format printed %q", out)
	}

	out := mustRun(t, "consume", "log", "-n", "6", "--format", "json", b)
	recs := jsonLines[jsonRecord](t, out)
	if len(recs) != 6 {
		t.Fatalf("--format json printed %d lines, want 6:\n%s", len(recs), out)
	}
	for i, r := range recs {
		if r.Topic != "log" || r.Partition != 0 || r.Offset != int64(i) || !r.Timestamp.Equal(logStart.Add(time.Duration(i)*time.Minute)) {
			t.Errorf("JSON record %d: %+v", i, r)
		}
		if i == 5 {
			if r.Key != nil || r.Value != nil || len(r.Headers) != 0 {
				t.Errorf("JSON record without key and value: %+v", r)
			}
			continue
		}
		if r.Key == nil || *r.Key != fmt.Sprintf("k%d", i) || r.Value == nil || *r.Value != fmt.Sprintf("v%d", i) ||
			len(r.Headers) != 1 || r.Headers[0] != (jsonHeader{"h", fmt.Sprint(i)}) {
			t.Errorf("JSON record %d: %+v", i, r)
		}
	}

	for _, c := range []struct{ from, want string }{
		{"beginning", "0 1 "},
		{"3", "3 4 "},
		{"2026-01-02T15:06:00Z", "2 3 "},
		{"2026-01-02T16:06:30+01:00", "3 4 "}, // 15:06:30 UTC: the first record at or after it is 3
		{fmt.Sprintf("@%d", logStart.Add(4*time.Minute).UnixMilli()), "4 5 "},
	} {
		if out := mustRun(t, "consume", "log", "--from", c.from, "-n", "2", "--format", "{{.Offset}} ", b); out != strings.ReplaceAll(c.want, " ", " \n") {
			t.Errorf("--from %s printed offsets %q, want %q", c.from, strings.ReplaceAll(out, "\n", ""), c.want)
		}
	}

	t.Run("group", func(t *testing.T) {
		if out := mustRun(t, "consume", "log", "--group", "readers", "-n", "2", b); out != "v0\nv1\n" {
			t.Errorf("first member printed %q", out)
		}
		// The next member of the group resumes where the first committed;
		// --from applies only to partitions without a commit.
		if out := mustRun(t, "consume", "log", "--group", "readers", "--from", "end", "-n", "2", b); out != "v2\nv3\n" {
			t.Errorf("second member printed %q, want v2 v3", out)
		}
		offs, err := kadm.NewClient(newClient(t, addr)).FetchOffsets(t.Context(), "readers")
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := offs.Lookup("log", 0); !ok || o.At != 4 {
			t.Errorf("group readers committed %+v, want offset 4", o)
		}
	})

	t.Run("from end", func(t *testing.T) {
		// Records produced after the consumer has found the end are the
		// ones it prints. When that happens is not observable from here,
		// so records keep coming until one is printed.
		done := make(chan result, 1)
		go func() { done <- runCLI(t, "consume", "log", "--from", "end", "-n", "1", b) }()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(cliTimeout)
		for i := 0; ; i++ {
			select {
			case r := <-done:
				if r.code != 0 || !strings.HasPrefix(r.stdout, "late-") || strings.Count(r.stdout, "\n") != 1 {
					t.Fatalf("--from end: status %d, printed %q, want one late record; stderr:\n%s", r.code, r.stdout, r.stderr)
				}
				return
			case <-tick.C:
				produceTo(t, addr, &kgo.Record{Topic: "log", Value: fmt.Appendf(nil, "late-%d", i)})
			case <-deadline:
				t.Fatal("consume --from end printed nothing")
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		wantFailure(t, 1, "runnel consume: topic \"nosuch\" does not exist\n", "consume", "nosuch", "-n", "1", b)
		wantFailure(t, 2, `invalid value "yesterday" for flag -from: "yesterday" is not a position`, "consume", "log", "--from", "yesterday", b)
		wantFailure(t, 2, "an offset cannot be negative", "consume", "log", "--from", "-3", b)
		wantFailure(t, 2, "want unix milliseconds after the @", "consume", "log", "--from", "@soon", b)
		wantFailure(t, 2, "runnel consume: --format: template: ", "consume", "log", "--format", "{{.Value", b)
		wantFailure(t, 2, "-n -1: want a count", "consume", "log", "-n", "-1", b)
		wantFailure(t, 2, "want one topic, got 2 arguments", "consume", "log", "other", b)
		wantFailure(t, 1, "runnel consume: --format, record at log partition 0 offset 0: ", "consume", "log", "--format", "{{.Nope}}", "-n", "1", b)
	})
}

// TestConsumeUntilCancelled follows a topic without -n until its context
// ends, as SIGINT ends it, exits 0, and reports progress every second with
// --progress.
func TestConsumeUntilCancelled(t *testing.T) {
	addr := startBroker(t)
	createTopic(t, addr, "wide", 3, nil)
	var recs []*kgo.Record
	for i := range 6 {
		recs = append(recs, &kgo.Record{Topic: "wide", Partition: int32(i % 3), Value: fmt.Appendf(nil, "w%d", i)})
	}
	produceTo(t, addr, recs...)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdout, stderr := newSyncBuffer(), newSyncBuffer()
	code := make(chan int, 1)
	go func() { code <- run(ctx, []string{"consume", "wide", "--progress", "--brokers", addr}, stdout, stderr) }()
	stdout.await(t, "six records", func(s string) bool { return strings.Count(s, "\n") == 6 })
	stderr.await(t, "a progress report", func(s string) bool { return strings.Contains(s, "consumed 6 records\n") })
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit status %d after cancel; stderr:\n%s", c, stderr.String())
		}
	case <-time.After(cliTimeout):
		t.Fatal("consume did not return after its context ended")
	}
	for i := range 6 {
		if !strings.Contains(stdout.String(), fmt.Sprintf("w%d\n", i)) {
			t.Errorf("record w%d not printed:\n%s", i, stdout.String())
		}
	}
	if !strings.HasSuffix(stderr.String(), "consumed 6 records\n") {
		t.Errorf("stderr does not end with the final count:\n%s", stderr.String())
	}
}

// jsonLines decodes one JSON value per line.
func jsonLines[T any](t *testing.T, s string) []T {
	t.Helper()
	var out []T
	for line := range strings.Lines(s) {
		var v T
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, v)
	}
	return out
}
