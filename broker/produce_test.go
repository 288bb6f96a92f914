package broker

import (
	"testing"

	"github.com/runnel-io/runnel/broker/internal/group"
	"github.com/runnel-io/runnel/broker/storage"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestProducePartitionErrors checks the per-partition error of each kind
// of bad produce, and that none of them appends anything.
func TestProducePartitionErrors(t *testing.T) {
	b := startBroker(t, "")
	if _, err := b.Log().CreateTopic("strict", 1, map[string]string{"max.message.bytes": "200"}); err != nil {
		t.Fatal(err)
	}
	good := mustBatch(t, []byte("fine"))
	corrupt := mustBatch(t, []byte("flipped"))
	corrupt[len(corrupt)-1] ^= 0xff
	control, err := storage.EncodeBatch(storage.BatchHeader{Attributes: 0x20, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
		[]storage.Record{{Key: []byte{0, 0, 0, 0}, Value: []byte{0, 0, 0, 0, 0, 0}}})
	if err != nil {
		t.Fatal(err)
	}
	raw := dialRaw(t, b)
	for _, tc := range []struct {
		name      string
		topic     string
		partition int32
		acks      int16
		records   []byte
		want      *kerr.Error
	}{
		{"unknown topic", "nope", 0, -1, good, kerr.UnknownTopicOrPartition},
		{"unknown partition", "strict", 5, -1, good, kerr.UnknownTopicOrPartition},
		{"bad CRC", "strict", 0, -1, corrupt, kerr.CorruptMessage},
		{"truncated batch", "strict", 0, -1, good[:len(good)-3], kerr.CorruptMessage},
		{"over max.message.bytes", "strict", 0, -1, mustBatch(t, make([]byte, 300)), kerr.MessageTooLarge},
		{"two batches", "strict", 0, -1, append(append([]byte(nil), good...), good...), kerr.InvalidRecord},
		{"control batch", "strict", 0, -1, control, kerr.InvalidRecord},
		{"internal topic", group.OffsetsTopic, 0, -1, good, kerr.InvalidTopicException},
		{"acks 2", "strict", 0, 2, good, kerr.InvalidRequiredAcks},
	} {
		resp := raw.roundTrip(produceRequest(tc.topic, tc.partition, tc.acks, append([]byte(nil), tc.records...))).(*kmsg.ProduceResponse)
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != tc.want.Code {
			t.Errorf("%s: error %v, want %v", tc.name, kerr.ErrorForCode(p.ErrorCode), tc.want)
		}
		if p.ErrorMessage == nil && tc.want != kerr.InvalidRequiredAcks {
			t.Errorf("%s: no error message", tc.name)
		}
	}
	for _, topic := range []string{"strict", group.OffsetsTopic} {
		if leo := b.Log().Topic(topic).Partition(0).LogEndOffset(); leo != 0 {
			t.Fatalf("%s has %d records after refused produces", topic, leo)
		}
	}
}

// TestProduceResponseOffsets checks base offset, log start offset and log
// append time in produce responses.
func TestProduceResponseOffsets(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "create-time", 1)
	if _, err := b.Log().CreateTopic("append-time", 1, map[string]string{"message.timestamp.type": "LogAppendTime"}); err != nil {
		t.Fatal(err)
	}
	raw := dialRaw(t, b)
	for i := range 3 {
		for _, topic := range []string{"create-time", "append-time"} {
			resp := raw.roundTrip(produceRequest(topic, 0, -1, mustBatch(t, []byte("a"), []byte("b")))).(*kmsg.ProduceResponse)
			p := resp.Topics[0].Partitions[0]
			if p.ErrorCode != 0 || p.BaseOffset != int64(2*i) || p.LogStartOffset != 0 {
				t.Fatalf("%s produce %d: error %d, base offset %d, log start %d", topic, i, p.ErrorCode, p.BaseOffset, p.LogStartOffset)
			}
			if (p.LogAppendTime != -1) != (topic == "append-time") {
				t.Fatalf("%s produce %d: log append time %d", topic, i, p.LogAppendTime)
			}
		}
	}
}

// TestIdempotentProduce gets a producer id, then sends a batch twice (the
// retry is answered with the first offsets and not appended again), and a
// batch with a gap in its sequence (refused).
func TestIdempotentProduce(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "idem", 1)
	raw := dialRaw(t, b)
	init := raw.roundTrip(kmsg.NewPtrInitProducerIDRequest()).(*kmsg.InitProducerIDResponse)
	if init.ErrorCode != 0 || init.ProducerID < 0 || init.ProducerEpoch != 0 {
		t.Fatalf("init producer id: %+v", init)
	}
	again := raw.roundTrip(kmsg.NewPtrInitProducerIDRequest()).(*kmsg.InitProducerIDResponse)
	if again.ProducerID == init.ProducerID {
		t.Fatalf("two InitProducerId calls got the same id %d", init.ProducerID)
	}
	batch := func(seq int32, values ...string) []byte {
		var recs []storage.Record
		for i, v := range values {
			recs = append(recs, storage.Record{OffsetDelta: int32(i), Value: []byte(v)})
		}
		bb, err := storage.EncodeBatch(storage.BatchHeader{LeaderEpoch: -1, ProducerID: init.ProducerID, BaseSequence: seq,
			BaseTimestamp: 1_700_000_000_000, MaxTimestamp: 1_700_000_000_000}, recs)
		if err != nil {
			t.Fatal(err)
		}
		return bb
	}
	produce := func(records []byte) kmsg.ProduceResponseTopicPartition {
		return raw.roundTrip(produceRequest("idem", 0, -1, records)).(*kmsg.ProduceResponse).Topics[0].Partitions[0]
	}
	if p := produce(batch(0, "a", "b")); p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("first batch: %+v", p)
	}
	if p := produce(batch(2, "c")); p.ErrorCode != 0 || p.BaseOffset != 2 {
		t.Fatalf("second batch: %+v", p)
	}
	if p := produce(batch(0, "a", "b")); p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("retried first batch: error %v at %d, want none at the first offset 0", kerr.ErrorForCode(p.ErrorCode), p.BaseOffset)
	}
	if p := produce(batch(7, "gap")); p.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("batch after a sequence gap: %v, want OUT_OF_ORDER_SEQUENCE_NUMBER", kerr.ErrorForCode(p.ErrorCode))
	}
	if leo := b.Log().Topic("idem").Partition(0).LogEndOffset(); leo != 3 {
		t.Fatalf("log end offset %d, want 3 (the retry and the gap not appended)", leo)
	}

	// Transactional ids need a transaction coordinator, which there is not.
	txn := kmsg.NewPtrInitProducerIDRequest()
	txn.TransactionalID = kmsg.StringPtr("txn")
	if resp := raw.roundTrip(txn).(*kmsg.InitProducerIDResponse); resp.ErrorCode == 0 {
		t.Fatalf("a transactional InitProducerId succeeded: %+v", resp)
	}
}

