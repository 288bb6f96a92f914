package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/broker"
)

// These tests drive the broker with clients that share no code with it:
// librdkafka (through kcat and confluent-kafka) and kafka-python. .ci/run
// installs them from Debian; where one is missing the test says so and
// skips.

func startExternal(t *testing.T) *broker.Broker {
	t.Helper()
	b, err := broker.Start(context.Background(), broker.Config{Addr: "127.0.0.1:0", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func needKcat(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (apt-get install kcat); .ci/run installs it")
	}
	return path
}

func run(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), extTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\nstderr:\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func TestKcatProduceConsumeMetadata(t *testing.T) {
	kcat := needKcat(t)
	b := startExternal(t)
	var in strings.Builder
	var want []string
	for i := range 100 {
		fmt.Fprintf(&in, "key-%d:value-%d\n", i, i)
		want = append(want, fmt.Sprintf("key-%d=value-%d@%d", i, i, i))
	}
	run(t, in.String(), kcat, "-b", b.Addr(), "-t", "kcat-topic", "-P", "-K:", "-X", "acks=all")
	out := run(t, "", kcat, "-b", b.Addr(), "-t", "kcat-topic", "-C", "-e", "-o", "beginning", "-f", "%k=%s@%o\n")
	got := strings.Split(strings.TrimSpace(out), "\n")
	if !slices.Equal(got, want) {
		t.Fatalf("kcat consumed %d records:\n%s\nwant the 100 produced, in order", len(got), out)
	}

	var md struct {
		Brokers []struct {
			ID   int32  `json:"id"`
			Name string `json:"name"`
		} `json:"brokers"`
		Topics []struct {
			Topic      string `json:"topic"`
			Partitions []struct {
				Partition int32 `json:"partition"`
				Leader    int32 `json:"leader"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	if err := json.Unmarshal([]byte(run(t, "", kcat, "-b", b.Addr(), "-L", "-J")), &md); err != nil {
		t.Fatal(err)
	}
	if len(md.Brokers) != 1 || md.Brokers[0].Name != b.Addr() {
		t.Fatalf("kcat metadata brokers: %+v, want this broker at %s", md.Brokers, b.Addr())
	}
	found := false
	for _, tp := range md.Topics {
		if tp.Topic == "kcat-topic" {
			found = len(tp.Partitions) == 1 && tp.Partitions[0].Leader == md.Brokers[0].ID
		}
	}
	if !found {
		t.Fatalf("kcat metadata does not show kcat-topic with one partition led by this broker: %+v", md.Topics)
	}
}

func TestKcatGroupConsumer(t *testing.T) {
	kcat := needKcat(t)
	b := startExternal(t)
	if _, err := b.Log().CreateTopic("grouped", 3, nil); err != nil {
		t.Fatal(err)
	}
	var want []string
	for p := range 3 {
		var in strings.Builder
		for i := range 10 {
			fmt.Fprintf(&in, "p%d-%d\n", p, i)
			want = append(want, fmt.Sprintf("p%d-%d", p, i))
		}
		run(t, in.String(), kcat, "-b", b.Addr(), "-t", "grouped", "-P", "-p", fmt.Sprint(p))
	}
	// A balanced (group) consumer: joins, gets all three partitions, reads
	// to the end of each, commits and leaves.
	out := run(t, "", kcat, "-b", b.Addr(), "-G", "kcat-group", "-X", "auto.offset.reset=earliest", "-e", "-f", "%s\n", "grouped")
	got := strings.Fields(out)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("kcat group consumer read %v, want %v", got, want)
	}
	// A second run of the same group resumes from the committed offsets and
	// finds nothing new.
	run(t, "p0-new\n", kcat, "-b", b.Addr(), "-t", "grouped", "-P", "-p", "0")
	out = run(t, "", kcat, "-b", b.Addr(), "-G", "kcat-group", "-X", "auto.offset.reset=earliest", "-e", "-f", "%s\n", "grouped")
	if got := strings.Fields(out); !slices.Equal(got, []string{"p0-new"}) {
		t.Fatalf("second group run read %v, want only the new record (resuming from committed offsets)", got)
	}
}

const pythonClients = `
import sys
addr, lib, topic, group, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
got = []
if lib == "kafka-python":
    from kafka import KafkaProducer, KafkaConsumer
    p = KafkaProducer(bootstrap_servers=addr, acks="all")
    for i in range(n):
        p.send(topic, key=b"k%d" % i, value=b"v%d" % i)
    p.flush()
    p.close()
    c = KafkaConsumer(topic, bootstrap_servers=addr, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=20000)
    for m in c:
        got.append(m.value.decode())
        if len(got) == n:
            break
    c.commit()
    c.close()
else:
    from confluent_kafka import Producer, Consumer
    p = Producer({"bootstrap.servers": addr, "acks": "all", "enable.idempotence": True})
    for i in range(n):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i)
    if p.flush(20) != 0:
        sys.exit("produce did not finish")
    c = Consumer({"bootstrap.servers": addr, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    import time
    deadline = time.time() + 20
    while len(got) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            sys.exit("consume: %s" % m.error())
        got.append(m.value().decode())
    c.commit(asynchronous=False)
    c.close()
print("\n".join(got))
`

func TestPythonClients(t *testing.T) {
	python := "/usr/bin/python3"
	for _, lib := range []string{"kafka-python", "confluent-kafka"} {
		t.Run(lib, func(t *testing.T) {
			mod := map[string]string{"kafka-python": "kafka", "confluent-kafka": "confluent_kafka"}[lib]
			if err := exec.Command(python, "-c", "import "+mod).Run(); err != nil {
				t.Skipf("%s is not installed for %s (apt-get install python3-%s); .ci/run installs it", lib, python, map[string]string{"kafka-python": "kafka", "confluent-kafka": "confluent-kafka"}[lib])
			}
			b := startExternal(t)
			const n = 50
			out := run(t, "", python, "-c", pythonClients, b.Addr(), lib, "py-topic", "py-group", fmt.Sprint(n))
			got := strings.Fields(out)
			if len(got) != n {
				t.Fatalf("%s consumed %d records, want %d:\n%s", lib, len(got), n, out)
			}
			for i, v := range got {
				if v != fmt.Sprintf("v%d", i) {
					t.Fatalf("%s record %d is %q, want v%d", lib, i, v, i)
				}
			}
			// The group's commit is visible to any client.
			offs := extCommitted(t, b.Addr(), "py-group", "py-topic")
			if offs[0] != n {
				t.Fatalf("%s group committed %v, want offset %d for partition 0", lib, offs, n)
			}
		})
	}
}

const extTimeout = 60 * time.Second

// extCommitted reads a group's committed offsets per partition with kadm.
func extCommitted(t *testing.T, addr, group, topic string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), extTimeout)
	defer cancel()
	resp, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for p, o := range resp[topic] {
		out[p] = o.At
	}
	return out
}

// TestKcatOffsetOutOfRange reads from an offset past the end with
// auto.offset.reset=earliest: librdkafka gets OFFSET_OUT_OF_RANGE, resets
// and reads every record. The error's record set must be empty, not null:
// librdkafka 2.0 takes a null one for a parse error and retries it without
// end instead of resetting.
func TestKcatOffsetOutOfRange(t *testing.T) {
	kcat := needKcat(t)
	b := startExternal(t)
	var in strings.Builder
	var want []string
	for i := range 10 {
		fmt.Fprintf(&in, "key-%d:value-%d\n", i, i)
		want = append(want, fmt.Sprintf("key-%d=value-%d@%d", i, i, i))
	}
	run(t, in.String(), kcat, "-b", b.Addr(), "-t", "reset-topic", "-P", "-K:", "-X", "acks=all")
	out := run(t, "", kcat, "-b", b.Addr(), "-t", "reset-topic", "-p", "0", "-C", "-o", "1000", "-c", "10",
		"-X", "auto.offset.reset=earliest", "-f", "%k=%s@%o\n")
	got := strings.Split(strings.TrimSpace(out), "\n")
	if !slices.Equal(got, want) {
		t.Fatalf("kcat consumed %d records after the reset:\n%s\nwant the 10 produced, in order", len(got), out)
	}
}
