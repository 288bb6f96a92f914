package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/processor"
)

// deadLetterTopic is where internal/picky sends failed records under the
// dead-letter policy.
const deadLetterTopic = group + "-dead-letter"

// seqHeader numbers the input records of the bad-input scenario, so that a
// dead letter can be matched with the record it came from; it also checks
// that a dead letter keeps the original's headers.
const seqHeader = "e2e-seq"

// The two ways a record fails in internal/picky, and what its error says.
var (
	// undecodable is a value that is not 8 bytes: the int64 codec fails
	// before the handler runs.
	undecodable = badKind{name: "undecodable", reason: processor.ErrDecode.Error() + " value"}
	// refused is a negative value: the handler returns an error.
	refused = badKind{name: "refused", reason: "negative value refused"}
)

type badKind struct{ name, reason string }

func (k badKind) value(rng *rand.Rand) []byte {
	if k == undecodable {
		return []byte("not an int64")
	}
	return binary.BigEndian.AppendUint64(nil, uint64(-1-rng.Int64N(1<<62)))
}

// badRecord is a failing record of the input, as acknowledged.
type badRecord struct {
	kind       badKind
	key, value []byte
	seq        string
	partition  int32
	offset     int64
	acked      bool
}

// TestBadInput is scenario 5 of issue 5: internal/picky, in a process of
// its own, reads records whose value cannot be decoded and records its
// handler refuses, under each policy of its group:
//
//   - stop: the instance exits non-zero with an error naming the record's
//     topic, partition and offset and why it failed; the group's committed
//     offset of that partition is the record's own, so nothing past it is
//     committed, and a restarted instance stops on the same record again.
//   - skip: the instance goes on; it reports exactly as many records
//     skipped as were bad, and every good record is counted, exactly once.
//   - dead-letter: likewise, and each bad record is in the dead-letter
//     topic once, with its key, value and headers, plus headers naming the
//     group, the reason, and the original topic, partition and offset.
//
// No instance is killed, so the counts are exact.
func TestBadInput(t *testing.T) {
	sz := scenarioSize(size{records: 20_000, keys: 2_000}, size{records: 5_000, keys: 500})
	const bad = 100 // of each kind
	for _, kind := range []badKind{undecodable, refused} {
		t.Run("stop/"+kind.name, func(t *testing.T) { testStopPolicy(t, kind, sz) })
	}
	for _, policy := range []string{"skip", "dead-letter"} {
		t.Run(policy, func(t *testing.T) { testGoOnPolicy(t, policy, sz, bad) })
	}
}

// startPicky runs an instance of internal/picky in the harness's group on
// its input, with its state in dir.
func startPicky(t *testing.T, id, addr, dir, policy string) *process {
	t.Helper()
	return startProcess(t, id, bin.picky, "-id", id, "-brokers", addr, "-dir", dir, "-group", group,
		"-input", inputTopic, "-partitions", strconv.Itoa(partitions), "-policy", policy, "-dead-letter", deadLetterTopic)
}

