package broker

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// These tests run franz-go's transactional producer and consumers against
// the broker: what they see must be Kafka's contract for transactions,
// checked against the right answer computed beside them.

const sentinel = "end-of-test"

// txnClient returns a transactional franz-go client of b.
func txnClient(t *testing.T, b *Broker, id string, opts ...kgo.Opt) *kgo.Client {
	return newKgo(t, b, append([]kgo.Opt{kgo.TransactionalID(id), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.TransactionTimeout(30 * time.Second)}, opts...)...)
}

// produceTxn produces recs in one transaction and commits or aborts it.
func produceTxn(t *testing.T, cl *kgo.Client, commit bool, recs ...*kgo.Record) {
	t.Helper()
	ctx := ctxFor(t)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatalf("begin transaction: %v", err)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce in transaction: %v", err)
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatalf("end transaction (commit %v): %v", commit, err)
	}
}

// sealTopic commits one sentinel record into each of topic's partitions,
// so that a reader knows it has seen everything before it.
func sealTopic(t *testing.T, b *Broker, topic string, partitions int32) {
	t.Helper()
	cl := txnClient(t, b, "sealer-"+topic)
	var recs []*kgo.Record
	for p := range partitions {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(sentinel)})
	}
	produceTxn(t, cl, true, recs...)
}

// readToSentinel reads every partition of a sealed topic from the start up
// to its sentinel, at the isolation level asked for, and returns the
// values before the sentinels.
func readToSentinel(t *testing.T, b *Broker, topic string, partitions int32, committed bool) []string {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	offsets := map[int32]kgo.Offset{}
	for p := range partitions {
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cl := newKgo(t, b, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}), kgo.FetchIsolationLevel(iso))
	ctx := ctxFor(t)
	var got []string
	sealed := map[int32]bool{}
	for len(sealed) < int(partitions) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %s (read_committed %v): %d values and %d of %d sentinels so far: %v", topic, committed, len(got), len(sealed), partitions, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			switch {
			case string(r.Value) == sentinel:
				sealed[r.Partition] = true
			case sealed[r.Partition]:
				t.Errorf("%s-%d: %q after the sentinel", topic, r.Partition, r.Value)
			default:
				got = append(got, string(r.Value))
			}
		})
	}
	slices.Sort(got)
	return got
}

// TestKgoTransactionsCommitAndAbort commits 1000 records and aborts 500,
// interleaved, over three partitions: read_committed sees exactly the
// 1000, read_uncommitted all 1500.
func TestKgoTransactionsCommitAndAbort(t *testing.T) {
	b := startBroker(t, "")
	const topic, parts = "txn-basic", 3
	createTopic(t, b, topic, parts)
	cl := txnClient(t, b, "basic")
	var committed, all []string
	for txn := range 30 {
		commit := txn%3 != 2 // 20 committed, 10 aborted
		var recs []*kgo.Record
		for i := range 50 {
			v := fmt.Sprintf("t%02d-r%02d", txn, i)
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32((txn + i) % parts), Value: []byte(v)})
			all = append(all, v)
			if commit {
				committed = append(committed, v)
			}
		}
		produceTxn(t, cl, commit, recs...)
	}
	sealTopic(t, b, topic, parts)
	slices.Sort(committed)
	slices.Sort(all)
	if got := readToSentinel(t, b, topic, parts, true); !slices.Equal(got, committed) {
		t.Errorf("read_committed saw %d records, want the %d committed ones (diff: %s)", len(got), len(committed), diff(got, committed))
	}
	if got := readToSentinel(t, b, topic, parts, false); !slices.Equal(got, all) {
		t.Errorf("read_uncommitted saw %d records, want all %d (diff: %s)", len(got), len(all), diff(got, all))
	}
}

