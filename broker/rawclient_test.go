package broker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawClient speaks the Kafka protocol over one TCP connection with no
// client library in between, to test framing, pipelining and refusals.
type rawClient struct {
	t    *testing.T
	c    net.Conn
	br   *bufio.Reader
	corr int32
	f    *kmsg.RequestFormatter
}

func dialRaw(t *testing.T, b *Broker) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	// Bounds every read, so that a missing response fails the test.
	c.SetDeadline(time.Now().Add(testTimeout))
	return &rawClient{t: t, c: c, br: bufio.NewReader(c), f: kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw-test"))}
}

// send writes req at its set version and returns its correlation id.
func (r *rawClient) send(req kmsg.Request) int32 {
	r.t.Helper()
	r.corr++
	r.write(r.f.AppendRequest(nil, req, r.corr))
	return r.corr
}

func (r *rawClient) write(frame []byte) {
	r.t.Helper()
	if _, err := r.c.Write(frame); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// recv reads the response to req and checks its correlation id.
func (r *rawClient) recv(req kmsg.Request, corr int32) kmsg.Response {
	r.t.Helper()
	frame, err := r.readFrame()
	if err != nil {
		r.t.Fatalf("read response to %s: %v", kmsg.NameForKey(req.Key()), err)
	}
	if got := int32(binary.BigEndian.Uint32(frame)); got != corr {
		r.t.Fatalf("response correlation id %d, want %d (%s)", got, corr, kmsg.NameForKey(req.Key()))
	}
	body := frame[4:]
	if req.IsFlexible() && req.Key() != kmsg.ApiVersions.Int16() {
		if body, err = skipTags(body); err != nil {
			r.t.Fatalf("response header: %v", err)
		}
	}
	resp := req.ResponseKind()
	if err := resp.ReadFrom(body); err != nil {
		r.t.Fatalf("decode %s response: %v", kmsg.NameForKey(req.Key()), err)
	}
	return resp
}

func (r *rawClient) roundTrip(req kmsg.Request) kmsg.Response {
	r.t.Helper()
	return r.recv(req, r.send(req))
}

func (r *rawClient) readFrame() ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r.br, size[:]); err != nil {
		return nil, err
	}
	frame := make([]byte, binary.BigEndian.Uint32(size[:]))
	_, err := io.ReadFull(r.br, frame)
	return frame, err
}

// expectClosed waits for the broker to close the connection, failing if a
// response arrives instead.
func (r *rawClient) expectClosed() {
	r.t.Helper()
	frame, err := r.readFrame()
	if err == nil {
		r.t.Fatalf("got a %d-byte response, want the connection closed", len(frame))
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatalf("connection still open: %v", err)
	}
}

// logBuffer collects a broker's logs for tests to search.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// withLogs makes the broker log into l.
func withLogs(l *logBuffer) func(*Config) {
	return func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// findLine returns the first log line containing every one of parts.
func findLine(logs string, parts ...string) (string, bool) {
	for line := range strings.Lines(logs) {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return line, true
		}
	}
	return "", false
}
