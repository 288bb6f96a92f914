package runtime_test

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/runnel-io/runnel/broker"
)

// faultProxy forwards TCP connections to a broker and can cut them: Cut
// closes every connection and refuses new ones until Heal, as a broker
// that went away and came back would look to its clients, without
// restarting the broker.
type faultProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startCuttableLog starts the bundled log behind a faultProxy: the log
// advertises the proxy's address, so that clients reach it only through
// the proxy. Both close when the test ends.
func startCuttableLog(t *testing.T) (*faultProxy, []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, conns: map[net.Conn]struct{}{}}
	b, err := broker.Start(t.Context(), broker.Config{Addr: "127.0.0.1:0", AdvertisedAddr: ln.Addr().String(), Dir: t.TempDir(), GroupInitialRebalanceDelay: -1})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	p.target = b.Addr()
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
		b.Close()
	})
	return p, []string{ln.Addr().String()}
}

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			// It ends at a cut or at either side's close: both ends go.
			io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Go(func() { pipe(up, c) })
		p.wg.Go(func() { pipe(c, up) })
	}
}

// Cut closes every connection and refuses new ones until Heal.
func (p *faultProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

// Heal accepts connections again.
func (p *faultProxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}
