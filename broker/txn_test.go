package broker

import (
	"context"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/runnel-io/runnel/broker/storage"
)

// rawTxn drives the transaction APIs with hand-made requests, as a
// misbehaving client would, at the versions before KIP-890 part 2 (Produce
// v11, EndTxn v4, TxnOffsetCommit v4): a partition must be added to a
// transaction before it is written to, and the epoch stays the same from
// one transaction to the next.
type rawTxn struct {
	t  *testing.T
	cl *kgo.Client
}

func newRawTxn(t *testing.T, b *Broker) rawTxn {
	versions := kversion.Stable()
	versions.SetMaxKeyVersion(kmsg.Produce.Int16(), 11)
	versions.SetMaxKeyVersion(kmsg.EndTxn.Int16(), 4)
	versions.SetMaxKeyVersion(kmsg.TxnOffsetCommit.Int16(), 4)
	return rawTxn{t: t, cl: newKgo(t, b, kgo.MaxVersions(versions))}
}

func (r rawTxn) do(req kmsg.Request) kmsg.Response {
	r.t.Helper()
	resp, err := r.cl.Request(ctxFor(r.t), req)
	if err != nil {
		r.t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp
}

func (r rawTxn) initProducer(id string) (int64, int16) {
	r.t.Helper()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionalID, req.TransactionTimeoutMillis = &id, 60_000
	resp := r.do(req).(*kmsg.InitProducerIDResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		r.t.Fatalf("InitProducerId %q: %v", id, err)
	}
	return resp.ProducerID, resp.ProducerEpoch
}

func (r rawTxn) addPartitions(id string, pid int64, epoch int16, topic string, partitions ...int32) map[int32]int16 {
	r.t.Helper()
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.TransactionalID, req.ProducerID, req.ProducerEpoch = id, pid, epoch
	rt := kmsg.NewAddPartitionsToTxnRequestTopic()
	rt.Topic, rt.Partitions = topic, partitions
	req.Topics = append(req.Topics, rt)
	resp := r.do(req).(*kmsg.AddPartitionsToTxnResponse)
	codes := map[int32]int16{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			codes[p.Partition] = p.ErrorCode
		}
	}
	return codes
}

func (r rawTxn) endTxn(id string, pid int64, epoch int16, commit bool) int16 {
	r.t.Helper()
	req := kmsg.NewPtrEndTxnRequest()
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = id, pid, epoch, commit
	return r.do(req).(*kmsg.EndTxnResponse).ErrorCode
}

