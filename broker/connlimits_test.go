package broker

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// dialFrom connects to b from the loopback address local (Linux routes all
// of 127/8 to the loopback), so that a test can play several client IPs.
func dialFrom(t *testing.T, b *Broker, local string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatalf("dial from %s: %v", local, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return c
}

// servedOrRefused sends an ApiVersions request on c and reports whether it
// was answered (true) or the connection closed (false).
func servedOrRefused(t *testing.T, c net.Conn) bool {
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(0)
	f := kmsg.NewRequestFormatter()
	if _, err := c.Write(f.AppendRequest(nil, req, 1)); err != nil {
		return false // refused: closed before we wrote
	}
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("neither answered nor closed: %v", err)
		}
		return false
	}
	if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(size[:]))); err != nil {
		t.Errorf("read ApiVersions response: %v", err)
	}
	return true
}

// awaitClosed waits until the broker closes c.
func awaitClosed(t *testing.T, c net.Conn) {
	_, err := bufio.NewReader(c).ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("connection from %s still open: %v", c.LocalAddr(), err)
	}
}

// TestConnectionLimits attacks the broker with slowloris connections, 1,500
// connections from one IP and 300 from another, while a franz-go client
// that connected first produces and consumes. Partial requests are cut off
// after RequestReadTimeout; each IP gets MaxConnectionsPerIP connections
// and all of them together MaxConnections; refusals are logged at most once
// a second; idle connections are closed after ConnectionsMaxIdle, after
// which new clients are served again; and every acknowledged record reads
// back.
func TestConnectionLimits(t *testing.T) {
	const maxConns, perIP = 300, 200
	logs := &logBuffer{}
	b := startBroker(t, "", withLogs(logs), func(c *Config) {
		c.MaxConnections, c.MaxConnectionsPerIP = maxConns, perIP
		c.ConnectionsMaxIdle = 3 * time.Second
		c.RequestReadTimeout = 300 * time.Millisecond
	})
	createTopic(t, b, "steady", 1)
	cl := newKgo(t, b, kgo.DefaultProduceTopic("steady"),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"steady": {0: kgo.NewOffset().AtStart()}}))
	var produced []*kgo.Record
	var consumed int
	exchange := func(n int) {
		t.Helper()
		ctx := ctxFor(t)
		var recs []*kgo.Record
		for i := range n {
			recs = append(recs, &kgo.Record{Value: []byte{byte(len(produced) + i)}})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce during the attack: %v", err)
		}
		produced = append(produced, recs...)
		for consumed < len(produced) {
			fs := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				t.Fatalf("consume during the attack: %v", err)
			}
			for _, r := range fs.Records() {
				if r.Value[0] != produced[consumed].Value[0] {
					t.Fatalf("record %d: %v, want %v", consumed, r.Value, produced[consumed].Value)
				}
				consumed++
			}
		}
	}
	exchange(5) // the client's connections are open before the attack
	start := time.Now()

	// Slowloris: half a size, and a size with half a frame.
	var slow []net.Conn
	for i := range 50 {
		c := dialFrom(t, b, "127.0.0.4")
		if i%2 == 0 {
			c.Write([]byte{0, 0})
		} else {
			c.Write([]byte{0, 0, 0, 100, 0, 18})
		}
		slow = append(slow, c)
	}
	for _, c := range slow {
		awaitClosed(t, c)
	}
	if _, ok := findLine(logs.String(), "request not received in time"); !ok {
		t.Error("no log line for the slowloris connections")
	}
	exchange(5)

	attack := func(ip string, n int) (conns []net.Conn, served int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		var ok atomic.Int32
		for range n {
			c := dialFrom(t, b, ip)
			wg.Go(func() {
				if servedOrRefused(t, c) {
					ok.Add(1)
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return conns, int(ok.Load())
	}
	a, servedA := attack("127.0.0.2", 1500)
	exchange(5)
	bconns, servedB := attack("127.0.0.3", 300)
	exchange(5)
	if servedA != perIP {
		t.Errorf("%d connections from one IP served, want %d (MaxConnectionsPerIP)", servedA, perIP)
	}
	if servedA+servedB >= maxConns || servedB == 0 {
		t.Errorf("%d and %d connections served from two IPs, want fewer than %d together (MaxConnections, with the client's)", servedA, servedB, maxConns)
	}
	if n := strings.Count(logs.String(), "refusing connections over the limit"); n < 1 || n > int(time.Since(start)/time.Second)+1 {
		t.Errorf("%d refusal log lines in %s, want 1 to one a second", n, time.Since(start))
	}
	if _, ok := findLine(logs.String(), "refusing connections", "limit=max-connections-per-ip", "peer_ip=127.0.0.2"); !ok {
		t.Error("no log line names the per-IP limit")
	}

	// Idle connections go, and their slots with them.
	for _, c := range append(a, bconns...) {
		awaitClosed(t, c)
	}
	exchange(5)
	if _, served := attack("127.0.0.5", 10); served != 10 {
		t.Errorf("%d of 10 new connections served after the idle ones closed", served)
	}
	consumeKgo(t, b, "steady", []int32{0}, len(produced))
}
