package broker

import (
	"bytes"
	"testing"
	"time"

	"github.com/runnel-io/runnel/broker/storage"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFetchLongPollReturnsWhenRecordProduced parks a fetch with a 5s max
// wait on an empty partition, produces a record, and gets the record in the
// fetch's response: the long poll was woken by the produce, not the timer.
func TestFetchLongPollReturnsWhenRecordProduced(t *testing.T) {
	waiting := make(chan struct{}, 1)
	b := startBroker(t, "", func(c *Config) {
		c.hooks.fetchWait = func() {
			select {
			case waiting <- struct{}{}:
			default:
			}
		}
	})
	createTopic(t, b, "polled", 1)
	raw := dialRaw(t, b)
	req := fetchRequest("polled", 0, 0, 5000)
	corr := raw.send(req)
	select {
	case <-waiting:
	case <-ctxFor(t).Done():
		t.Fatal("the fetch never started waiting")
	}
	cl := newKgo(t, b, kgo.DefaultProduceTopic("polled"))
	if err := cl.ProduceSync(ctxFor(t), &kgo.Record{Value: []byte("wake up")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	resp := raw.recv(req, corr).(*kmsg.FetchResponse)
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 || p.HighWatermark != 1 {
		t.Fatalf("fetch: error %v, high watermark %d, want none and 1", kerr.ErrorForCode(p.ErrorCode), p.HighWatermark)
	}
	if !bytes.Contains(p.RecordBatches, []byte("wake up")) {
		t.Fatalf("the woken fetch does not carry the record produced (%d bytes of batches)", len(p.RecordBatches))
	}
}

// TestFetchWithNoDataReturnsEmptyAfterMaxWait fetches past the end of an
// idle partition: the response comes after the max wait, empty.
func TestFetchWithNoDataReturnsEmptyAfterMaxWait(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "idle", 1)
	raw := dialRaw(t, b)
	const maxWait = 300 * time.Millisecond
	start := time.Now()
	resp := raw.roundTrip(fetchRequest("idle", 0, 0, int32(maxWait/time.Millisecond))).(*kmsg.FetchResponse)
	if elapsed := time.Since(start); elapsed < maxWait {
		t.Fatalf("an empty fetch returned after %v, before its max wait %v", elapsed, maxWait)
	}
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 || len(p.RecordBatches) != 0 || p.HighWatermark != 0 || p.LogStartOffset != 0 {
		t.Fatalf("empty fetch: error %d, %d bytes, hw %d, log start %d", p.ErrorCode, len(p.RecordBatches), p.HighWatermark, p.LogStartOffset)
	}
}

// TestFetchByteLimits checks MaxBytes and PartitionMaxBytes: whole batches
// only, and at least one batch for the first partition with data even when
// it is over both limits, but none for the partitions after it.
func TestFetchByteLimits(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "limited", 2)
	batch := mustBatch(t, bytes.Repeat([]byte("x"), 1000))
	size := int32(len(batch))
	for p := range int32(2) {
		part := b.Log().Topic("limited").Partition(p)
		for range 3 {
			res, err := part.Append(append([]byte(nil), batch...))
			if err != nil {
				t.Fatal(err)
			}
			if err := part.WaitDurable(ctxFor(t), res.LastOffset); err != nil {
				t.Fatal(err)
			}
		}
	}
	raw := dialRaw(t, b)
	fetch := func(maxBytes, partMax int32) [2]int {
		req := fetchRequest("limited", 0, 0, 0)
		rp := req.Topics[0].Partitions[0]
		rp.PartitionMaxBytes = partMax
		rp2 := rp
		rp2.Partition = 1
		req.Topics[0].Partitions = []kmsg.FetchRequestTopicPartition{rp, rp2}
		req.MaxBytes = maxBytes
		resp := raw.roundTrip(req).(*kmsg.FetchResponse)
		var batches [2]int
		for i, p := range resp.Topics[0].Partitions {
			if p.ErrorCode != 0 || len(p.RecordBatches)%int(size) != 0 {
				t.Fatalf("partition %d: error %d, %d bytes (not whole batches of %d)", i, p.ErrorCode, len(p.RecordBatches), size)
			}
			batches[i] = len(p.RecordBatches) / int(size)
		}
		return batches
	}
	for _, tc := range []struct {
		name              string
		maxBytes, partMax int32
		want              [2]int
	}{
		{"both limits below one batch", 10, 10, [2]int{1, 0}},
		{"response limit of one and a half batches", size * 3 / 2, 1 << 20, [2]int{1, 0}},
		{"partition limit of two and a half batches", 1 << 20, size * 5 / 2, [2]int{2, 2}},
		{"response limit of four batches", size * 4, 1 << 20, [2]int{3, 1}},
	} {
		if got := fetch(tc.maxBytes, tc.partMax); got != tc.want {
			t.Errorf("%s: got %v batches per partition, want %v", tc.name, got, tc.want)
		}
	}
}

// TestFetchOffsetOutOfRange fetches past the log end and below the log
// start.
func TestFetchOffsetOutOfRange(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "ranged", 1)
	part := b.Log().Topic("ranged").Partition(0)
	for range 3 {
		if _, err := part.Append(mustBatch(t, []byte("r"))); err != nil {
			t.Fatal(err)
		}
	}
	if err := part.WaitDurable(ctxFor(t), 2); err != nil {
		t.Fatal(err)
	}
	if _, err := part.DeleteRecords(1); err != nil {
		t.Fatal(err)
	}
	raw := dialRaw(t, b)
	for _, offset := range []int64{0, 4} {
		// A long max wait: an error answers at once regardless.
		resp := raw.roundTrip(fetchRequest("ranged", 0, offset, 60000)).(*kmsg.FetchResponse)
		if p := resp.Topics[0].Partitions[0]; p.ErrorCode != kerr.OffsetOutOfRange.Code {
			t.Fatalf("fetch at %d: error %v, want OFFSET_OUT_OF_RANGE", offset, kerr.ErrorForCode(p.ErrorCode))
		}
	}
	resp := raw.roundTrip(fetchRequest("ranged", 0, 1, 0)).(*kmsg.FetchResponse)
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || p.LogStartOffset != 1 || p.HighWatermark != 3 || p.LastStableOffset != 3 {
		t.Fatalf("fetch at the log start: %+v", p)
	}
}

