package kafka

import (
	"context"
	"fmt"
	"sync"

	"github.com/IBM/sarama"
)

// producer is the Client's asynchronous producer: a sarama AsyncProducer on
// a sarama client of its own, and one goroutine that turns sarama's
// successes and errors into done calls.
type producer struct {
	client sarama.Client
	ap     sarama.AsyncProducer

	// mu guards closed: Send holds it shared while it hands a message to
	// sarama, so that close never closes sarama's input under a Send.
	mu     sync.RWMutex
	closed bool

	flights  inflight
	drained  chan struct{} // closed when deliver returns
	closeErr error
}

// send is one record on its way: sarama's message, with what deliver needs
// to report it carried in the message's Metadata.
type send struct {
	msg   sarama.ProducerMessage
	rec   *Record
	done  func(*Record, error)
	epoch uint64
}

func newProducer(ctx context.Context, cfg Config) (*producer, error) {
	client, err := newSaramaClient(ctx, cfg.Brokers, cfg.saramaProducer())
	if err != nil {
		return nil, fmt.Errorf("kafka: connect producer: %w", err)
	}
	// With idempotence, creating the producer fetches a producer id.
	ap, err := call(ctx, func() (sarama.AsyncProducer, error) { return sarama.NewAsyncProducerFromClient(client) })
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("kafka: producer: %w", err)
	}
	p := &producer{client: client, ap: ap, drained: make(chan struct{})}
	p.flights.init()
	go p.deliver()
	return p, nil
}

// Send implements Producer.
func (c *Client) Send(r *Record, done func(*Record, error)) { c.prod.send(r, done) }

// Flush implements Producer.
func (c *Client) Flush(ctx context.Context) error { return c.prod.flush(ctx) }

func (p *producer) send(r *Record, done func(*Record, error)) {
	s := &send{rec: r, done: done}
	s.msg = sarama.ProducerMessage{
		Topic:     r.Topic,
		Partition: r.Partition,
		Headers:   saramaHeaders(r.Headers),
		Timestamp: r.Timestamp,
		Metadata:  s,
	}
	// A nil encoder, not an encoder of nil, is what makes a null key or a
	// null value (a tombstone) on the wire.
	if r.Key != nil {
		s.msg.Key = sarama.ByteEncoder(r.Key)
	}
	if r.Value != nil {
		s.msg.Value = sarama.ByteEncoder(r.Value)
	}

	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		done(r, ErrClosed)
		return
	}
	s.epoch = p.flights.add()
	p.ap.Input() <- &s.msg
	p.mu.RUnlock()
}

// deliver reports every message sarama returns, until sarama has returned
// them all after close.
func (p *producer) deliver() {
	defer close(p.drained)
	successes, errs := p.ap.Successes(), p.ap.Errors()
	for successes != nil || errs != nil {
		select {
		case m, ok := <-successes:
			if !ok {
				successes = nil
				continue
			}
			s := m.Metadata.(*send)
			s.rec.Offset = m.Offset
			s.done(s.rec, nil)
			p.flights.remove(s.epoch)
		case pe, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			s := pe.Msg.Metadata.(*send)
			s.done(s.rec, fmt.Errorf("kafka: produce to %s/%d: %w", s.rec.Topic, s.rec.Partition, pe.Err))
			p.flights.remove(s.epoch)
		}
	}
}

func (p *producer) flush(ctx context.Context) error {
	if err := p.flights.wait(ctx); err != nil {
		return fmt.Errorf("kafka: flush: %w", err)
	}
	return nil
}

// close stops taking records, waits until sarama has delivered or failed
// every record already sent, and closes the producer's connections.
func (p *producer) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.drained
		return p.closeErr
	}
	p.closed = true
	p.mu.Unlock()
	// AsyncClose, not Close: Close would drain the successes and errors
	// itself, and deliver would miss done calls.
	p.ap.AsyncClose()
	<-p.drained
	p.closeErr = p.client.Close()
	return p.closeErr
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
