package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/runnel-io/runnel/broker/storage"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestMalformedFrameClosesOnlyThatConnection sends a request whose body
// cannot be decoded: the broker logs the peer and the API and closes that
// connection, while another client goes on working.
func TestMalformedFrameClosesOnlyThatConnection(t *testing.T) {
	var logs logBuffer
	b := startBroker(t, "", withLogs(&logs))
	createTopic(t, b, "survivor", 1)
	cl := newKgo(t, b, kgo.DefaultProduceTopic("survivor"))
	if err := cl.ProduceSync(ctxFor(t), &kgo.Record{Value: []byte("before")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	raw := dialRaw(t, b)
	// A Metadata v9 request whose topic array says 5 entries and ends.
	frame := binary.BigEndian.AppendUint16(nil, uint16(kmsg.Metadata))
	frame = binary.BigEndian.AppendUint16(frame, 9)
	frame = binary.BigEndian.AppendUint32(frame, 1)
	frame = binary.BigEndian.AppendUint16(frame, 0xffff) // null client id
	frame = append(frame, 0)                             // no header tags
	frame = append(frame, 6)                             // compact array of 5
	raw.write(append(binary.BigEndian.AppendUint32(nil, uint32(len(frame))), frame...))
	raw.expectClosed()
	peer := raw.c.LocalAddr().String()
	if line, ok := findLine(logs.String(), "malformed request", "peer="+peer, "api=Metadata"); !ok {
		t.Fatalf("no log line names the malformed request's peer %s and API:\n%s", peer, logs.String())
	} else {
		t.Logf("logged: %s", line)
	}

	if err := cl.ProduceSync(ctxFor(t), &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatalf("the other client failed after the malformed frame: %v", err)
	}
	raw2 := dialRaw(t, b)
	if resp := raw2.roundTrip(kmsg.NewPtrApiVersionsRequest()).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 {
		t.Fatalf("a new connection's ApiVersions: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
}

// TestOversizedRequestRefused closes a connection whose frame size is over
// MaxRequestSize, without reading the frame, and logs it; a request under
// the limit is served.
func TestOversizedRequestRefused(t *testing.T) {
	var logs logBuffer
	b := startBroker(t, "", withLogs(&logs), func(c *Config) { c.MaxRequestSize = 1024 })
	createTopic(t, b, "small", 1)

	ok := dialRaw(t, b)
	req := produceRequest("small", 0, 1, mustBatch(t, make([]byte, 100)))
	if resp := ok.roundTrip(req).(*kmsg.ProduceResponse); resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("produce under the limit: %v", kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode))
	}

	raw := dialRaw(t, b)
	big := produceRequest("small", 0, 1, mustBatch(t, make([]byte, 2000)))
	big.SetVersion(7)
	raw.write(raw.f.AppendRequest(nil, big, 1))
	raw.expectClosed()
	if _, ok := findLine(logs.String(), "size out of bounds", "peer="+raw.c.LocalAddr().String(), `api="Produce v7"`); !ok {
		t.Fatalf("no log line names the oversized request's peer and API:\n%s", logs.String())
	}
	if b.Log().Topic("small").Partition(0).LogEndOffset() != 1 {
		t.Fatal("the oversized produce was appended")
	}

	// A negative size is refused the same way.
	neg := dialRaw(t, b)
	neg.write([]byte{0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0})
	neg.expectClosed()
}

// TestApiVersionsTooNewGetsV0Fallback sends ApiVersions at a version the
// broker does not know: the answer is v0, UNSUPPORTED_VERSION and the list
// of what is supported (KIP-511), and the connection stays usable.
func TestApiVersionsTooNewGetsV0Fallback(t *testing.T) {
	b := startBroker(t, "")
	raw := dialRaw(t, b)
	// Header v2 (as a flexible ApiVersions would have) with version 99 and a
	// body the broker cannot know the layout of.
	frame := binary.BigEndian.AppendUint16(nil, uint16(kmsg.ApiVersions))
	frame = binary.BigEndian.AppendUint16(frame, 99)
	frame = binary.BigEndian.AppendUint32(frame, 42)
	frame = binary.BigEndian.AppendUint16(frame, 3)
	frame = append(frame, "raw"...)
	frame = append(frame, 0, 1, 2, 3, 4, 5)
	raw.write(append(binary.BigEndian.AppendUint32(nil, uint32(len(frame))), frame...))

	v0 := kmsg.NewPtrApiVersionsRequest()
	v0.SetVersion(0)
	resp := raw.recv(v0, 42).(*kmsg.ApiVersionsResponse)
	if resp.ErrorCode != kerr.UnsupportedVersion.Code {
		t.Fatalf("error %v, want UNSUPPORTED_VERSION", kerr.ErrorForCode(resp.ErrorCode))
	}
	versions := map[int16][2]int16{}
	for _, k := range resp.ApiKeys {
		versions[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	if versions[kmsg.ApiVersions.Int16()] != [2]int16{0, 4} || versions[kmsg.Produce.Int16()] != [2]int16{3, 12} {
		t.Fatalf("fallback lists %v, want ApiVersions 0-4 and Produce 3-12 among them", versions)
	}

	v3 := kmsg.NewPtrApiVersionsRequest()
	v3.SetVersion(3)
	v3.ClientSoftwareName, v3.ClientSoftwareVersion = "raw-test", "1.0"
	if resp := raw.roundTrip(v3).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 || len(resp.ApiKeys) != len(versions) {
		t.Fatalf("ApiVersions v3 after the fallback: error %d, %d keys", resp.ErrorCode, len(resp.ApiKeys))
	}
}

// TestUnsupportedVersionClosesConnection sends Produce v2 (message sets,
// not advertised): the connection is closed with a log line.
func TestUnsupportedVersionClosesConnection(t *testing.T) {
	var logs logBuffer
	b := startBroker(t, "", withLogs(&logs))
	raw := dialRaw(t, b)
	req := produceRequest("t", 0, 1, nil)
	req.SetVersion(2)
	raw.send(req)
	raw.expectClosed()
	if _, ok := findLine(logs.String(), "unsupported API or version", "api=Produce", "version=2", "peer="+raw.c.LocalAddr().String()); !ok {
		t.Fatalf("no log line for the unsupported version:\n%s", logs.String())
	}
}

// TestPipelinedRequestsAnsweredInOrder writes many requests before reading
// any response, with a long-polling fetch among them that completes last:
// the responses still come in request order.
func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "piped", 1)
	createTopic(t, b, "idle", 1)
	raw := dialRaw(t, b)

	type sent struct {
		req  kmsg.Request
		corr int32
	}
	var reqs []sent
	add := func(req kmsg.Request) { reqs = append(reqs, sent{req, raw.send(req)}) }
	for i := range 20 {
		switch i % 5 {
		case 0:
			add(produceRequest("piped", 0, 1, mustBatch(t, fmt.Appendf(nil, "r%d", i))))
		case 1:
			add(kmsg.NewPtrApiVersionsRequest())
		case 2:
			add(kmsg.NewPtrMetadataRequest())
		case 3:
			// Waits its full 200ms for data that never comes, while the
			// requests behind it are answered at once.
			add(fetchRequest("idle", 0, 0, 200))
		case 4:
			add(produceRequest("piped", 0, -1, mustBatch(t, fmt.Appendf(nil, "r%d", i))))
		}
	}
	produced := int64(0)
	for _, s := range reqs {
		resp := raw.recv(s.req, s.corr)
		if resp.Key() != s.req.Key() {
			t.Fatalf("response %d is %s, want %s", s.corr, kmsg.NameForKey(resp.Key()), kmsg.NameForKey(s.req.Key()))
		}
		if fr, ok := resp.(*kmsg.FetchResponse); ok && fr.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("fetch %d: %v", s.corr, kerr.ErrorForCode(fr.Topics[0].Partitions[0].ErrorCode))
		}
		if pr, ok := resp.(*kmsg.ProduceResponse); ok {
			p := pr.Topics[0].Partitions[0]
			if p.ErrorCode != 0 || p.BaseOffset != produced {
				t.Fatalf("produce %d: error %d at offset %d, want offset %d (appends in request order)", s.corr, p.ErrorCode, p.BaseOffset, produced)
			}
			produced++
		}
	}
}

// TestProduceAcksZeroSendsNoResponse appends an acks=0 produce without
// answering it: the next response on the connection is the next request's.
func TestProduceAcksZeroSendsNoResponse(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "fire-and-forget", 1)
	raw := dialRaw(t, b)
	raw.send(produceRequest("fire-and-forget", 0, 0, mustBatch(t, []byte("x"))))
	meta := kmsg.NewPtrMetadataRequest()
	raw.roundTrip(meta) // fails if the produce were answered: wrong correlation id
	if leo := b.Log().Topic("fire-and-forget").Partition(0).LogEndOffset(); leo != 1 {
		t.Fatalf("log end offset %d after an acks=0 produce, want 1", leo)
	}
	// A failed acks=0 produce closes the connection: the only way such a
	// producer learns of it.
	raw.send(produceRequest("no-such-topic", 0, 0, mustBatch(t, []byte("x"))))
	raw.expectClosed()
}

