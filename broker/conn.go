package broker

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker/internal/auth"
)

// A conn serves one client connection. Its reader goroutine (serve) reads
// and decodes requests and runs each handler's inline part in arrival order,
// so that a client's appends happen in the order it sent them (idempotent
// producers pipeline produce requests and rely on that). A handler that must
// wait (a fetch long poll, a produce waiting for durability) hands the wait
// to a goroutine of its own and the reader moves on to the next request. A
// writer goroutine takes the requests in arrival order from queue, waits for
// each one's result and writes it, so responses leave in request order
// however their handlers interleave, as the protocol requires.
type conn struct {
	b      *Broker
	raw    net.Conn  // as accepted: closing it ends everything
	nc     net.Conn  // what requests are read from and written to: raw, or TLS over it
	lst    *listener // the listener that accepted it
	peer   string
	host   string // the peer's IP address, as ACLs name hosts
	logger *slog.Logger

	// sess is the SASL exchange, nil without SASL. Only the reader
	// goroutine uses it: SaslHandshake and SaslAuthenticate are answered
	// inline, in request order.
	sess *auth.Session
	// principal is who the client is, "User:alice": set by the reader
	// goroutine (after the TLS handshake, after SASL) and read by it when
	// it builds each request's context.
	principal string

	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc
	queue  chan *pending // requests in arrival order, to the writer
	wg     sync.WaitGroup
	once   sync.Once

	// fetching holds a token while a fetch of this connection is being
	// served or its response waits to be written: one fetch at a time, so
	// that pipelined fetches cannot each hold a response of up to
	// MaxFetchBytes. Clients send one fetch per connection at a time
	// anyway.
	fetching chan struct{}

	// inFlight counts requests read and not yet answered (written or
	// dropped): a connection waiting for answers is not idle.
	inFlight atomic.Int32
}

// maxInFlight is how many requests of one connection may be decoded and
// not yet answered; the reader stops reading beyond it, which pushes back
// on a client that pipelines faster than the broker answers. Idempotent
// producers pipeline up to five produce requests; Kafka itself reads one
// request at a time per connection.
const maxInFlight = 16

// pending is a request whose response the writer is waiting for.
type pending struct {
	hdr  requestHeader
	done chan result // receives exactly one result
	// m counts the request once answered, and start is when it arrived, if
	// its latency is measured; m is nil when the broker keeps no metrics.
	m     *apiMetrics
	start time.Time
	// written, if set by the handler (onWritten), runs once the writer is
	// done with the response: written, dropped, or abandoned.
	written func()
}

// pendingKey keys the pending request in its handler's context.
type pendingKey struct{}

// onWritten arranges for fn to run once the response to the request handled
// in ctx has left the writer, for resources the response holds until then.
// It must be called before the handler returns (or, for a handler that
// answers later, before its later part returns). Without a request in ctx
// (a handler called directly) fn runs at once.
func onWritten(ctx context.Context, fn func()) {
	p, _ := ctx.Value(pendingKey{}).(*pending)
	if p == nil {
		fn()
		return
	}
	prev := p.written
	p.written = func() {
		if prev != nil {
			prev()
		}
		fn()
	}
}

// connKey keys the connection in its handlers' contexts.
type connKey struct{}

// connOf returns the connection a request handled in ctx came from, or nil.
func connOf(ctx context.Context) *conn {
	c, _ := ctx.Value(connKey{}).(*conn)
	return c
}

// result is a request's outcome: a response to write, nothing to write
// (resp nil: an acks=0 produce), or an error after which the connection is
// closed. With close set the response is written and then the connection
// is closed. raw, if set instead of resp, is a bare SASL token (after a v0
// SaslHandshake), written as its length and its bytes.
type result struct {
	resp  kmsg.Response
	raw   []byte
	close bool
	err   error
}

