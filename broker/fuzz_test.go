package broker

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker/storage"
)

// FuzzRequestFrames sends each input to a running broker as one request
// frame over a real connection, the way a hostile client would, and checks
// after each that no handler panicked and that the broker still answers a
// well-formed request on a new connection. The seeds are valid requests of
// the APIs that parse the most (produce with a batch, fetch, metadata,
// topic creation, groups, transactions), so mutations reach the handlers
// and not only the frame decoder. `go test` runs the seeds and the corpus
// in testdata/fuzz; a longer search:
//
//	go test ./broker -run '^$' -fuzz FuzzRequestFrames -fuzztime 5m
func FuzzRequestFrames(f *testing.F) {
	formatter := kmsg.NewRequestFormatter(kmsg.FormatterClientID("fuzz"))
	for _, req := range fuzzSeeds(f) {
		frame := formatter.AppendRequest(nil, req, 7)
		f.Add(frame[4:]) // without the size, which the target adds
	}
	var panics atomic.Int64
	logger := slog.New(&panicCounter{n: &panics})
	b, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", Dir: f.TempDir(), Logger: logger,
		GroupInitialRebalanceDelay: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	alive := kmsg.NewPtrApiVersionsRequest()
	alive.ClientSoftwareName, alive.ClientSoftwareVersion = "fuzz", "1"
	aliveFrame := formatter.AppendRequest(nil, alive, 1)

	f.Fuzz(func(t *testing.T, frame []byte) {
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		msg := binary.BigEndian.AppendUint32(nil, uint32(len(frame)))
		c.Write(append(msg, frame...))
		// Whatever the broker answers, or its closing the connection, is
		// fine; a handler that blocks past the deadline is cut off by
		// closing our end.
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
		if n := panics.Load(); n > 0 {
			t.Fatalf("a handler panicked on frame %x", frame)
		}
		check, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatalf("broker no longer accepts connections after frame %x: %v", frame, err)
		}
		defer check.Close()
		check.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := check.Write(aliveFrame); err != nil {
			t.Fatal(err)
		}
		var size [4]byte
		if _, err := io.ReadFull(check, size[:]); err != nil {
			t.Fatalf("broker no longer answers ApiVersions after frame %x: %v", frame, err)
		}
	})
}

// fuzzSeeds are valid requests for the fuzzer to mutate.
func fuzzSeeds(tb testing.TB) []kmsg.Request {
	batch, err := storage.NewBatch(storage.CompressionNone, 0, storage.Record{Key: []byte("k"), Value: []byte("v")})
	if err != nil {
		tb.Fatal(err)
	}
	txnBatch, err := storage.NewTxnBatch(1, 0, 0, storage.Record{Value: []byte("t")})
	if err != nil {
		tb.Fatal(err)
	}
	topic := "fuzz"
	tid := "fuzz-txn"

	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = &topic
	meta.Topics = append(meta.Topics, mt)
	meta.AllowAutoTopicCreation = true

	produce := func(records []byte, txn *string) *kmsg.ProduceRequest {
		p := kmsg.NewPtrProduceRequest()
		p.SetVersion(9)
		p.Acks, p.TimeoutMillis, p.TransactionID = -1, 1000, txn
		pt := kmsg.NewProduceRequestTopic()
		pt.Topic = topic
		pp := kmsg.NewProduceRequestTopicPartition()
		pp.Records = records
		pt.Partitions = append(pt.Partitions, pp)
		p.Topics = append(p.Topics, pt)
		return p
	}

	fetch := kmsg.NewPtrFetchRequest()
	fetch.SetVersion(12)
	fetch.MaxWaitMillis, fetch.MaxBytes, fetch.IsolationLevel = 10, 1<<20, 1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = topic
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)

	create := kmsg.NewPtrCreateTopicsRequest()
	ct := kmsg.NewCreateTopicsRequestTopic()
	ct.Topic, ct.NumPartitions, ct.ReplicationFactor = "fuzz-created", 2, 1
	create.Topics = append(create.Topics, ct)

	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis, join.ProtocolType = "fuzz-group", 6000, 6000, "consumer"
	jp := kmsg.NewJoinGroupRequestProtocol()
	jp.Name, jp.Metadata = "range", []byte{0, 0, 0, 0, 0, 0}
	join.Protocols = append(join.Protocols, jp)

	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Group, commit.Generation = "fuzz-group", -1
	oct := kmsg.NewOffsetCommitRequestTopic()
	oct.Topic = topic
	ocp := kmsg.NewOffsetCommitRequestTopicPartition()
	ocp.Offset = 1
	oct.Partitions = append(oct.Partitions, ocp)
	commit.Topics = append(commit.Topics, oct)

	initPID := kmsg.NewPtrInitProducerIDRequest()
	initPID.TransactionalID, initPID.TransactionTimeoutMillis = &tid, 60000

	addParts := kmsg.NewPtrAddPartitionsToTxnRequest()
	addParts.TransactionalID, addParts.ProducerID = tid, 1
	at := kmsg.NewAddPartitionsToTxnRequestTopic()
	at.Topic, at.Partitions = topic, []int32{0}
	addParts.Topics = append(addParts.Topics, at)

	endTxn := kmsg.NewPtrEndTxnRequest()
	endTxn.TransactionalID, endTxn.ProducerID, endTxn.Commit = tid, 1, true

	toc := kmsg.NewPtrTxnOffsetCommitRequest()
	toc.TransactionalID, toc.Group, toc.ProducerID = tid, "fuzz-group", 1
	tt := kmsg.NewTxnOffsetCommitRequestTopic()
	tt.Topic = topic
	tp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	tp.Offset = 1
	tt.Partitions = append(tt.Partitions, tp)
	toc.Topics = append(toc.Topics, tt)

	list := kmsg.NewPtrListOffsetsRequest()
	list.IsolationLevel = 1
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Timestamp = -1
	lt.Partitions = append(lt.Partitions, lp)
	list.Topics = append(list.Topics, lt)

	return []kmsg.Request{meta, produce(batch, nil), produce(txnBatch, &tid), fetch, create, join, commit,
		initPID, addParts, endTxn, toc, list, kmsg.NewPtrDescribeTransactionsRequest(), kmsg.NewPtrListTransactionsRequest()}
}

// panicCounter is a slog handler that counts the connection's "handler
// panicked" errors.
type panicCounter struct{ n *atomic.Int64 }

func (h *panicCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *panicCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError && strings.Contains(r.Message, "panicked") {
		h.n.Add(1)
	}
	return nil
}
func (h *panicCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *panicCounter) WithGroup(string) slog.Handler      { return h }