func testStopPolicy(t *testing.T, kind badKind, sz size) {
	rng := newRand(t)
	_, addr := startBroker(t, t.TempDir(), "127.0.0.1:0")
	c := connect(t, addr)
	dir := filepath.Join(t.TempDir(), "picky")
	p := c.watch(startPicky(t, "picky", addr, dir, "stop"))

	// Good records first, all committed: the bad one's partition is then
	// committed up to it, and it must stay there.
	c.produceMixed(rng, sz.records/2, sz.keys, nil)
	c.flush(time.Minute)
	c.awaitCommitted(-1, 2*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := c.cl.ProduceSync(ctx, &kgo.Record{Key: []byte("key-bad"), Value: kind.value(rng)})
	r, err := res.First()
	if err != nil {
		t.Fatalf("produce the %s record: %v", kind.name, err)
	}
	// More good records behind it, in its partition and the others.
	c.produceMixed(rng, sz.records/2, sz.keys, nil)
	c.flush(time.Minute)

	checkStopped(t, p, r, kind)
	c.checkCommittedAt(r)
	// Restarted, the instance meets the record again, so it was neither
	// skipped nor committed past.
	p = startPicky(t, "picky.1", addr, dir, "stop")
	checkStopped(t, p, r, kind)
	c.checkCommittedAt(r)
}

var pickyFailedRE = regexp.MustCompile(`msg="picky failed" .*topic \\"` + regexp.QuoteMeta(inputTopic) + `\\" partition (\d+) offset (\d+): (.*)`)

// checkStopped fails the test unless p exits non-zero by itself, logging
// an error that names r's topic, partition and offset, and kind's reason.
func checkStopped(t *testing.T, p *process, r *kgo.Record, kind badKind) {
	t.Helper()
	err := p.awaitEnd(time.Minute)
	if err == nil {
		t.Fatalf("%s exited with status 0 after a %s record under the stop policy, want a failure", p.name, kind.name)
	}
	m, _ := p.find(pickyFailedRE, 0)
	if m == nil {
		t.Fatalf("%s exited (%v) without logging an error that names a record of %s", p.name, err, inputTopic)
	}
	if m[1] != strconv.Itoa(int(r.Partition)) || m[2] != strconv.FormatInt(r.Offset, 10) {
		t.Errorf("%s stopped on %s partition %s offset %s, want partition %d offset %d, the %s record", p.name, inputTopic, m[1], m[2], r.Partition, r.Offset, kind.name)
	}
	if !strings.Contains(m[3], kind.reason) {
		t.Errorf("%s's error says %q, want it to say %q", p.name, m[3], kind.reason)
	}
}

// checkCommittedAt fails the test unless the group's committed offset of
// r's partition is r's offset: everything before it, nothing from it on.
func (c *cluster) checkCommittedAt(r *kgo.Record) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offs, err := c.adm.FetchOffsets(ctx, group)
	if err != nil {
		c.t.Fatalf("committed offsets of group %s: %v", group, err)
	}
	o, ok := offs.Lookup(inputTopic, r.Partition)
	switch {
	case !ok:
		c.t.Errorf("group %s has no committed offset for %s-%d, want %d", group, inputTopic, r.Partition, r.Offset)
	case o.Err != nil:
		c.t.Errorf("committed offset of group %s for %s-%d: %v", group, inputTopic, r.Partition, o.Err)
	case o.At != r.Offset:
		c.t.Errorf("group %s committed offset %d of %s-%d, want %d: the offset of the record that stopped it", group, o.At, inputTopic, r.Partition, r.Offset)
	}
}

func testGoOnPolicy(t *testing.T, policy string, sz size, bad int) {
	rng := newRand(t)
	_, addr := startBroker(t, t.TempDir(), "127.0.0.1:0")
	c := connect(t, addr)
	p := c.watch(startPicky(t, "picky", addr, filepath.Join(t.TempDir(), "picky"), policy))

	var bads []*badRecord
	for range bad {
		bads = append(bads, &badRecord{kind: undecodable}, &badRecord{kind: refused})
	}
	c.produceMixed(rng, sz.records, sz.keys, bads)
	c.flush(time.Minute)
	c.awaitCommitted(-1, 2*time.Minute)
	st := stopInstance(p)
	good := int64(sz.records)
	want := instanceStats{restored: st.restored, processed: good}
	if policy == "skip" {
		want.skipped = int64(len(bads))
	} else {
		want.deadLettered = int64(len(bads))
	}
	if st != want {
		t.Errorf("picky reported %d processed, %d skipped and %d dead-lettered records, want %d, %d and %d: %d good records, %d bad",
			st.processed, st.skipped, st.deadLettered, want.processed, want.skipped, want.deadLettered, good, len(bads))
	}
	c.checkExact(c.readTable(addr), "nothing was killed")
	if policy == "dead-letter" {
		c.checkDeadLetters(addr, bads)
	}
}