// requestHeader is the Kafka request header (v0 to v2).
type requestHeader struct {
	key      int16
	version  int16
	corrID   int32
	clientID *string
	// flexible is set once the request's version is known: flexible
	// requests have header tagged fields, and so do their responses (except
	// ApiVersions responses, whose header is always v0).
	flexible bool
}

func (h requestHeader) apiName() string { return kmsg.NameForKey(h.key) }

func (h requestHeader) client() string {
	if h.clientID == nil {
		return ""
	}
	return *h.clientID
}

// clientKey keys the requesting client's identity in a handler's context.
type clientKey struct{}

// clientInfo identifies the connection and client a request came from.
type clientInfo struct {
	ID        string // the request header's client id
	Host      string // the peer's IP address
	Principal string // who the client authenticated as, "User:alice"; User:ANONYMOUS if it did not
}

// clientOf returns the client that sent the request being handled in ctx.
func clientOf(ctx context.Context) clientInfo {
	ci, _ := ctx.Value(clientKey{}).(clientInfo)
	return ci
}

func newConn(b *Broker, nc net.Conn, l *listener) *conn {
	c := &conn{
		b:     b,
		raw:   nc,
		nc:    nc,
		lst:   l,
		peer:  nc.RemoteAddr().String(),
		host:  peerIP(nc),
		queue: make(chan *pending, maxInFlight),

		principal: auth.Anonymous().String(),

		fetching: make(chan struct{}, 1),
	}
	if b.cfg.SASL {
		c.sess = auth.NewSession(auth.SessionConfig{Users: b.users, AllowPlain: auth.PlainAllowed(l != nil && l.tls != nil, nc.RemoteAddr())})
	}
	c.logger = b.logger.With("peer", c.peer)
	c.ctx, c.cancel = context.WithCancel(b.ctx)
	return c
}

// abort ends the connection: handlers see their context cancelled and both
// goroutines' socket calls fail.
func (c *conn) abort() {
	c.once.Do(func() {
		c.cancel()
		c.raw.Close()
	})
}

// serve runs the connection until the client goes, a request is refused, or
// the broker closes.
func (c *conn) serve() {
	c.logger.Debug("connection opened")
	defer c.logger.Debug("connection closed")
	if c.lst != nil && c.lst.tls != nil {
		if err := c.handshake(); err != nil {
			c.logger.Debug("closing connection: TLS handshake failed", "err", err)
			c.abort()
			return
		}
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	err := c.readLoop()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, errRefused) && !errors.Is(err, errAnswered) {
		c.logger.Debug("connection read failed", "err", err)
	}
	if errors.Is(err, errAnswered) {
		// The last response must reach the client before the connection
		// closes: let the writer finish, within a bound.
		c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		close(c.queue)
		<-writerDone
		c.abort()
	} else {
		c.abort()
		close(c.queue)
		<-writerDone
	}
	c.wg.Wait()
}

