package kafka

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// sender sends numbered records round-robin to the partitions of a topic,
// one every few milliseconds, from a goroutine, and keeps what became of
// each: a steady stream through whatever the test does to the broker.
type sender struct {
	c     *Client
	topic string
	stop  chan struct{}
	ended chan struct{}

	mu      sync.Mutex
	sent    [][]*Record // by partition, in the order of sending
	results map[*Record][]error
	acked   int
}

func startSender(t *testing.T, c *Client, topic string, partitions int32) *sender {
	s := &sender{c: c, topic: topic, stop: make(chan struct{}), ended: make(chan struct{}),
		sent: make([][]*Record, partitions), results: map[*Record][]error{}}
	go func() {
		defer close(s.ended)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			p := int32(i) % partitions
			r := &Record{Topic: topic, Partition: p, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "%d", i)}
			s.mu.Lock()
			s.sent[p] = append(s.sent[p], r)
			s.mu.Unlock()
			c.Send(r, s.done)
		}
	}()
	t.Cleanup(s.halt)
	return s
}

func (s *sender) done(r *Record, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results[r] = append(s.results[r], err)
	if err == nil {
		s.acked++
	}
}

// halt stops sending; records sent are still on their way.
func (s *sender) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.ended
}

func (s *sender) count() (sent, acked int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, recs := range s.sent {
		sent += len(recs)
	}
	return sent, s.acked
}

// awaitAcked waits until n records are acknowledged.
func (s *sender) awaitAcked(t *testing.T, n int) {
	t.Helper()
	await(t, fmt.Sprintf("%d records acknowledged", n), func() bool {
		_, acked := s.count()
		return acked >= n
	})
}

// awaitSent waits until n records are sent.
func (s *sender) awaitSent(t *testing.T, n int) {
	t.Helper()
	await(t, fmt.Sprintf("%d records sent", n), func() bool {
		sent, _ := s.count()
		return sent >= n
	})
}

// readValues reads partition p of topic from 0 to its high watermark and
// returns the values.
func readValues(t *testing.T, c *Client, topic string, p int32) []string {
	t.Helper()
	ctx := ctxFor(t)
	_, hw, err := c.Offsets(ctx, topic, p)
	if err != nil {
		t.Fatal(err)
	}
	_, vals, err := readAll(ctx, c, topic, p, 0, hw)
	if err != nil {
		t.Fatalf("read %s/%d: %v", topic, p, err)
	}
	return vals
}
