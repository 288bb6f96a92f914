package broker

import (
	"context"
	"errors"
	"math"
	"reflect"
	"time"

	"github.com/runnel-io/runnel/broker/internal/auth"
	"github.com/runnel-io/runnel/broker/storage"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fetchPart is one partition of a fetch being served.
type fetchPart struct {
	p        *storage.Partition
	topic    string
	offset   int64
	maxBytes int32
	// committed is a read_committed fetch (isolation level 1): it reads only
	// below the last stable offset and is told which transactions there
	// were aborted.
	committed bool
	resp      *kmsg.FetchResponseTopicPartition
}

// fetch is the Fetch API's handler. On the reader goroutine, in request
// order, it waits until the connection's previous fetch has been answered
// and written (see conn.fetching), which pushes back on a client that
// pipelines fetches; taking the turn in request order is what keeps the
// writer, which writes in that order, from waiting on a fetch that waits on
// it. Then it serves the fetch off the reader goroutine.
func (b *Broker) fetch(ctx context.Context, r kmsg.Request) answer {
	req := r.(*kmsg.FetchRequest)
	if c := connOf(ctx); c != nil {
		select {
		case c.fetching <- struct{}{}:
		case <-ctx.Done():
			return answer{err: ctx.Err()}
		}
		onWritten(ctx, func() { <-c.fetching })
	}
	return answer{later: func(ctx context.Context) kmsg.Response { return b.handleFetch(ctx, req) }}
}

// handleFetch serves a fetch as a long poll: it reads every partition asked
// for, up to MaxBytes capped at Config.MaxFetchBytes, and, if that yields fewer than MinBytes and no partition failed,
// waits until one of the partitions' high watermarks moves (then reads
// again) or MaxWaitMillis passes. It runs off the reader goroutine.
//
// Fetch sessions (KIP-227) are not kept: every full fetch is answered with
// session id 0, which tells the client that no session was made, and an
// incremental fetch (epoch above 0) gets FETCH_SESSION_ID_NOT_FOUND, after
// which clients fall back to full fetches, as with a Kafka broker that has
// no session slots free.
func (b *Broker) handleFetch(ctx context.Context, req *kmsg.FetchRequest) *kmsg.FetchResponse {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	if req.Version >= 7 && req.SessionEpoch != 0 && req.SessionEpoch != -1 {
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return resp
	}
	parts, partErr := b.fetchParts(ctx, req, resp)
	maxBytes := int64(req.MaxBytes)
	if req.Version < 3 {
		maxBytes = math.MaxInt32
	}
	// Whatever the client asks for, as Kafka's fetch.max.bytes.
	maxBytes = min(max(maxBytes, 0), int64(b.cfg.MaxFetchBytes))

	var timer *time.Timer
	if req.MaxWaitMillis > 0 {
		// The max wait runs from the request's arrival, not from the end
		// of the first read.
		timer = time.NewTimer(time.Duration(req.MaxWaitMillis) * time.Millisecond)
		defer timer.Stop()
	}
	for {
		// Take the wake-up channels before reading, so that data appended
		// after the read cannot be missed.
		changed := make([]<-chan struct{}, 0, len(parts))
		for _, fp := range parts {
			changed = append(changed, fp.p.Changed())
		}
		n, failed := b.readParts(parts, maxBytes)
		// A partition in error is reported at once, as Kafka does.
		if partErr || failed || n >= int64(req.MinBytes) || timer == nil || len(changed) == 0 {
			return resp
		}
		if b.cfg.hooks.fetchWait != nil {
			b.cfg.hooks.fetchWait()
		}
		switch waitAny(ctx, timer.C, changed) {
		case waitTimedOut:
			// Answer with what there is now, however little.
			b.readParts(parts, maxBytes)
			return resp
		case waitCancelled:
			return resp
		}
	}
}

// noRecords is the record set of a partition with nothing to return, in
// error or not: empty, never null. librdkafka 2.0 reads a null record set as
// a parse error and retries it without end, where Kafka sends an empty one.
var noRecords = []byte{}

// fetchParts builds the response's topics and partitions in request order,
// fills in the errors of partitions that cannot be served, and returns the
// ones that can and whether there were others.
func (b *Broker) fetchParts(ctx context.Context, req *kmsg.FetchRequest, resp *kmsg.FetchResponse) (parts []fetchPart, failed bool) {
	z, authorizing := b.authzFor(ctx, kmsg.Fetch)
	var byID map[[16]byte]*storage.Topic
	if req.Version >= 13 {
		byID = b.topicsByID()
	}
	resp.Topics = make([]kmsg.FetchResponseTopic, len(req.Topics))
	for i, rt := range req.Topics {
		st := &resp.Topics[i]
		*st = kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		var t *storage.Topic
		unknown := kerr.UnknownTopicOrPartition.Code
		if req.Version >= 13 {
			t, unknown = byID[rt.TopicID], kerr.UnknownTopicID.Code
		} else {
			t = b.log.Topic(rt.Topic)
		}
		// Read on the topic, checked before anything is read. A topic
		// named by an id that no topic has stays UNKNOWN_TOPIC_ID; one
		// named by a name, existing or not, is denied alike, so that a
		// client cannot learn which exist.
		denied := int16(0)
		if authorizing && (t != nil || req.Version < 13) {
			name := rt.Topic
			if t != nil {
				name = t.Name()
			}
			if !z.may(auth.FromTopics, auth.Always, name) {
				denied = z.code(auth.FromTopics, auth.Always)
			}
		}
		st.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
		for j, rp := range rt.Partitions {
			sp := &st.Partitions[j]
			*sp = kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.RecordBatches = noRecords
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			sp.PreferredReadReplica = -1
			var p *storage.Partition
			if t != nil {
				p = t.Partition(rp.Partition)
			}
			switch {
			case denied != 0:
				sp.ErrorCode, failed = denied, true
			case p == nil:
				sp.ErrorCode, failed = unknown, true
			case req.Version >= 9 && leaderEpochError(rp.CurrentLeaderEpoch) != 0:
				sp.ErrorCode, failed = leaderEpochError(rp.CurrentLeaderEpoch), true
			default:
				parts = append(parts, fetchPart{p: p, topic: t.Name(), offset: rp.FetchOffset, maxBytes: rp.PartitionMaxBytes,
					committed: req.Version >= 4 && req.IsolationLevel == 1, resp: sp})
			}
		}
	}
	return parts, failed
}

// leaderEpochError checks a request's current leader epoch against ours,
// which is always 0; -1 means the client does not know it and skips the
// check.
func leaderEpochError(epoch int32) int16 {
	switch {
	case epoch > 0:
		return kerr.UnknownLeaderEpoch.Code
	case epoch < -1:
		return kerr.FencedLeaderEpoch.Code
	}
	return 0
}

// readParts reads every partition once, in request order, and returns the
// bytes read and whether a partition failed. The first partition with data
// gets at least one whole batch however large (KIP-74), so that a consumer
// always progresses; after it, a partition whose next batch does not fit in
// what is left of maxBytes (or its own PartitionMaxBytes) gets nothing this
// time.
func (b *Broker) readParts(parts []fetchPart, maxBytes int64) (total int64, failed bool) {
	for i := range parts {
		fp := &parts[i]
		sp := fp.resp
		sp.ErrorCode, sp.RecordBatches, sp.AbortedTransactions = 0, noRecords, nil
		limit := min(int64(max(fp.maxBytes, 0)), maxBytes-total)
		if total > 0 && limit <= 0 {
			b.fillOffsets(fp)
			continue
		}
		recs, err := b.readPartition(fp, int(max(limit, 0)))
		if err != nil {
			sp.ErrorCode = errorCode(err)
			if errors.Is(err, storage.ErrClosed) && b.log.Topic(fp.topic) == nil {
				sp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			}
			if sp.ErrorCode == kerr.UnknownServerError.Code {
				b.logger.Error("fetch failed", "partition", fp.p.String(), "offset", fp.offset, "err", err)
			}
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			failed = true
			continue
		}
		if total > 0 && int64(len(recs)) > limit {
			recs = noRecords // only the first partition with data may exceed the limits
		}
		sp.RecordBatches = recs
		total += int64(len(recs))
		if fp.committed && len(recs) > 0 {
			sp.AbortedTransactions = abortedIn(fp.p, fp.offset, recs)
		}
		// Offsets are read after the records so that the high watermark
		// reported is never below a record returned.
		b.fillOffsets(fp)
	}
	return total, failed
}

// readPartition reads whole batches from fp's offset, copying them out of
// the segment. A read whose segment was removed by retention or compaction
// before the copy is retried once: the retry sees the log as it is now.
func (b *Broker) readPartition(fp *fetchPart, maxBytes int) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		limit := int64(-1)
		if fp.committed {
			limit = fp.p.LastStableOffset()
		}
		recs, err := fp.p.Read(fp.offset, maxBytes, limit)
		if err != nil {
			return nil, err
		}
		buf, err := recs.AppendTo(make([]byte, 0, recs.Len()))
		if errors.Is(err, storage.ErrRecordsGone) && attempt == 0 {
			continue
		}
		return buf, err
	}
}

