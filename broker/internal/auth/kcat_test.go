package auth

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// saslServer is a minimal Kafka listener for interoperability tests: it
// answers ApiVersions, SaslHandshake, SaslAuthenticate (or the raw tokens of
// a v0 handshake) and, once the Session allows it, Metadata naming itself,
// so that a real client can authenticate and list metadata. It records what
// the client used.
type saslServer struct {
	t     *testing.T
	users *Users
	ln    net.Listener
	port  int32

	mu   sync.Mutex
	seen []string // "SaslHandshake v1 SCRAM-SHA-256", "raw token", "authenticated User:alice", ...
}

func startSASLServer(t *testing.T, users *Users) *saslServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &saslServer{t: t, users: users, ln: ln, port: int32(ln.Addr().(*net.TCPAddr).Port)}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				s.serve(c)
			}()
		}
	}()
	return s
}

func (s *saslServer) note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, fmt.Sprintf(format, args...))
}

func (s *saslServer) events() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.seen, "; ")
}

func (s *saslServer) serve(c net.Conn) {
	sess := NewSession(SessionConfig{Users: s.users, AllowPlain: PlainAllowed(false, c.RemoteAddr())})
	br := bufio.NewReader(c)
	for {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		var size [4]byte
		if _, err := io.ReadFull(br, size[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(size[:])
		if n > MaxTokenSize {
			return
		}
		frame := make([]byte, n)
		if _, err := io.ReadFull(br, frame); err != nil {
			return
		}
		if sess.ExpectRawToken() {
			out, err := sess.RawToken(frame)
			s.note("raw token")
			if err != nil {
				s.note("raw failure: %v", err)
				return
			}
			if sess.Authenticated() {
				s.note("authenticated %s", sess.Principal())
			}
			c.Write(binary.BigEndian.AppendUint32(nil, uint32(len(out))))
			c.Write(out)
			continue
		}
		if err := s.request(c, sess, frame); err != nil {
			s.note("closed: %v", err)
			return
		}
	}
}

func (s *saslServer) request(c net.Conn, sess *Session, frame []byte) error {
	if len(frame) < 10 {
		return errors.New("short frame")
	}
	key, version := int16(binary.BigEndian.Uint16(frame)), int16(binary.BigEndian.Uint16(frame[2:]))
	corr := binary.BigEndian.Uint32(frame[4:])
	idLen := int(int16(binary.BigEndian.Uint16(frame[8:])))
	body := frame[10:]
	if idLen > 0 {
		body = body[idLen:]
	}
	req := kmsg.RequestForKey(key)
	if req == nil {
		return fmt.Errorf("unknown key %d", key)
	}
	req.SetVersion(version)
	if req.IsFlexible() {
		var err error
		if body, err = skipTagSection(body); err != nil {
			return err
		}
	}
	if err := req.ReadFrom(body); err != nil {
		return fmt.Errorf("decode %s v%d: %w", kmsg.NameForKey(key), version, err)
	}
	if !sess.Allows(key) {
		return fmt.Errorf("%s before authentication", kmsg.NameForKey(key))
	}
	var resp kmsg.Response
	closeAfter := false
	switch r := req.(type) {
	case *kmsg.ApiVersionsRequest:
		s.note("ApiVersions v%d", version)
		ar := r.ResponseKind().(*kmsg.ApiVersionsResponse)
		for _, k := range []struct{ key, min, max int16 }{{18, 0, 3}, {3, 0, 4}, {17, 0, 1}, {36, 0, 2}} {
			ak := kmsg.NewApiVersionsResponseApiKey()
			ak.ApiKey, ak.MinVersion, ak.MaxVersion = k.key, k.min, k.max
			ar.ApiKeys = append(ar.ApiKeys, ak)
		}
		resp = ar
	case *kmsg.SASLHandshakeRequest:
		s.note("SaslHandshake v%d %s", version, r.Mechanism)
		resp, closeAfter = sess.Handshake(r)
	case *kmsg.SASLAuthenticateRequest:
		s.note("SaslAuthenticate v%d", version)
		var ar *kmsg.SASLAuthenticateResponse
		ar, closeAfter = sess.Authenticate(r)
		if ar.ErrorCode != 0 {
			s.note("failure: %s", *ar.ErrorMessage)
		} else if sess.Authenticated() {
			s.note("authenticated %s", sess.Principal())
		}
		resp = ar
	case *kmsg.MetadataRequest:
		mr := r.ResponseKind().(*kmsg.MetadataResponse)
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port = 1, "127.0.0.1", s.port
		mr.Brokers = append(mr.Brokers, b)
		mr.ControllerID = 1
		resp = mr
	default:
		return fmt.Errorf("unexpected %s", kmsg.NameForKey(key))
	}
	out := binary.BigEndian.AppendUint32(make([]byte, 4), corr)
	if resp.IsFlexible() && key != kmsg.ApiVersions.Int16() {
		out = append(out, 0) // response header tags
	}
	out = resp.AppendTo(out)
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	if _, err := c.Write(out); err != nil {
		return err
	}
	if closeAfter {
		return errors.New("closing after a refused SASL step")
	}
	return nil
}

func skipTagSection(b []byte) ([]byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errors.New("bad tag count")
	}
	b = b[k:]
	for range n {
		if _, k = binary.Uvarint(b); k <= 0 {
			return nil, errors.New("bad tag")
		}
		b = b[k:]
		size, k := binary.Uvarint(b)
		if k <= 0 || size > uint64(len(b)-k) {
			return nil, errors.New("bad tag size")
		}
		b = b[k+int(size):]
	}
	return b, nil
}

// TestKcatSASL authenticates librdkafka (through kcat) against the Session
// with SCRAM-SHA-256/512 and PLAIN. librdkafka 2.0 always sends ApiVersions,
// then SaslHandshake v1 and SaslAuthenticate v0 (even when told
// api.version.request=false), and its client-final message repeats the
// client nonce in front of the full nonce, which the server must accept as
// Kafka does.
func TestKcatSASL(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed")
	}
	u := testUsers(t)
	for _, c := range []struct {
		name, mech, user, pass string
		ok                     bool
		want                   string
	}{
		{"scram256", "SCRAM-SHA-256", "alice", "alice-secret", true, "ApiVersions v3; SaslHandshake v1 SCRAM-SHA-256; SaslAuthenticate v0; SaslAuthenticate v0; authenticated User:alice"},
		{"scram512", "SCRAM-SHA-512", "alice", "alice-secret", true, "ApiVersions v3; SaslHandshake v1 SCRAM-SHA-512; SaslAuthenticate v0; SaslAuthenticate v0; authenticated User:alice"},
		{"plain", "PLAIN", "bob", "bob,=secret", true, "ApiVersions v3; SaslHandshake v1 PLAIN; SaslAuthenticate v0; authenticated User:bob"},
		{"scram256 wrong password", "SCRAM-SHA-256", "alice", "wrong", false, "failure: authentication failed during authentication due to invalid credentials"},
		{"plain wrong password", "PLAIN", "alice", "wrong", false, "failure: authentication failed: invalid username or password"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := startSASLServer(t, u)
			// kcat retries a failed authentication until its metadata
			// timeout, so failures get a short one.
			timeout := "10"
			if !c.ok {
				timeout = "2"
			}
			args := []string{"-b", "127.0.0.1:" + strconv.Itoa(int(srv.port)), "-L", "-m", timeout,
				"-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=" + c.mech,
				"-X", "sasl.username=" + c.user, "-X", "sasl.password=" + c.pass}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, kcat, args...).CombinedOutput()
			events := srv.events()
			t.Logf("server saw: %s", events)
			if c.ok {
				if err != nil || !strings.Contains(string(out), "1 brokers") {
					t.Fatalf("kcat failed: %v\n%s", err, out)
				}
				if !strings.Contains(events, "authenticated User:"+c.user) {
					t.Fatalf("server did not authenticate %s", c.user)
				}
			} else if err == nil || !strings.Contains(string(out), "SASL authentication error: authentication failed") {
				t.Fatalf("kcat with a wrong password: %v\n%s", err, out)
			}
			if !strings.Contains(events, c.want) {
				t.Fatalf("server saw %q, want it to contain %q", events, c.want)
			}
		})
	}
}