// handshake runs the TLS handshake, within RequestReadTimeout (a client
// that connects and says nothing must not hold the connection), and names
// the principal of a verified client certificate when SASL does not name
// one.
func (c *conn) handshake() error {
	tc := tls.Server(c.raw, c.lst.tls)
	ctx, cancel := context.WithTimeout(c.ctx, c.b.cfg.RequestReadTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	c.nc = tc
	if p, ok := auth.PrincipalFromTLS(tc.ConnectionState()); ok && c.sess == nil {
		c.principal = p.String()
	}
	return nil
}

// errRefused ends a connection whose request was refused; the reason was
// logged where it was found.
var errRefused = errors.New("request refused")

// errAnswered ends a connection once its last response is written: a
// failed SASL authentication, which Kafka answers and then closes.
var errAnswered = errors.New("answered and closed")

// minRequestSize is the smallest possible request: api key, api version,
// correlation id and a null client id.
const minRequestSize = 2 + 2 + 4 + 2

// readLoop reads and dispatches requests until an error ends the connection.
func (c *conn) readLoop() error {
	br := bufio.NewReaderSize(c.nc, 64<<10)
	var sizeBuf [4]byte
	for {
		if err := c.awaitRequest(br); err != nil {
			return err
		}
		// The request has started arriving: all of it must arrive within
		// RequestReadTimeout, so that a client trickling bytes (a
		// slowloris) cannot hold the connection and its buffer.
		c.nc.SetReadDeadline(time.Now().Add(c.b.cfg.RequestReadTimeout))
		if _, err := io.ReadFull(br, sizeBuf[:]); err != nil {
			return c.readFailed(err, 4)
		}
		size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
		if c.sess != nil && c.sess.ExpectRawToken() {
			if err := c.rawToken(br, size); err != nil {
				return err
			}
			continue
		}
		if size < minRequestSize || size > c.maxFrame() {
			c.refuseSize(br, size)
			return errRefused
		}
		// The frame's memory comes from the broker's budget, held until
		// the handler's inline part is done with it; a request that finds
		// the budget spent waits here, and so stops reading its
		// connection.
		release, err := c.b.mem.acquire(c.ctx, c.b.mem.frames, int64(size))
		if err != nil {
			return err
		}
		// The wait for budget is the broker's, not the client's: the read
		// deadline starts again.
		c.nc.SetReadDeadline(time.Now().Add(c.b.cfg.RequestReadTimeout))
		frame := make([]byte, size)
		if _, err := io.ReadFull(br, frame); err != nil {
			release()
			return c.readFailed(err, int(size))
		}
		err = c.dispatch(frame)
		release()
		if err != nil {
			return err
		}
	}
}

// maxFrame is the largest request frame the connection accepts now: before
// SASL authentication only the small requests that authenticate are
// allowed, so a stranger cannot make the broker read MaxRequestSize bytes.
func (c *conn) maxFrame() int32 {
	if c.sess != nil && !c.sess.Authenticated() {
		return min(c.b.cfg.MaxRequestSize, preAuthMaxRequestSize)
	}
	return c.b.cfg.MaxRequestSize
}

// preAuthMaxRequestSize bounds a request before authentication: a SASL
// token and its request's header and fields.
const preAuthMaxRequestSize = auth.MaxTokenSize + 4<<10

// rawToken handles a bare SASL token, which follows a v0 SaslHandshake in
// place of SaslAuthenticate requests: size bytes, answered with the token
// back as its length and its bytes, in order with the responses before it.
// A refused token closes the connection unanswered, as in Kafka: raw framing
// cannot say why.
func (c *conn) rawToken(br *bufio.Reader, size int32) error {
	if size < 0 || size > auth.MaxTokenSize {
		c.logger.Warn("closing connection: SASL token size out of bounds", "size", size, "max", auth.MaxTokenSize)
		return errRefused
	}
	tok := make([]byte, size)
	if _, err := io.ReadFull(br, tok); err != nil {
		return c.readFailed(err, int(size))
	}
	out, err := c.sess.RawToken(tok)
	if err != nil {
		c.logger.Info("closing connection: SASL authentication failed", "err", err)
		return errRefused
	}
	c.authenticated()
	p := &pending{done: make(chan result, 1)}
	c.inFlight.Add(1)
	c.queue <- p
	p.done <- result{raw: out}
	return nil
}

// authenticated takes the principal from a SASL session that has just
// authenticated.
func (c *conn) authenticated() {
	if c.sess.Authenticated() {
		if p := c.sess.Principal().String(); p != c.principal {
			c.principal = p
			c.logger.Debug("client authenticated", "principal", p)
		}
	}
}

// awaitRequest waits until the next request starts arriving. A connection
// that sends nothing for ConnectionsMaxIdle while none of its requests is
// being answered is closed; one whose requests are still being answered (a
// long poll, a rebalance) is not idle.
func (c *conn) awaitRequest(br *bufio.Reader) error {
	idle := c.b.cfg.ConnectionsMaxIdle
	for {
		var deadline time.Time
		if idle > 0 {
			deadline = time.Now().Add(idle)
		}
		c.nc.SetReadDeadline(deadline)
		_, err := br.Peek(1)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, os.ErrDeadlineExceeded):
			return err
		case c.inFlight.Load() > 0:
			continue
		}
		c.logger.Debug("closing idle connection", "idle", idle)
		return errRefused
	}
}

