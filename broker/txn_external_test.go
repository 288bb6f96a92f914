package broker_test

import (
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// librdkafka's transactional producer and read_committed consumer, through
// confluent-kafka-python: the client most users of transactions outside
// the JVM have.

func needConfluent(t *testing.T) string {
	t.Helper()
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import confluent_kafka").Run(); err != nil {
		t.Skipf("confluent-kafka is not installed for %s (apt-get install python3-confluent-kafka); .ci/run installs it", python)
	}
	return python
}

// pyTxnProduceAndRead commits 1000 records (10 transactions of 100) and
// aborts 500 (5 of 100), interleaved, then reads the topic to its end at
// read_committed and at read_uncommitted and prints what each saw.
const pyTxnProduceAndRead = `
import sys, time
from confluent_kafka import Producer, Consumer, TopicPartition, KafkaException
addr, topic = sys.argv[1], sys.argv[2]
p = Producer({"bootstrap.servers": addr, "transactional.id": "py-txn", "transaction.timeout.ms": 30000})
p.init_transactions(30)
for t in range(15):
    p.begin_transaction()
    for i in range(100):
        p.produce(topic, value=b"t%02d-%03d" % (t, i), partition=i % 2)
    # Written to the log before the abort: librdkafka would otherwise
    # purge the queued records and the abort would have nothing to hide.
    if p.flush(30) != 0:
        sys.exit("produce did not finish")
    if t % 3 == 2:
        p.abort_transaction(30)
    else:
        p.commit_transaction(30)

def read(isolation):
    c = Consumer({"bootstrap.servers": addr, "group.id": "py-read-" + isolation, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "isolation.level": isolation, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
    got, eof, deadline = [], set(), time.time() + 30
    while len(eof) < 2 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof.add(m.partition())
                continue
            sys.exit("consume: %s" % m.error())
        got.append(m.value().decode())
    c.close()
    if len(eof) < 2:
        sys.exit("%s: did not reach the end of both partitions" % isolation)
    return got

print("committed", " ".join(read("read_committed")))
print("uncommitted", " ".join(read("read_uncommitted")))
`

func TestConfluentTransactionsCommitAndAbort(t *testing.T) {
	python := needConfluent(t)
	b := startExternal(t)
	if _, err := b.Log().CreateTopic("py-txn-topic", 2, nil); err != nil {
		t.Fatal(err)
	}
	out := run(t, "", python, "-c", pyTxnProduceAndRead, b.Addr(), "py-txn-topic")
	var committed, all []string
	for tx := range 15 {
		for i := range 100 {
			v := fmt.Sprintf("t%02d-%03d", tx, i)
			all = append(all, v)
			if tx%3 != 2 {
				committed = append(committed, v)
			}
		}
	}
	seen := map[string][]string{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) > 0 {
			seen[f[0]] = f[1:]
		}
	}
	for _, c := range []struct {
		level string
		want  []string
	}{{"committed", committed}, {"uncommitted", all}} {
		got := slices.Clone(seen[c.level])
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("read_%s saw %d records, want %d", c.level, len(got), len(c.want))
		}
	}
}

// pyCopy copies a topic with librdkafka's consume-transform-produce loop:
// each batch read is produced to the output and its offsets sent with
// send_offsets_to_transaction, all in one transaction. Every third
// transaction is aborted once and its batch done again from the committed
// offsets, as an application does after a failure.
const pyCopy = `
import sys, time
from confluent_kafka import Producer, Consumer, TopicPartition
addr, src, dst, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = Consumer({"bootstrap.servers": addr, "group.id": "py-copier", "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "isolation.level": "read_committed"})
p = Producer({"bootstrap.servers": addr, "transactional.id": "py-copier", "transaction.timeout.ms": 30000})
p.init_transactions(30)
c.subscribe([src])
copied, rounds, deadline = 0, 0, time.time() + 60
while copied < n and time.time() < deadline:
    msgs = c.consume(50, 1.0)
    msgs = [m for m in msgs if not m.error()]
    if not msgs:
        continue
    rounds += 1
    p.begin_transaction()
    for m in msgs:
        p.produce(dst, value=b"copy-" + m.value(), partition=m.partition())
    if p.flush(30) != 0:
        sys.exit("produce did not finish")
    p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
    if rounds % 3 == 0:
        p.abort_transaction(30)
        # Rewind to what the group committed and do the batch again.
        committed = c.committed(c.assignment(), 30)
        for tp in committed:
            c.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
        continue
    p.commit_transaction(30)
    copied += len(msgs)
c.close()
print(copied)
`

func TestConfluentConsumeTransformProduceCopiesOnce(t *testing.T) {
	python := needConfluent(t)
	b := startExternal(t)
	const n = 600
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "%d\n", i)
	}
	kcat := needKcat(t)
	run(t, in.String(), kcat, "-b", b.Addr(), "-t", "py-src", "-P", "-X", "acks=all")
	out := strings.TrimSpace(run(t, "", python, "-c", pyCopy, b.Addr(), "py-src", "py-dst", strconv.Itoa(n)))
	if out != strconv.Itoa(n) {
		t.Fatalf("the copier reports %s records copied, want %d", out, n)
	}
	got := strings.Fields(run(t, "", kcat, "-b", b.Addr(), "-t", "py-dst", "-C", "-e", "-o", "beginning",
		"-X", "isolation.level=read_committed", "-f", "%s\n"))
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("copy-%d", i))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("read_committed output has %d records, want each of the %d inputs copied once", len(got), n)
	}
	if offs := extCommitted(t, b.Addr(), "py-copier", "py-src"); offs[0] != n {
		t.Fatalf("the copier's group committed %v, want offset %d for partition 0", offs, n)
	}
}