// TestRawTokensOverSocket speaks the v0 handshake's framing over a real
// socket as kafka-python 2.0 does: SaslHandshake v0, then each token as a
// bare 4-byte length and bytes, answered the same way (an empty token, a
// 4-byte zero, for PLAIN's success). A refused token closes the connection
// without an answer.
func TestRawTokensOverSocket(t *testing.T) {
	u := testUsers(t)
	for _, c := range []struct {
		name string
		mech sasl.Mechanism
		ok   bool
	}{
		{"plain", plain.Auth{Zid: "alice", User: "alice", Pass: "alice-secret"}.AsMechanism(), true},
		{"scram256", scram.Auth{User: "bob", Pass: "bob,=secret"}.AsSha256Mechanism(), true},
		{"scram512", scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha512Mechanism(), true},
		{"plain wrong password", plain.Auth{User: "alice", Pass: "nope"}.AsMechanism(), false},
		{"scram wrong password", scram.Auth{User: "alice", Pass: "nope"}.AsSha512Mechanism(), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := startSASLServer(t, u)
			conn, err := net.Dial("tcp", srv.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(conn)
			readFrame := func() ([]byte, error) {
				var size [4]byte
				if _, err := io.ReadFull(br, size[:]); err != nil {
					return nil, err
				}
				b := make([]byte, binary.BigEndian.Uint32(size[:]))
				_, err := io.ReadFull(br, b)
				return b, err
			}
			writeFrame := func(b []byte) {
				conn.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...))
			}

			hs := kmsg.NewPtrSASLHandshakeRequest()
			hs.Version, hs.Mechanism = 0, c.mech.Name()
			writeFrame(requestFrame(hs, 7))
			frame, err := readFrame()
			if err != nil {
				t.Fatal(err)
			}
			hresp := kmsg.NewPtrSASLHandshakeResponse()
			if err := hresp.ReadFrom(frame[4:]); err != nil || hresp.ErrorCode != 0 {
				t.Fatalf("handshake: %v %d", err, hresp.ErrorCode)
			}

			sess, tok, err := c.mech.Authenticate(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			for {
				writeFrame(tok)
				out, err := readFrame()
				if err != nil {
					if c.ok {
						t.Fatalf("connection closed during the exchange: %v (%s)", err, srv.events())
					}
					return // refused: closed without an answer
				}
				done, next, err := sess.Challenge(out)
				if err != nil {
					t.Fatalf("client refused the server: %v", err)
				}
				if done {
					break
				}
				tok = next
			}
			if !c.ok {
				t.Fatalf("wrong password accepted (%s)", srv.events())
			}
			// The connection is now an authenticated Kafka connection.
			md := kmsg.NewPtrMetadataRequest()
			md.Version = 1
			writeFrame(requestFrame(md, 8))
			frame, err = readFrame()
			if err != nil || binary.BigEndian.Uint32(frame) != 8 {
				t.Fatalf("metadata after raw authentication: %v (%s)", err, srv.events())
			}
		})
	}
}

// requestFrame encodes a non-flexible request with a v1 header and a null
// client id, without the size prefix.
func requestFrame(req kmsg.Request, corr int32) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, 0xffff)
	return req.AppendTo(b)
}