// TestHandlerPanicClosesOnlyThatConnection makes a handler panic, inline
// and deferred: the broker logs it with its stack, closes that connection
// and goes on serving others.
func TestHandlerPanicClosesOnlyThatConnection(t *testing.T) {
	var logs logBuffer
	b := startBroker(t, "", withLogs(&logs), func(c *Config) {
		c.hooks.apis = func(m map[int16]*api) {
			m[kmsg.DescribeACLs.Int16()] = &api{key: kmsg.DescribeACLs, min: 0, max: 3, handle: inline(func(context.Context, *kmsg.DescribeACLsRequest) *kmsg.DescribeACLsResponse {
				panic("inline boom")
			})}
			m[kmsg.DescribeLogDirs.Int16()] = &api{key: kmsg.DescribeLogDirs, min: 0, max: 4, handle: deferred(func(context.Context, *kmsg.DescribeLogDirsRequest) *kmsg.DescribeLogDirsResponse {
				panic("deferred boom")
			})}
		}
	})
	other := dialRaw(t, b)
	for _, req := range []kmsg.Request{kmsg.NewPtrDescribeACLsRequest(), kmsg.NewPtrDescribeLogDirsRequest()} {
		raw := dialRaw(t, b)
		raw.send(req)
		raw.expectClosed()
		if resp := other.roundTrip(kmsg.NewPtrMetadataRequest()).(*kmsg.MetadataResponse); len(resp.Brokers) != 1 {
			t.Fatalf("metadata on another connection after a panic: %+v", resp)
		}
	}
	for _, msg := range []string{"inline boom", "deferred boom"} {
		line, ok := findLine(logs.String(), "handler panicked", msg)
		if !ok {
			t.Fatalf("no log line for the %q panic:\n%s", msg, logs.String())
		}
		if _, ok := findLine(line, "stack=", "runtime/debug.Stack"); !ok {
			t.Fatalf("the panic's log line has no stack: %s", line)
		}
	}
}

// produceRequest builds a Produce request (v9 unless changed) of one batch
// to one partition.
func produceRequest(topic string, partition int32, acks int16, batch []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	req.Acks = acks
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// fetchRequest builds a Fetch v12 of one partition from offset.
func fetchRequest(topic string, partition int32, offset int64, maxWaitMs int32) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(12)
	req.ReplicaID = -1
	req.MaxWaitMillis = maxWaitMs
	req.MinBytes = 1
	req.MaxBytes = 1 << 20
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = partition
	rp.FetchOffset = offset
	rp.PartitionMaxBytes = 1 << 20
	rp.CurrentLeaderEpoch = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// mustBatch makes an uncompressed batch of one record per value.
func mustBatch(t *testing.T, values ...[]byte) []byte {
	t.Helper()
	var recs []storage.Record
	for _, v := range values {
		recs = append(recs, storage.Record{Value: v})
	}
	b, err := storage.NewBatch(storage.CompressionNone, 1_700_000_000_000, recs...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