// TestProducerIDsSurviveRestart checks that producer ids are never handed
// out twice, across a restart.
func TestProducerIDsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	raw := dialRaw(t, b)
	first := raw.roundTrip(kmsg.NewPtrInitProducerIDRequest()).(*kmsg.InitProducerIDResponse).ProducerID
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := startBroker(t, dir)
	next := dialRaw(t, b2).roundTrip(kmsg.NewPtrInitProducerIDRequest()).(*kmsg.InitProducerIDResponse).ProducerID
	if next <= first {
		t.Fatalf("producer id %d after the restart, want above %d", next, first)
	}
}

// TestFindCoordinatorNamesThisNode checks FindCoordinator in both of its
// forms: one key (v3) and batched keys (v4).
func TestFindCoordinatorNamesThisNode(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.NodeID = 2 })
	raw := dialRaw(t, b)
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.SetVersion(3)
	req.CoordinatorKey = "g"
	resp := raw.roundTrip(req).(*kmsg.FindCoordinatorResponse)
	if resp.ErrorCode != 0 || resp.NodeID != 2 || resp.Host != "127.0.0.1" {
		t.Fatalf("v3: %+v", resp)
	}
	req = kmsg.NewPtrFindCoordinatorRequest()
	req.SetVersion(4)
	req.CoordinatorType = 1
	req.CoordinatorKeys = []string{"t1", "t2"}
	resp = raw.roundTrip(req).(*kmsg.FindCoordinatorResponse)
	if len(resp.Coordinators) != 2 || resp.Coordinators[1].Key != "t2" || resp.Coordinators[1].NodeID != 2 || resp.Coordinators[1].ErrorCode != 0 {
		t.Fatalf("v4: %+v", resp.Coordinators)
	}
}
