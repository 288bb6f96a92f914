package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrDeliveryTimeout is matched by the error of a record, or a call, that
// failed because the cluster did not take it within Config.DeliveryTimeout.
var ErrDeliveryTimeout = errors.New("delivery timeout")

// producer is the Client's asynchronous producer: a franz-go client of its
// own, whose promises become done calls.
//
// What a failed record means, from franz-go's sink.go (v1.22.3), with
// idempotence on (the default):
//
//   - A record kgo fails is, but for one case below, not in the log. kgo
//     fails a batch on a timeout (or a cancelled context) only while it is
//     safe: recBatch.canFailFromLoadErrs is set false in AppendTo as a
//     request carrying the batch is written, and true again only in
//     handleReqRespBatch when a response to it arrives; every timeout check
//     (tryAddBatch's maybeFailErr, handleRetryBatches, bumpRepeatedLoadErr)
//     requires it, and requires !unsureIfProduced, which a
//     REQUEST_TIMED_OUT or NOT_ENOUGH_REPLICAS_AFTER_APPEND answer sets for
//     good. A batch whose request was sent and whose answer was lost (a
//     broken connection) is so never failed for time: kgo resends it with
//     the same producer id, epoch and sequence (the batch is "pinned") until
//     the broker answers, and the broker's duplicate check answers it with
//     the offsets it already has. Such a record is acknowledged late, after
//     DeliveryTimeout if the outage lasts longer, but never reported failed
//     while it may be in the log. Non-retriable errors (a record too large,
//     an unknown topic) are answers that the batch was refused.
//   - The case: handleReqRespBatch re-enables failing on any answer, not
//     only on one that passed the broker's duplicate check. If attempt 1 of
//     a batch was appended and its answer lost, and attempt 2 is answered
//     with a retriable error the broker gives before that check (on Kafka
//     NOT_LEADER_OR_FOLLOWER after a leader change, or
//     UNKNOWN_TOPIC_OR_PARTITION from a broker still loading), a timeout
//     then fails the batch although attempt 1 is in the log. A broker that
//     lost its producer state (or that answers OUT_OF_ORDER_SEQUENCE) makes
//     kgo bump the epoch and resend the batch as new, which can duplicate
//     it. The bundled log checks sequences against state it rebuilds before
//     it serves, so neither is expected there; on a Kafka cluster a leader
//     change during an outage can cause the first.
//   - A failure fails every record buffered for the partition at that
//     moment (recBuf.failAllRecords), and bumps the producer epoch if a
//     failed batch had been written. A record of the partition sent after
//     that starts a new sequence and can succeed: the log of a partition is
//     then its acknowledged records with the failed ones missing, in order,
//     and a caller that must not have a gap has to stop sending to the
//     partition at the first failure.
//   - When the deadline is looked at: kgo checks it on a partition's first
//     pending batch only, before it writes it and when a metadata load
//     fails. The first batch written after the connection died counts as
//     written (the kernel takes the bytes before the reset arrives), so a
//     partition that was sending when the broker went away has a batch at
//     its head that cannot fail: none of its records fail until the broker
//     answers, and then the ones behind it may be acknowledged past their
//     deadline (TestProducerAnswerLost). A partition idle when the outage
//     began fails its records at their deadline. A Send that finds kgo's
//     buffer (50,000 records) full blocks, and fails at its deadline. So
//     DeliveryTimeout bounds when a record may be failed, not how long
//     one may wait: a caller that cannot wait longer bounds Flush.
//   - Client.Close fails what is still buffered with ErrClientClosed,
//     including a batch whose answer was lost: only that error leaves the
//     outcome unknown; close waits up to DeliveryTimeout before it.
type producer struct {
	cl      *kgo.Client
	timeout time.Duration
	log     *slog.Logger

	mu     sync.RWMutex // guards closed; Send holds it shared to count a record in
	closed bool

	deadlines deadlines
	lastErr   lastError
	flights   inflight
	closeOnce sync.Once
}

// send is one record on its way.
type send struct {
	rec  *Record
	done func(*Record, error)
	at   time.Time
	ctx  context.Context // ends at the record's deadline
	// epoch is the Flush epoch the record was counted in.
	epoch uint64
}