// readFailed turns a failure to read a request that had started arriving
// into the connection's end, logging a client too slow to send it.
func (c *conn) readFailed(err error, size int) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.logger.Warn("closing connection: request not received in time",
			"size", size, "request_read_timeout", c.b.cfg.RequestReadTimeout)
		return errRefused
	}
	return fmt.Errorf("read %d-byte request: %w", size, err)
}

// refuseSize logs a frame whose size is out of bounds, naming the API if the
// client sent its key promptly.
func (c *conn) refuseSize(br *bufio.Reader, size int32) {
	api := "unknown"
	if size >= 4 {
		// The header is normally already buffered; don't let a client that
		// stops sending hold the connection open.
		c.nc.SetReadDeadline(time.Now().Add(time.Second))
		if b, err := br.Peek(4); err == nil {
			key, version := int16(binary.BigEndian.Uint16(b)), int16(binary.BigEndian.Uint16(b[2:]))
			api = fmt.Sprintf("%s v%d", kmsg.NameForKey(key), version)
		}
	}
	c.logger.Warn("closing connection: request size out of bounds",
		"api", api, "size", size, "min", minRequestSize, "max", c.b.cfg.MaxRequestSize)
}

// parseRequestHeader reads the header fields common to every header version
// and returns the rest of the frame.
func parseRequestHeader(b []byte) (requestHeader, []byte, error) {
	var h requestHeader
	if len(b) < minRequestSize {
		return h, nil, fmt.Errorf("request header: %d bytes is too short", len(b))
	}
	be := binary.BigEndian
	h.key = int16(be.Uint16(b))
	h.version = int16(be.Uint16(b[2:]))
	h.corrID = int32(be.Uint32(b[4:]))
	n := int(int16(be.Uint16(b[8:])))
	b = b[10:]
	switch {
	case n == -1:
	case n < 0 || n > len(b):
		return h, nil, fmt.Errorf("request header: client id length %d with %d bytes left", n, len(b))
	default:
		id := string(b[:n])
		h.clientID = &id
		b = b[n:]
	}
	return h, b, nil
}

// skipTags skips a tagged field section (KIP-482): an unsigned varint count,
// then per field an unsigned varint tag, an unsigned varint size and that
// many bytes. The request header defines no tags, so all are skipped.
func skipTags(b []byte) ([]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errors.New("tagged fields: bad count")
	}
	b = b[k:]
	if n > uint64(len(b)) {
		return nil, fmt.Errorf("tagged fields: %d fields in %d bytes", n, len(b))
	}
	for range n {
		if _, k = binary.Uvarint(b); k <= 0 {
			return nil, errors.New("tagged fields: bad tag")
		}
		b = b[k:]
		size, k := binary.Uvarint(b)
		if k <= 0 || size > uint64(len(b)-k) {
			return nil, errors.New("tagged fields: bad size")
		}
		b = b[k+int(size):]
	}
	return b, nil
}