// TestFetchSessionsAndTopicIDs checks that a fetch asking for a new
// session gets session id 0 (full fetches only), that an incremental fetch
// is told its session does not exist, and that v13 fetches by topic id.
func TestFetchSessionsAndTopicIDs(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "ided", 1)
	part := b.Log().Topic("ided").Partition(0)
	res, err := part.Append(mustBatch(t, []byte("by id")))
	if err != nil {
		t.Fatal(err)
	}
	if err := part.WaitDurable(ctxFor(t), res.LastOffset); err != nil {
		t.Fatal(err)
	}
	raw := dialRaw(t, b)

	req := fetchRequest("ided", 0, 0, 0)
	req.SessionEpoch = 0 // asks for a new session
	resp := raw.roundTrip(req).(*kmsg.FetchResponse)
	if resp.ErrorCode != 0 || resp.SessionID != 0 || !bytes.Contains(resp.Topics[0].Partitions[0].RecordBatches, []byte("by id")) {
		t.Fatalf("full fetch creating a session: error %d, session %d", resp.ErrorCode, resp.SessionID)
	}
	req.SessionID, req.SessionEpoch = 7, 1
	if resp := raw.roundTrip(req).(*kmsg.FetchResponse); resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("incremental fetch: %v, want FETCH_SESSION_ID_NOT_FOUND", kerr.ErrorForCode(resp.ErrorCode))
	}

	req = fetchRequest("", 0, 0, 0)
	req.SetVersion(13)
	id := b.Log().Topic("ided").ID()
	unknown := id
	unknown[0]++
	req.Topics[0].TopicID = id
	other := req.Topics[0]
	other.TopicID = unknown
	req.Topics = append(req.Topics, other)
	resp = raw.roundTrip(req).(*kmsg.FetchResponse)
	if got := resp.Topics[0]; got.TopicID != id || got.Partitions[0].ErrorCode != 0 || !bytes.Contains(got.Partitions[0].RecordBatches, []byte("by id")) {
		t.Fatalf("fetch v13 by id: topic id %x, error %d, %d bytes", got.TopicID, got.Partitions[0].ErrorCode, len(got.Partitions[0].RecordBatches))
	}
	if got := resp.Topics[1]; got.TopicID != unknown || got.Partitions[0].ErrorCode != kerr.UnknownTopicID.Code {
		t.Fatalf("fetch v13 of an unknown id: error %v, want UNKNOWN_TOPIC_ID", kerr.ErrorForCode(got.Partitions[0].ErrorCode))
	}
}

// TestFetchedBatchesAreStoredBytes checks that a fetch returns batches
// byte for byte as the log holds them.
func TestFetchedBatchesAreStoredBytes(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "exact", 1)
	batch, err := storage.NewBatch(storage.CompressionZstd, 1_700_000_000_000, storage.Record{Key: []byte("k"), Value: bytes.Repeat([]byte("zstd "), 100)})
	if err != nil {
		t.Fatal(err)
	}
	raw := dialRaw(t, b)
	if resp := raw.roundTrip(produceRequest("exact", 0, -1, append([]byte(nil), batch...))).(*kmsg.ProduceResponse); resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("produce: %v", kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode))
	}
	resp := raw.roundTrip(fetchRequest("exact", 0, 0, 0)).(*kmsg.FetchResponse)
	got := resp.Topics[0].Partitions[0].RecordBatches
	// The log rewrites only the base offset and the partition leader epoch,
	// which the CRC does not cover: the base offset is 0 already, the epoch
	// (bytes 12 to 15) goes from -1 to 0.
	want := append([]byte(nil), batch...)
	want[12], want[13], want[14], want[15] = 0, 0, 0, 0
	if !bytes.Equal(got, want) {
		t.Fatalf("fetched batch differs from the produced one (%d vs %d bytes)", len(got), len(want))
	}
}