// TestKgoReadCommittedStopsAtAnOpenTransaction leaves a transaction open
// and checks that a read_committed consumer sees nothing past its start,
// a read_uncommitted one everything, and that committing releases it.
func TestKgoReadCommittedStopsAtAnOpenTransaction(t *testing.T) {
	b := startBroker(t, "")
	const topic = "txn-open"
	createTopic(t, b, topic, 1)
	plain := newKgo(t, b, kgo.DefaultProduceTopic(topic))
	ctx := ctxFor(t)
	if err := plain.ProduceSync(ctx, kgo.StringRecord("before")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl := txnClient(t, b, "open")
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("inside")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := plain.ProduceSync(ctx, kgo.StringRecord("after")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p, _ := b.Log().Partition(topic, 0)
	if lso, hw := p.LastStableOffset(), p.HighWatermark(); lso != 1 || hw != 3 {
		t.Fatalf("with a transaction open at offset 1: last stable offset %d, high watermark %d; want 1 and 3", lso, hw)
	}
	st := b.Status()
	if len(st.Transactions) != 1 {
		t.Fatalf("Status lists open transactions %+v, want the one", st.Transactions)
	}
	if x := st.Transactions[0]; x.TransactionalID != "open" || x.State != "Ongoing" || x.StartedMs <= 0 ||
		len(x.Partitions) != 1 || x.Partitions[0].Topic != topic || !slices.Equal(x.Partitions[0].Partitions, []int32{0}) {
		t.Errorf("Status lists the open transaction as %+v", x)
	}
	for _, ts := range st.Topics {
		if ts.Name == topic && (ts.Partitions[0].LastStableOffset != 1 || ts.Partitions[0].HighWatermark != 3) {
			t.Errorf("Status shows %s-0 with last stable offset %d and high watermark %d, want 1 and 3", topic, ts.Partitions[0].LastStableOffset, ts.Partitions[0].HighWatermark)
		}
	}
	adm := newKadm(t, b)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := ends.Lookup(topic, 0); o.Offset != 1 {
		t.Errorf("ListOffsets at read_committed answered %d, want the last stable offset 1", o.Offset)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if lso, hw := p.LastStableOffset(), p.HighWatermark(); lso != hw || hw != 4 {
		t.Fatalf("after the commit: last stable offset %d, high watermark %d; want both 4", lso, hw)
	}
	if st := b.Status(); len(st.Transactions) != 0 {
		t.Errorf("after the commit Status still lists open transactions %+v", st.Transactions)
	}
	sealTopic(t, b, topic, 1)
	if got, want := readToSentinel(t, b, topic, 1, true), []string{"after", "before", "inside"}; !slices.Equal(got, want) {
		t.Errorf("read_committed after the commit: %q, want %q", got, want)
	}
}

// TestKgoGroupTransactSessionChain runs a two-stage exactly-once ETL with
// franz-go's GroupTransactSession: in -> (x2) -> mid -> (+1) -> out, two
// members per stage, aborting every fifth transaction of the first stage
// on purpose. The committed output is exactly f(input), once each.
func TestKgoGroupTransactSessionChain(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.GroupInitialRebalanceDelay = -1 })
	const parts, n = 3, 600
	for _, tp := range []string{"etl-in", "etl-mid", "etl-out"} {
		createTopic(t, b, tp, parts)
	}
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	stage := func(name, from, to string, member int, f func(int) int, abortEvery int) {
		defer wg.Done()
		s, err := kgo.NewGroupTransactSession(
			kgo.SeedBrokers(b.Addr()),
			kgo.TransactionalID(fmt.Sprintf("%s-%d", name, member)),
			kgo.TransactionTimeout(20*time.Second),
			kgo.ConsumerGroup(name), kgo.ConsumeTopics(from),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.SessionTimeout(6*time.Second),
		)
		if err != nil {
			errs <- err
			return
		}
		defer s.Close()
		for round := 1; ctx.Err() == nil; round++ {
			fs := s.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fs.EachError(func(topic string, p int32, err error) { errs <- fmt.Errorf("%s fetch %s-%d: %w", name, topic, p, err) })
			if fs.NumRecords() == 0 {
				continue
			}
			if err := s.Begin(); err != nil {
				errs <- fmt.Errorf("%s begin: %w", name, err)
				return
			}
			fs.EachRecord(func(r *kgo.Record) {
				v, err := strconv.Atoi(string(r.Value))
				if err != nil {
					errs <- fmt.Errorf("%s: bad value %q", name, r.Value)
					return
				}
				s.Produce(ctx, &kgo.Record{Topic: to, Partition: r.Partition, Value: []byte(strconv.Itoa(f(v)))}, nil)
			})
			commit := abortEvery == 0 || round%abortEvery != 0
			if _, err := s.End(ctx, kgo.TransactionEndTry(commit)); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s end: %w", name, err)
				return
			}
		}
	}
	for m := range 2 {
		wg.Add(2)
		go stage("double", "etl-in", "etl-mid", m, func(v int) int { return 2 * v }, 5)
		go stage("increment", "etl-mid", "etl-out", m, func(v int) int { return v + 1 }, 0)
	}

	in := newKgo(t, b)
	var want []string
	for i := range n {
		if err := in.ProduceSync(ctx, &kgo.Record{Topic: "etl-in", Partition: int32(i % parts), Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		want = append(want, strconv.Itoa(2*i+1))
	}
	slices.Sort(want)

	// Wait for n committed outputs, then stop the stages and check that no
	// more appear and that none is missing or twice there.
	out := newKgo(t, b, kgo.ConsumeTopics("etl-out"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	var got []string
	for len(got) < n {
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
		fs := out.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d outputs: %v", len(got), n, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sealTopic(t, b, "etl-out", parts)
	all := readToSentinel(t, b, "etl-out", parts, true)
	if !slices.Equal(all, want) {
		t.Fatalf("committed output has %d records, want %d: %s", len(all), len(want), diff(all, want))
	}
}

// diff describes how two sorted lists differ, briefly.
func diff(got, want []string) string {
	count := map[string]int{}
	for _, s := range got {
		count[s]++
	}
	for _, s := range want {
		count[s]--
	}
	var extra, missing []string
	for s, c := range count {
		for ; c > 0; c-- {
			extra = append(extra, s)
		}
		for ; c < 0; c++ {
			missing = append(missing, s)
		}
	}
	slices.Sort(extra)
	slices.Sort(missing)
	cut := func(l []string) string {
		if len(l) > 10 {
			return strings.Join(l[:10], ",") + fmt.Sprintf(",... (%d)", len(l))
		}
		return strings.Join(l, ",")
	}
	return fmt.Sprintf("extra [%s], missing [%s]", cut(extra), cut(missing))
}

// TestSaramaTransactionalProducer commits and aborts transactions with
// sarama's transactional producer, at the versions it negotiates with the
// broker, and reads the result back with franz-go at read_committed.
func TestSaramaTransactionalProducer(t *testing.T) {
	b := startBroker(t, "")
	const topic = "sarama-txn"
	createTopic(t, b, topic, 2)
	cfg := saramaConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Idempotent = true
	cfg.Producer.Transaction.ID = "sarama-txn"
	cfg.Net.MaxOpenRequests = 1
	producer, err := sarama.NewSyncProducer([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatalf("new transactional producer: %v", err)
	}
	defer producer.Close()
	var want []string
	for tx := range 6 {
		if err := producer.BeginTxn(); err != nil {
			t.Fatalf("begin transaction %d: %v", tx, err)
		}
		for i := range 20 {
			v := fmt.Sprintf("s%d-%02d", tx, i)
			if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: int32(i % 2), Value: sarama.StringEncoder(v)}); err != nil {
				t.Fatalf("send in transaction %d: %v", tx, err)
			}
			if tx%2 == 0 {
				want = append(want, v)
			}
		}
		end := producer.CommitTxn
		if tx%2 == 1 {
			end = producer.AbortTxn
		}
		if err := end(); err != nil {
			t.Fatalf("end transaction %d: %v", tx, err)
		}
	}
	sealTopic(t, b, topic, 2)
	slices.Sort(want)
	if got := readToSentinel(t, b, topic, 2, true); !slices.Equal(got, want) {
		t.Fatalf("read_committed saw %d records, want the %d sarama committed: %s", len(got), len(want), diff(got, want))
	}
}

// TestKgoTransactionTimeoutAndFencing leaves one producer's transaction
// open past its timeout and fences another by starting a second producer
// with its transactional id: the broker aborts both transactions, their
// records never reach read_committed consumers, their producers cannot
// commit, and the metrics count what happened.
func TestKgoTransactionTimeoutAndFencing(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	b := startBroker(t, "", func(c *Config) {
		c.Metrics = reg
		c.hooks.txnAbortInterval = 20 * time.Millisecond
	})
	const topic = "txn-timeout"
	createTopic(t, b, topic, 1)
	ctx := ctxFor(t)

	committed := txnClient(t, b, "committer")
	produceTxn(t, committed, true, &kgo.Record{Topic: topic, Value: []byte("committed")})

	slow := txnClient(t, b, "slow", kgo.TransactionTimeout(time.Second))
	if err := slow.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := slow.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("timed out")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	zombie := txnClient(t, b, "twin")
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := zombie.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("fenced")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A new instance of "twin" fences the first one and aborts its
	// transaction.
	twin := txnClient(t, b, "twin")
	produceTxn(t, twin, true, &kgo.Record{Topic: topic, Value: []byte("twin")})

	for b.txns.Stats().Timeouts == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("the transaction past its 1s timeout was not aborted: %+v", b.txns.Stats())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := slow.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Error("the producer whose transaction timed out committed it")
	}
	if err := zombie.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Error("the fenced producer committed its transaction")
	}

	sealTopic(t, b, topic, 1)
	if got, want := readToSentinel(t, b, topic, 1, true), []string{"committed", "twin"}; !slices.Equal(got, want) {
		t.Errorf("read_committed saw %q, want %q", got, want)
	}
	checkSamples(t, gather(t, reg), map[string]float64{
		// committer, twin and the sealer committed; the slow and the
		// fenced transactions were aborted, one by timeout, one by fencing.
		`runnel_broker_transactions_total{outcome="commit"}`:  3,
		`runnel_broker_transactions_total{outcome="abort"}`:   2,
		`runnel_broker_transactions_total{outcome="timeout"}`: 1,
		`runnel_broker_transactions_total{outcome="fenced"}`:  1,
		`runnel_broker_open_transactions`:                     0,
	})
}