// dispatch decodes one request frame, queues it for the writer and runs its
// handler. An error ends the connection.
func (c *conn) dispatch(frame []byte) error {
	hdr, body, err := parseRequestHeader(frame)
	if err != nil {
		c.logger.Warn("closing connection: malformed request", "api", hdr.apiName(), "version", hdr.version, "err", err)
		return errRefused
	}
	if c.sess != nil && !c.sess.Allows(hdr.key) {
		// Kafka closes a connection that sends anything else before it
		// has authenticated, or after its session expired.
		c.logger.Info("closing connection: request before SASL authentication",
			"api", hdr.apiName(), "version", hdr.version, "client_id", hdr.client())
		return errRefused
	}
	a := c.b.apis[hdr.key]
	m := c.b.metrics.api(hdr.key) // nil without metrics or without a
	start := m.now()
	if a == nil || hdr.version < a.min || hdr.version > a.max {
		if a != nil && hdr.key == kmsg.ApiVersions.Int16() && hdr.version > a.max {
			// KIP-511: answer a too-new ApiVersions in the v0 format with
			// UNSUPPORTED_VERSION and our versions, so the client can
			// retry with one we know.
			m.read(len(frame))
			c.enqueue(hdr, m, start).done <- result{resp: c.b.apiVersionsFallback()}
			return nil
		}
		c.logger.Warn("closing connection: unsupported API or version",
			"api", hdr.apiName(), "key", hdr.key, "version", hdr.version, "client_id", hdr.client())
		return errRefused
	}
	req := kmsg.RequestForKey(hdr.key)
	req.SetVersion(hdr.version)
	hdr.flexible = req.IsFlexible()
	if hdr.flexible {
		if body, err = skipTags(body); err != nil {
			c.logger.Warn("closing connection: malformed request header",
				"api", hdr.apiName(), "version", hdr.version, "client_id", hdr.client(), "err", err)
			return errRefused
		}
	}
	if err := req.ReadFrom(body); err != nil {
		c.logger.Warn("closing connection: malformed request",
			"api", hdr.apiName(), "version", hdr.version, "client_id", hdr.client(), "err", err)
		return errRefused
	}

	m.read(len(frame))
	ci := clientInfo{ID: hdr.client(), Host: c.host, Principal: c.principal}
	if c.b.acls != nil && a.guard == nil && !c.b.acls.IsSuperUser(ci.Principal) {
		// An API the authorization table does not cover is for super
		// users only.
		c.logger.Warn("closing connection: API not authorized", "api", hdr.apiName(), "principal", ci.Principal)
		return errRefused
	}
	p := c.enqueue(hdr, m, start)
	ctx := context.WithValue(c.ctx, clientKey{}, ci)
	ctx = context.WithValue(ctx, connKey{}, c)
	ctx = context.WithValue(ctx, pendingKey{}, p)
	ans, err := c.run(hdr, func() answer { return c.b.serveAuthorized(ctx, a, ci, req) })
	if c.sess != nil && (hdr.key == kmsg.SASLAuthenticate.Int16() || hdr.key == kmsg.SASLHandshake.Int16()) {
		c.authenticated()
	}
	switch {
	case err != nil:
		p.finish(nil, err)
		return errRefused
	case ans.close:
		p.finishThenClose(ans.resp)
		return errAnswered
	case ans.later != nil:
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			var resp kmsg.Response
			_, err := c.run(hdr, func() answer {
				resp = ans.later(ctx)
				return answer{}
			})
			p.finish(resp, err)
		}()
	default:
		p.finish(ans.resp, ans.err)
	}
	return ans.err
}

// enqueue hands a request to the writer, which writes its result once it
// is sent on done (see finish) and counts it in m. It blocks while too many
// requests are in flight.
func (c *conn) enqueue(hdr requestHeader, m *apiMetrics, start time.Time) *pending {
	p := &pending{hdr: hdr, done: make(chan result, 1), m: m, start: start}
	c.inFlight.Add(1)
	c.queue <- p
	return p
}

// finish hands the writer a handler's outcome: resp, given the request's
// version, or err, which closes the connection. A request answered by
// closing the connection is counted here rather than by the writer, because
// the reader may close the connection first, and a client that sees it
// closed should find it counted.
func (p *pending) finish(resp kmsg.Response, err error) {
	if err != nil {
		p.m.closed(p.start)
		p.done <- result{err: err}
		return
	}
	if resp != nil {
		resp.SetVersion(p.hdr.version)
	}
	p.done <- result{resp: resp}
}