// produceMixed queues good records with keys drawn uniformly from keys keys
// and non-negative int64 values, counted in the true counts, and bads among
// them at random places, not counted. Every record has a seqHeader; each
// bad record's key, value, seq, partition and offset are set once it is
// acknowledged. It returns without waiting for the acks.
func (c *cluster) produceMixed(rng *rand.Rand, good, keys int, bads []*badRecord) {
	total := good + len(bads)
	at := map[int]*badRecord{}
	for i, pos := range rng.Perm(total)[:len(bads)] {
		at[pos] = bads[i]
	}
	for i := range total {
		seq := strconv.Itoa(i)
		r := &kgo.Record{Key: fmt.Appendf(nil, "key-%06d", rng.IntN(keys)), Headers: []kgo.RecordHeader{{Key: seqHeader, Value: []byte(seq)}}}
		b := at[i]
		if b == nil {
			r.Value = binary.BigEndian.AppendUint64(nil, uint64(rng.Int64()))
			c.send(r, true, nil)
			continue
		}
		r.Value = b.kind.value(rng)
		b.key, b.value, b.seq = r.Key, r.Value, seq
		// Read after a flush, which returns once every callback has run.
		c.send(r, false, func(r *kgo.Record) {
			b.partition, b.offset, b.acked = r.Partition, r.Offset, true
		})
	}
}

// checkDeadLetters fails the test unless the dead-letter topic holds each
// of bads once, unchanged but for the runnel.* headers, which must describe
// where the record came from and why it failed.
func (c *cluster) checkDeadLetters(addr string, bads []*badRecord) {
	c.t.Helper()
	bySeq := map[string]*badRecord{}
	for _, b := range bads {
		if !b.acked {
			c.t.Fatalf("bad record %s was not acknowledged", b.seq)
		}
		bySeq[b.seq] = b
	}
	wrong := 0
	report := func(format string, args ...any) {
		wrong++
		if wrong <= 20 {
			c.t.Errorf(format, args...)
		}
	}
	seen := map[string]bool{}
	letters := c.readAll(addr, deadLetterTopic)
	for _, r := range letters {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		b := bySeq[h[seqHeader]]
		at := fmt.Sprintf("%s-%d offset %d", deadLetterTopic, r.Partition, r.Offset)
		if b == nil {
			report("%s: a dead letter of no bad record (%s=%q, key %q)", at, seqHeader, h[seqHeader], r.Key)
			continue
		}
		if seen[b.seq] {
			report("%s: bad record %s (%s-%d offset %d) dead-lettered twice", at, b.seq, inputTopic, b.partition, b.offset)
		}
		seen[b.seq] = true
		if string(r.Key) != string(b.key) || string(r.Value) != string(b.value) {
			report("%s: key %q value %x, want the original's, key %q value %x", at, r.Key, r.Value, b.key, b.value)
		}
		for k, want := range map[string]string{
			processor.HeaderGroup:     group,
			processor.HeaderTopic:     inputTopic,
			processor.HeaderPartition: strconv.Itoa(int(b.partition)),
			processor.HeaderOffset:    strconv.FormatInt(b.offset, 10),
		} {
			if h[k] != want {
				report("%s: header %s = %q, want %q (the %s record %s-%d offset %d)", at, k, h[k], want, b.kind.name, inputTopic, b.partition, b.offset)
			}
		}
		if !strings.Contains(h[processor.HeaderError], b.kind.reason) {
			report("%s: header %s = %q, want the reason, %q", at, processor.HeaderError, h[processor.HeaderError], b.kind.reason)
		}
	}
	if wrong > 20 {
		c.t.Errorf("... and %d more problems with the dead letters", wrong-20)
	}
	if len(seen) != len(bads) {
		c.t.Errorf("%s holds %d records, %d of them for distinct bad records; want each of the %d bad records once", deadLetterTopic, len(letters), len(seen), len(bads))
	}
}