// fillOffsets reports a partition's offsets.
func (b *Broker) fillOffsets(fp *fetchPart) {
	logStart, hw, _ := fp.p.Offsets()
	fp.resp.HighWatermark, fp.resp.LastStableOffset, fp.resp.LogStartOffset = hw, min(fp.p.LastStableOffset(), hw), logStart
}

// abortedIn lists the aborted transactions a read_committed consumer needs
// to skip the aborted records among recs, read from offset: those that
// overlap the offsets recs span. A consumer keeps a transaction's records
// from its first offset until its abort marker, so a transaction that
// began before offset is listed too.
func abortedIn(p *storage.Partition, offset int64, recs []byte) []kmsg.FetchResponseTopicPartitionAbortedTransaction {
	end := offset
	for rest := recs; len(rest) > 0; {
		h, err := storage.ParseBatchHeader(rest)
		if err != nil || h.Size() > len(rest) {
			break
		}
		end = h.LastOffset() + 1
		rest = rest[h.Size():]
	}
	txns := p.AbortedTransactions(offset, end)
	if len(txns) == 0 {
		return nil
	}
	out := make([]kmsg.FetchResponseTopicPartitionAbortedTransaction, len(txns))
	for i, t := range txns {
		out[i] = kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
		out[i].ProducerID, out[i].FirstOffset = t.ProducerID, t.FirstOffset
	}
	return out
}

// Outcomes of waitAny.
const (
	waitChanged = iota
	waitTimedOut
	waitCancelled
)

// waitAny waits until one of chans is closed, timeout fires or ctx ends.
func waitAny(ctx context.Context, timeout <-chan time.Time, chans []<-chan struct{}) int {
	if len(chans) == 1 {
		select {
		case <-chans[0]:
			return waitChanged
		case <-timeout:
			return waitTimedOut
		case <-ctx.Done():
			return waitCancelled
		}
	}
	cases := make([]reflect.SelectCase, 0, len(chans)+2)
	cases = append(cases,
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timeout)})
	for _, ch := range chans {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
	}
	switch chosen, _, _ := reflect.Select(cases); chosen {
	case 0:
		return waitCancelled
	case 1:
		return waitTimedOut
	}
	return waitChanged
}