// finishThenClose hands the writer resp, after which it closes the
// connection.
func (p *pending) finishThenClose(resp kmsg.Response) {
	resp.SetVersion(p.hdr.version)
	p.done <- result{resp: resp, close: true}
}

// run calls fn, turning a panic into an error so that a handler bug costs
// one connection, not the broker.
func (c *conn) run(hdr requestHeader, fn func() answer) (ans answer, err error) {
	defer func() {
		if v := recover(); v != nil {
			c.logger.Error("handler panicked; closing connection",
				"api", hdr.apiName(), "version", hdr.version, "client_id", hdr.client(),
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = fmt.Errorf("%s handler panicked: %v", hdr.apiName(), v)
		}
	}()
	return fn(), nil
}

// writeLoop writes responses in request order until the queue closes. After
// a failure it keeps draining the queue, so that handlers never block, but
// writes nothing more.
func (c *conn) writeLoop() {
	lw := &loopWriter{c: c, w: bufio.NewWriterSize(c.nc, 64<<10)}
	for p := range c.queue {
		lw.write(p, <-p.done)
		if p.written != nil {
			p.written()
		}
		c.inFlight.Add(-1)
	}
	if !lw.failed {
		lw.w.Flush()
	}
}

// loopWriter is the writer goroutine's state.
type loopWriter struct {
	c      *conn
	w      *bufio.Writer
	buf    []byte
	failed bool // a write failed or a handler closed the connection
}

// write writes one request's result, unless an earlier one failed.
func (lw *loopWriter) write(p *pending, r result) {
	c := lw.c
	switch {
	case lw.failed:
		return
	case r.err != nil:
		lw.failed = true
		lw.w.Flush() // what was answered before still reaches the client
		c.abort()
		return
	case r.raw != nil:
		lw.buf = binary.BigEndian.AppendUint32(lw.buf[:0], uint32(len(r.raw)))
		lw.buf = append(lw.buf, r.raw...)
		_, err := lw.w.Write(lw.buf)
		if err == nil {
			err = lw.w.Flush()
		}
		if err != nil {
			c.writeFailed(p.hdr, err)
			lw.failed = true
		}
		return
	case r.resp == nil:
		p.m.answered(p.start, nil, 0)
		return
	}
	lw.buf = appendResponse(lw.buf[:0], p.hdr, r.resp)
	// Counted before the write, so that a client that has its response
	// also sees it counted.
	p.m.answered(p.start, r.resp, len(lw.buf))
	if _, err := lw.w.Write(lw.buf); err != nil {
		c.writeFailed(p.hdr, err)
		lw.failed = true
		return
	}
	if cap(lw.buf) > 1<<20 {
		lw.buf = nil // don't pin a large fetch response's buffer
	}
	if r.close {
		// The last response: written now, and nothing after it.
		lw.w.Flush()
		lw.failed = true
		return
	}
	// Flush when no response is ready behind this one, so that
	// pipelined responses share writes.
	if len(c.queue) == 0 {
		if err := lw.w.Flush(); err != nil {
			c.writeFailed(p.hdr, err)
			lw.failed = true
		}
	}
}

func (c *conn) writeFailed(hdr requestHeader, err error) {
	if c.ctx.Err() == nil {
		c.logger.Debug("closing connection: write failed", "api", hdr.apiName(), "err", err)
	}
	c.abort()
}

// appendResponse appends the framed response to dst: size, correlation id,
// the header's tagged fields for flexible versions (never for ApiVersions,
// whose response header is always v0 so that any client can read it), then
// the body.
func appendResponse(dst []byte, hdr requestHeader, resp kmsg.Response) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(hdr.corrID))
	if hdr.flexible && hdr.key != kmsg.ApiVersions.Int16() {
		dst = append(dst, 0) // no tagged fields
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}