func newProducer(cfg Config) (*producer, error) {
	p := &producer{timeout: cfg.DeliveryTimeout, log: cfg.Logger}
	p.deadlines.timeout = cfg.DeliveryTimeout
	p.flights.init()
	opts := append(cfg.kgoBase("producer"),
		kgo.WithHooks(&p.lastErr),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(max(cfg.ProduceLinger, 0)),
		// kgo.RecordDeliveryTimeout is not used: kgo measures it from a
		// record's Timestamp, which is the record's event time here, so
		// an old event would fail at once. Each record instead carries a
		// context with a deadline DeliveryTimeout after Send (see
		// deadlines), which kgo checks wherever it checks its timeout,
		// with the same care for idempotence.
	)
	if cfg.DisableIdempotence {
		// One request in flight per broker (kgo's default without
		// idempotence) keeps retries in order; they may duplicate.
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: producer: %w", err)
	}
	p.cl = cl
	return p, nil
}

// backoff is the wait before retry number fails (from 1) of a request:
// 100ms doubling to 1s, with jitter so that clients do not retry in step.
func backoff(fails int) time.Duration {
	d := 100 * time.Millisecond << min(max(fails-1, 0), 4)
	d = min(d, time.Second)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Send implements Producer.
func (c *Client) Send(r *Record, done func(*Record, error)) { c.prod.send(r, done) }

// Flush implements Producer.
func (c *Client) Flush(ctx context.Context) error { return c.prod.flush(ctx) }

func (p *producer) send(r *Record, done func(*Record, error)) {
	now := time.Now()
	s := &send{rec: r, done: done, at: now, ctx: p.deadlines.get(now)}
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		done(r, fmt.Errorf("kafka: produce to %s/%d: %w", r.Topic, r.Partition, ErrClosed))
		return
	}
	s.epoch = p.flights.add()
	p.mu.RUnlock()

	kr := &kgo.Record{
		Topic:     r.Topic,
		Partition: r.Partition,
		Key:       r.Key,
		Value:     r.Value,
		Timestamp: r.Timestamp,
	}
	if len(r.Headers) > 0 {
		kr.Headers = make([]kgo.RecordHeader, len(r.Headers))
		for i, h := range r.Headers {
			kr.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
		}
	}
	// Produce blocks while kgo's buffer is full, up to the record's
	// deadline; after close it fails the record at once. A close that
	// begins meanwhile waits for the record like any other.
	p.cl.Produce(s.ctx, kr, func(kr *kgo.Record, err error) { p.deliver(s, kr, err) })
}

// deliver reports one record's outcome. kgo calls promises one at a time,
// in order per partition, on its promise goroutine.
func (p *producer) deliver(s *send, kr *kgo.Record, err error) {
	r := s.rec
	if err == nil {
		r.Offset = kr.Offset
	} else {
		err = p.failure(s, err)
	}
	s.done(r, err)
	p.flights.remove(s.epoch)
}

// failure describes why kgo failed s.
func (p *producer) failure(s *send, err error) error {
	r := s.rec
	switch {
	case errors.Is(err, kgo.ErrClientClosed):
		return fmt.Errorf("kafka: produce to %s/%d: %w before the record was acknowledged: %w", r.Topic, r.Partition, ErrClosed, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, kgo.ErrRecordTimeout),
		// kgo fails records past their deadline with the error it met
		// at that point, a broken connection say, rather than with a
		// timeout error.
		s.ctx.Err() != nil && transient(err):
		// kgo fails a partition's buffered records together when its
		// oldest one is past its deadline, so this record may be younger.
		last := err
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrRecordTimeout) {
			last = nil
			if at, e := p.lastErr.get(); e != nil {
				last = fmt.Errorf("%w (%s ago)", e, time.Since(at).Round(time.Millisecond))
			}
		}
		return fmt.Errorf("kafka: produce to %s/%d: %w: the partition's oldest pending record was not acknowledged within %v; this one was sent %v ago; last error: %v",
			r.Topic, r.Partition, ErrDeliveryTimeout, p.timeout, time.Since(s.at).Round(time.Millisecond), last)
	default:
		return fmt.Errorf("kafka: produce to %s/%d: %w", r.Topic, r.Partition, err)
	}
}

func (p *producer) flush(ctx context.Context) error {
	if err := p.flights.wait(ctx); err != nil {
		return fmt.Errorf("kafka: flush: %w", err)
	}
	return nil
}

