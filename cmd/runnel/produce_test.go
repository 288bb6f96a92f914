package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestProduce produces lines of a file with keys and headers and reads
// them back with franz-go: values, keys, headers, line endings, and keyed
// records in the partition Kafka's default partitioner picks.
func TestProduce(t *testing.T) {
	addr := startBroker(t)
	b := "--brokers=" + addr
	createTopic(t, addr, "events", 4, nil)

	input := writeFile(t, "user-1:hello\nuser-2:world:with colon\nno separator here\n\nuser-1:again\r\nuser-3:last")
	r := runCLI(t, "produce", "events", "--file", input, "--key-sep", ":", "--header", "source=test", "--header", "n=1", "--progress", b)
	if r.code != 0 {
		t.Fatalf("exit status %d: %s", r.code, r.stderr)
	}
	if want := "produced 6 records to events\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	if want := "produced 6 records\n"; r.stderr[max(0, len(r.stderr)-len(want)):] != want {
		t.Errorf("progress on stderr does not end with %q:\n%s", want, r.stderr)
	}

	type kv struct{ key, value string }
	want := []kv{{"user-1", "hello"}, {"user-2", "world:with colon"}, {"", "no separator here"}, {"", ""}, {"user-1", "again"}, {"user-3", "last"}}
	recs := consumeAll(t, addr, "events", len(want))
	got := map[kv]*kgo.Record{}
	for _, r := range recs {
		got[kv{string(r.Key), string(r.Value)}] = r
	}
	partitioner := kgo.StickyKeyPartitioner(nil).ForTopic("events")
	for _, w := range want {
		r, ok := got[w]
		if !ok {
			t.Errorf("no record with key %q and value %q; got %d records", w.key, w.value, len(recs))
			continue
		}
		if w.key == "" && r.Key != nil {
			t.Errorf("record %q has key %q, want none", w.value, r.Key)
		}
		if w.key != "" {
			if p := partitioner.Partition(&kgo.Record{Key: r.Key}, 4); int(r.Partition) != p {
				t.Errorf("key %q went to partition %d, Kafka's default partitioner says %d", w.key, r.Partition, p)
			}
		}
		if len(r.Headers) != 2 || r.Headers[0].Key != "source" || string(r.Headers[0].Value) != "test" || r.Headers[1].Key != "n" || string(r.Headers[1].Value) != "1" {
			t.Errorf("record %q headers %v, want source=test n=1", w.value, r.Headers)
		}
	}

	// --partition pins every record; --output json reports for scripts.
	createTopic(t, addr, "pinned", 3, nil)
	var sum produceSummary
	decodeJSON(t, mustRun(t, "produce", "pinned", "--partition", "2", "--file", writeFile(t, "a\nb\n"), "--output", "json", b), &sum)
	if sum != (produceSummary{Topic: "pinned", Records: 2}) {
		t.Errorf("JSON summary %+v", sum)
	}
	for _, r := range consumeAll(t, addr, "pinned", 2) {
		if r.Partition != 2 {
			t.Errorf("record %q in partition %d, want 2", r.Value, r.Partition)
		}
	}
	if out := mustRun(t, "produce", "pinned", "--file", writeFile(t, ""), b); out != "produced 0 records to pinned\n" {
		t.Errorf("empty input: %q", out)
	}

	t.Run("errors", func(t *testing.T) {
		wantFailure(t, 1, "runnel produce: topic \"nosuch\" does not exist\n", "produce", "nosuch", "--file", input, b)
		wantFailure(t, 1, `--partition 3: topic "pinned" has 3 partitions`, "produce", "pinned", "--partition", "3", "--file", input, b)
		wantFailure(t, 1, "runnel produce: --file: open ", "produce", "pinned", "--file", filepath.Join(t.TempDir(), "missing"), b)
		wantFailure(t, 2, "runnel produce: want one topic, got 0 arguments", "produce", b)
		wantFailure(t, 2, "is not of the form key=value", "produce", "pinned", "--header", "novalue", b)
	})
}

// writeFile writes s to a new file and returns its path.
func writeFile(t *testing.T, s string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "input")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// consumeAll reads n records of every partition of topic from the start.
func consumeAll(t *testing.T, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(recs), n, topic)
		}
		if err := fs.Err(); err != nil {
			t.Fatalf("read %s: %v", topic, err)
		}
		recs = append(recs, fs.Records()...)
	}
	return recs
}
