package kafka

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/runnel-io/runnel/broker"
)

// outageBroker is the bundled log behind a TCP proxy that a test can cut:
// clients know only the proxy's address (the broker advertises it), so a
// broker restarted on another port is the same cluster to them, and an
// outage is a fact of the test, not a race for a port.
type outageBroker struct {
	t   *testing.T
	dir string
	ln  net.Listener

	mu     sync.Mutex
	b      *broker.Broker // nil while stopped
	down   bool
	mute   bool // the broker's answers are dropped
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// startOutageBroker starts a broker and its proxy, both closed when the
// test ends, and returns them; Addr is what clients connect to.
func startOutageBroker(t *testing.T) *outageBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	o := &outageBroker{t: t, dir: t.TempDir(), ln: ln, conns: map[net.Conn]struct{}{}}
	o.startBroker()
	o.wg.Add(1)
	go o.accept()
	t.Cleanup(o.close)
	return o
}

// Addr is the proxy's address, the only one clients learn.
func (o *outageBroker) Addr() string { return o.ln.Addr().String() }

func (o *outageBroker) startBroker() {
	o.t.Helper()
	b, err := broker.Start(o.t.Context(), broker.Config{
		Addr:                       "127.0.0.1:0",
		AdvertisedAddr:             o.Addr(),
		Dir:                        o.dir,
		GroupInitialRebalanceDelay: -1,
		Logger:                     testLogger(o.t),
	})
	if err != nil {
		o.t.Fatalf("start broker: %v", err)
	}
	o.mu.Lock()
	o.b = b
	o.mu.Unlock()
}

// Cut drops every connection and refuses new ones until Restore: to the
// clients the broker is gone. A request the broker took just before may
// have been done with its answer lost.
func (o *outageBroker) Cut() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.down = true
	for c := range o.conns {
		c.Close()
	}
}

// Stop cuts the clients off and stops the broker, which a later Restart
// starts again on the same data directory.
func (o *outageBroker) Stop() {
	o.t.Helper()
	o.Cut()
	o.mu.Lock()
	b := o.b
	o.b = nil
	o.mu.Unlock()
	if err := b.Close(); err != nil {
		o.t.Fatalf("stop broker: %v", err)
	}
}

// Restart starts the stopped broker again and lets clients back in.
func (o *outageBroker) Restart() {
	o.t.Helper()
	o.startBroker()
	o.Restore()
}

// Bounce stops the broker and starts it again after d: an outage of d.
func (o *outageBroker) Bounce(d time.Duration) {
	o.t.Helper()
	o.Stop()
	time.Sleep(d) // the outage itself, not a wait for an event
	o.Restart()
}

// Restore lets clients connect again, and their answers through.
func (o *outageBroker) Restore() {
	o.mu.Lock()
	o.down, o.mute = false, false
	o.mu.Unlock()
}

// Mute drops the broker's answers from now on, while requests still reach
// it: what a client sends meanwhile is done, and it never learns so.
func (o *outageBroker) Mute() {
	o.mu.Lock()
	o.mute = true
	o.mu.Unlock()
}

// LogEnd returns the log end offset of topic/partition as the broker's
// storage has it, for a test that looks at the log during an outage.
func (o *outageBroker) LogEnd(topic string, partition int32) int64 {
	o.t.Helper()
	o.mu.Lock()
	b := o.b
	o.mu.Unlock()
	p, err := b.Log().Partition(topic, partition)
	if err != nil {
		o.t.Fatal(err)
	}
	return p.LogEndOffset()
}

func (o *outageBroker) muted() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mute
}

func (o *outageBroker) close() {
	o.mu.Lock()
	o.closed = true
	b := o.b
	o.b = nil
	for c := range o.conns {
		c.Close()
	}
	o.mu.Unlock()
	o.ln.Close()
	o.wg.Wait()
	if b != nil {
		if err := b.Close(); err != nil {
			o.t.Errorf("close broker: %v", err)
		}
	}
}

func (o *outageBroker) accept() {
	defer o.wg.Done()
	for {
		c, err := o.ln.Accept()
		if err != nil {
			return
		}
		o.mu.Lock()
		if o.down || o.closed || o.b == nil {
			o.mu.Unlock()
			c.Close()
			continue
		}
		target := o.b.Addr()
		o.conns[c] = struct{}{}
		o.wg.Add(1)
		o.mu.Unlock()
		go o.forward(c, target)
	}
}

// forward pipes c to the broker at target both ways until either side ends
// or Cut closes c.
func (o *outageBroker) forward(c net.Conn, target string) {
	defer o.wg.Done()
	defer func() {
		o.mu.Lock()
		delete(o.conns, c)
		o.mu.Unlock()
		c.Close()
	}()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	o.mu.Lock()
	if o.down || o.closed {
		o.mu.Unlock()
		up.Close()
		return
	}
	o.conns[up] = struct{}{}
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		delete(o.conns, up)
		o.mu.Unlock()
		up.Close()
	}()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn, drop func() bool) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 && !drop() {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		// Either side ending ends both, as a broker's death would.
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(up, c, func() bool { return false })
	go pipe(c, up, o.muted)
	<-done
	<-done
}

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