// close stops taking records, waits up to DeliveryTimeout for those sent
// to be acknowledged or failed, and closes the producer's connections,
// which fails what is left with ErrClosed.
func (p *producer) close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		if err := p.flights.wait(ctx); err != nil {
			p.log.Warn("closing the producer with records unacknowledged", "waited", p.timeout)
		}
		cancel()
		p.cl.Close()
		// Close has handed kgo's promise goroutine every record left.
		_ = p.flights.wait(context.Background())
		p.deadlines.stop()
	})
	return nil
}

// deadlines hands out the contexts that bound records' delivery. Records
// sent within one slot share a context, whose deadline is DeliveryTimeout
// after the slot's end, so that a busy producer makes one timer per slot
// rather than one per record.
type deadlines struct {
	timeout time.Duration

	mu     sync.Mutex
	end    time.Time // of the current slot
	ctx    context.Context
	cancel context.CancelFunc
}

// get returns the context of a record sent at now: its deadline is at
// least DeliveryTimeout away, and at most a slot more.
func (d *deadlines) get(now time.Time) context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctx != nil && now.Before(d.end) {
		return d.ctx
	}
	// The previous slot's context ends by its own deadline; records still
	// hold it.
	slot := min(max(d.timeout/100, time.Millisecond), 100*time.Millisecond)
	d.end = now.Add(slot)
	d.ctx, d.cancel = context.WithDeadline(context.Background(), d.end.Add(d.timeout))
	return d.ctx
}

// stop releases the current slot's timer.
func (d *deadlines) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancel != nil {
		d.cancel()
	}
}

// lastError keeps the last error of the producer's connections, for a
// record that times out to say why: kgo does not tell a record what its
// attempts met. It is a kgo hook.
type lastError struct {
	mu  sync.Mutex
	err error
	at  time.Time
}

func (l *lastError) set(err error) {
	if err == nil || errors.Is(err, net.ErrClosed) {
		return
	}
	l.mu.Lock()
	l.err, l.at = err, time.Now()
	l.mu.Unlock()
}

func (l *lastError) get() (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.at, l.err
}

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (l *lastError) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	l.set(err)
}

// OnBrokerWrite implements kgo.HookBrokerWrite.
func (l *lastError) OnBrokerWrite(_ kgo.BrokerMetadata, _ int16, _ int, _, _ time.Duration, err error) {
	l.set(err)
}

// OnBrokerRead implements kgo.HookBrokerRead.
func (l *lastError) OnBrokerRead(_ kgo.BrokerMetadata, _ int16, _ int, _, _ time.Duration, err error) {
	l.set(err)
}

// kgoLogger passes kgo's warnings and errors to the client's logger; its
// info and debug messages are for debugging kgo.
type kgoLogger struct {
	log    *slog.Logger
	prefix string
}

func (l kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelWarn
	if level == kgo.LogLevelError {
		lvl = slog.LevelError
	} else if level != kgo.LogLevelWarn {
		return
	}
	l.log.Log(context.Background(), lvl, l.prefix+msg, keyvals...)
}

// inflight counts records sent and not yet delivered, by epoch: each Flush
// starts a new epoch and waits for the counts of the epochs before it to
// reach zero. A flush so waits only for the records sent before it, however
// many are sent meanwhile.
type inflight struct {
	mu     sync.Mutex
	epoch  uint64
	counts map[uint64]int
	// zero is closed, and replaced, whenever an epoch's count reaches zero.
	zero chan struct{}
}

func (f *inflight) init() {
	f.counts = make(map[uint64]int)
	f.zero = make(chan struct{})
}

// add counts one record sent and returns its epoch.
func (f *inflight) add() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[f.epoch]++
	return f.epoch
}

// remove counts one record of epoch delivered.
func (f *inflight) remove(epoch uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counts[epoch]--; f.counts[epoch] == 0 {
		delete(f.counts, epoch)
		close(f.zero)
		f.zero = make(chan struct{})
	}
}

// wait returns once every record added before the call is removed.
func (f *inflight) wait(ctx context.Context) error {
	f.mu.Lock()
	last := f.epoch
	f.epoch++
	for {
		pending := false
		for e := range f.counts {
			if e <= last {
				pending = true
				break
			}
		}
		if !pending {
			f.mu.Unlock()
			return nil
		}
		zero := f.zero
		f.mu.Unlock()
		select {
		case <-zero:
		case <-ctx.Done():
			return ctx.Err()
		}
		f.mu.Lock()
	}
}