func (r rawTxn) produce(id string, topic string, partition int32, batch []byte) int16 {
	r.t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.TransactionID, req.Acks, req.TimeoutMillis = &id, -1, 10_000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = partition, batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return r.do(req).(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode
}

// txnBatch is a one-record transactional batch of pid at epoch.
func txnBatch(t *testing.T, pid int64, epoch int16, value string) []byte {
	t.Helper()
	b, err := storage.NewTxnBatch(pid, epoch, 0, storage.Record{Value: []byte(value)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTransactionBadInput sends the transaction requests a buggy or
// hostile client would, each answered with Kafka's error code, and checks
// that a transaction committed before them is untouched.
func TestTransactionBadInput(t *testing.T) {
	b := startBroker(t, "")
	const topic = "txn-bad"
	createTopic(t, b, topic, 2)
	r := newRawTxn(t, b)

	// A good transaction first, committed.
	pid, epoch := r.initProducer("good")
	if codes := r.addPartitions("good", pid, epoch, topic, 0); codes[0] != 0 {
		t.Fatalf("AddPartitionsToTxn: %v", kerr.ErrorForCode(codes[0]))
	}
	if code := r.produce("good", topic, 0, txnBatch(t, pid, epoch, "committed")); code != 0 {
		t.Fatalf("transactional produce: %v", kerr.ErrorForCode(code))
	}
	if code := r.endTxn("good", pid, epoch, true); code != 0 {
		t.Fatalf("EndTxn commit: %v", kerr.ErrorForCode(code))
	}

	check := func(what string, got int16, want ...*kerr.Error) {
		t.Helper()
		if len(want) == 0 && got == 0 {
			return
		}
		for _, w := range want {
			if got == w.Code {
				return
			}
		}
		t.Errorf("%s: got %v, want %v", what, kerr.ErrorForCode(got), want)
	}
	check("EndTxn of an unknown transactional id", r.endTxn("nobody", 12345, 0, true), kerr.InvalidProducerIDMapping)
	check("EndTxn with a wrong producer id", r.endTxn("good", pid+1000, epoch, true), kerr.InvalidProducerIDMapping)
	check("EndTxn with an old epoch", r.endTxn("good", pid, epoch-1, true), kerr.ProducerFenced, kerr.InvalidProducerEpoch)
	check("EndTxn commit of a transaction committed already (a retry)", r.endTxn("good", pid, epoch, true))
	check("EndTxn abort of a transaction committed already", r.endTxn("good", pid, epoch, false), kerr.InvalidTxnState)
	epid, eepoch := r.initProducer("empty")
	check("EndTxn commit of an empty transaction", r.endTxn("empty", epid, eepoch, true), kerr.InvalidTxnState)

	codes := r.addPartitions("good", pid, epoch, "no-such-topic", 0, 1)
	check("AddPartitionsToTxn of an unknown topic", codes[0], kerr.UnknownTopicOrPartition)
	codes = r.addPartitions("good", pid, epoch, topic, 7)
	check("AddPartitionsToTxn of an unknown partition", codes[7], kerr.UnknownTopicOrPartition)
	codes = r.addPartitions("good", pid, epoch, "__consumer_offsets", 0)
	check("AddPartitionsToTxn of an internal topic", codes[0], kerr.UnknownTopicOrPartition, kerr.TopicAuthorizationFailed, kerr.InvalidRequest)

	// A transactional batch to a partition the open transaction never
	// added.
	if codes := r.addPartitions("good", pid, epoch, topic, 0); codes[0] != 0 {
		t.Fatalf("AddPartitionsToTxn: %v", kerr.ErrorForCode(codes[0]))
	}
	check("transactional produce to a partition not added", r.produce("good", topic, 1, txnBatch(t, pid, epoch, "sneaky")), kerr.InvalidTxnState)
	// A transactional batch under another producer's transactional id.
	check("transactional produce under a foreign id", r.produce("nobody", topic, 0, txnBatch(t, pid, epoch, "foreign")),
		kerr.InvalidProducerIDMapping, kerr.InvalidTxnState, kerr.TransactionalIDNotFound)

	// A fenced producer: a new InitProducerId for the id bumps the epoch.
	_, epoch2 := r.initProducer("good")
	if epoch2 <= epoch {
		t.Fatalf("a second InitProducerId left the epoch at %d (was %d)", epoch2, epoch)
	}
	check("AddPartitionsToTxn from the fenced producer", r.addPartitions("good", pid, epoch, topic, 0)[0], kerr.ProducerFenced, kerr.InvalidProducerEpoch)
	check("transactional produce from the fenced producer", r.produce("good", topic, 0, txnBatch(t, pid, epoch, "zombie")),
		kerr.ProducerFenced, kerr.InvalidProducerEpoch, kerr.InvalidTxnState)
	toc := kmsg.NewPtrTxnOffsetCommitRequest()
	toc.TransactionalID, toc.Group, toc.ProducerID, toc.ProducerEpoch = "good", "g", pid, epoch
	tt := kmsg.NewTxnOffsetCommitRequestTopic()
	tt.Topic = topic
	tp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	tp.Partition, tp.Offset = 0, 1
	tt.Partitions = append(tt.Partitions, tp)
	toc.Topics = append(toc.Topics, tt)
	tresp := r.do(toc).(*kmsg.TxnOffsetCommitResponse)
	check("TxnOffsetCommit from the fenced producer", tresp.Topics[0].Partitions[0].ErrorCode, kerr.ProducerFenced, kerr.InvalidProducerEpoch)

	// Nothing committed was touched, and nothing refused got in.
	sealTopic(t, b, topic, 2)
	if got, want := readToSentinel(t, b, topic, 2, false), []string{"committed"}; !slices.Equal(got, want) {
		t.Fatalf("after the bad requests %s holds %q, want only %q", topic, got, want)
	}
	offs, err := newKadm(t, b).FetchOffsets(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup(topic, 0); ok && o.At >= 0 {
		t.Fatalf("the fenced producer's offset commit for group g is visible: %d", o.At)
	}
}
