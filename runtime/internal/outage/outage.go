// Package outage runs the bundled log behind a TCP proxy that tests of the
// runtime and its client cut, mute or bounce, to see what a broker outage
// does to them: clients know only the proxy's address, so an outage is a
// fact of the test, not a race for a port.
package outage

import (
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/runnel-io/runnel/broker"
)

// Broker is the bundled log behind a TCP proxy that a test can cut:
// clients know only the proxy's address (the broker advertises it), so a
// broker restarted on another port is the same cluster to them, and an
// outage is a fact of the test, not a race for a port.
type Broker struct {
	t   testing.TB
	log *slog.Logger
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

// Start starts a broker, logging to log (nil: nowhere), and its proxy,
// both closed when the test ends, and returns them; Addr is what clients
// connect to.
func Start(t testing.TB, log *slog.Logger) *Broker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	o := &Broker{t: t, log: log, dir: t.TempDir(), ln: ln, conns: map[net.Conn]struct{}{}}
	o.startBroker()
	o.wg.Add(1)
	go o.accept()
	t.Cleanup(o.close)
	return o
}

// Addr is the proxy's address, the only one clients learn.
func (o *Broker) Addr() string { return o.ln.Addr().String() }

func (o *Broker) startBroker() {
	o.t.Helper()
	b, err := broker.Start(o.t.Context(), broker.Config{
		Addr:                       "127.0.0.1:0",
		AdvertisedAddr:             o.Addr(),
		Dir:                        o.dir,
		GroupInitialRebalanceDelay: -1,
		Logger:                     o.log,
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
func (o *Broker) Cut() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.down = true
	for c := range o.conns {
		c.Close()
	}
}

// Stop cuts the clients off and stops the broker, which a later Restart
// starts again on the same data directory.
func (o *Broker) Stop() {
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
func (o *Broker) Restart() {
	o.t.Helper()
	o.startBroker()
	o.Restore()
}

// Bounce stops the broker and starts it again after d: an outage of d.
func (o *Broker) Bounce(d time.Duration) {
	o.t.Helper()
	o.Stop()
	time.Sleep(d) // the outage itself, not a wait for an event
	o.Restart()
}

// Restore lets clients connect again, and their answers through.
func (o *Broker) Restore() {
	o.mu.Lock()
	o.down, o.mute = false, false
	o.mu.Unlock()
}

// Mute drops the broker's answers from now on, while requests still reach
// it: what a client sends meanwhile is done, and it never learns so.
func (o *Broker) Mute() {
	o.mu.Lock()
	o.mute = true
	o.mu.Unlock()
}

// LogEnd returns the log end offset of topic/partition as the broker's
// storage has it, for a test that looks at the log during an outage.
func (o *Broker) LogEnd(topic string, partition int32) int64 {
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

func (o *Broker) muted() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mute
}

func (o *Broker) close() {
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

func (o *Broker) accept() {
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
func (o *Broker) forward(c net.Conn, target string) {
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
