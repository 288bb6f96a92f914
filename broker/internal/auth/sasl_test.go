package auth

import (
	"context"
	"encoding/base64"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// testUsers returns a store in a temporary directory with alice (both SCRAM
// mechanisms) and bob (SCRAM-SHA-256 only), at the minimum iteration count
// to keep the tests quick.
func testUsers(t testing.TB) *Users {
	t.Helper()
	u, err := OpenUsers(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, pass string
		m          Mechanism
	}{
		{"alice", "alice-secret", ScramSHA256},
		{"alice", "alice-secret", ScramSHA512},
		{"bob", "bob,=secret", ScramSHA256},
	} {
		if err := u.SetPassword(c.user, c.m, c.pass, MinIterations); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// exchange drives a franz-go client mechanism against a Session as
// franz-go's client does over SaslHandshake v1 and SaslAuthenticate. It
// returns the last response and the client's own verdict on the server's
// messages.
func exchange(t *testing.T, s *Session, m sasl.Mechanism) (*kmsg.SASLAuthenticateResponse, error) {
	t.Helper()
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version = 1
	hs.Mechanism = m.Name()
	hresp, closed := s.Handshake(hs)
	if hresp.ErrorCode != 0 || closed {
		t.Fatalf("handshake %s: error %d, close %v", m.Name(), hresp.ErrorCode, closed)
	}
	sess, tok, err := m.Authenticate(context.Background(), "127.0.0.1:9092")
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.Version = 2
		req.SASLAuthBytes = tok
		resp, closed := s.Authenticate(req)
		if resp.ErrorCode != 0 {
			if !closed {
				t.Errorf("failed authenticate (error %d) does not close the connection", resp.ErrorCode)
			}
			return resp, nil
		}
		done, next, err := sess.Challenge(resp.SASLAuthBytes)
		if err != nil || done {
			return resp, err
		}
		tok = next
	}
	t.Fatal("exchange did not finish")
	return nil, nil
}

func newSession(u *Users) *Session { return NewSession(SessionConfig{Users: u, AllowPlain: true}) }

func TestSASLWithFranzGoClients(t *testing.T) {
	u := testUsers(t)
	for _, c := range []struct {
		name     string
		mech     sasl.Mechanism
		user     string
		ok       bool
		wantCode int16
	}{
		{"scram256", scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha256Mechanism(), "alice", true, 0},
		{"scram512", scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha512Mechanism(), "alice", true, 0},
		{"scram escaped name and password", scram.Auth{User: "bob", Pass: "bob,=secret"}.AsSha256Mechanism(), "bob", true, 0},
		{"scram authzid equal to user", scram.Auth{Zid: "alice", User: "alice", Pass: "alice-secret"}.AsSha256Mechanism(), "alice", true, 0},
		{"plain", plain.Auth{User: "alice", Pass: "alice-secret"}.AsMechanism(), "alice", true, 0},
		{"plain sha256-only user", plain.Auth{User: "bob", Pass: "bob,=secret"}.AsMechanism(), "bob", true, 0},
		{"plain authzid equal to user", plain.Auth{Zid: "bob", User: "bob", Pass: "bob,=secret"}.AsMechanism(), "bob", true, 0},

		{"scram256 wrong password", scram.Auth{User: "alice", Pass: "nope"}.AsSha256Mechanism(), "", false, kerr.SaslAuthenticationFailed.Code},
		{"scram512 wrong password", scram.Auth{User: "alice", Pass: "nope"}.AsSha512Mechanism(), "", false, kerr.SaslAuthenticationFailed.Code},
		{"scram512 user without that mechanism", scram.Auth{User: "bob", Pass: "bob,=secret"}.AsSha512Mechanism(), "", false, kerr.SaslAuthenticationFailed.Code},
		{"scram unknown user", scram.Auth{User: "mallory", Pass: "x"}.AsSha256Mechanism(), "", false, kerr.SaslAuthenticationFailed.Code},
		{"scram other authzid", scram.Auth{Zid: "bob", User: "alice", Pass: "alice-secret"}.AsSha256Mechanism(), "", false, kerr.SaslAuthenticationFailed.Code},
		{"plain wrong password", plain.Auth{User: "alice", Pass: "nope"}.AsMechanism(), "", false, kerr.SaslAuthenticationFailed.Code},
		{"plain unknown user", plain.Auth{User: "mallory", Pass: "x"}.AsMechanism(), "", false, kerr.SaslAuthenticationFailed.Code},
		{"plain other authzid", plain.Auth{Zid: "alice", User: "bob", Pass: "bob,=secret"}.AsMechanism(), "", false, kerr.SaslAuthenticationFailed.Code},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSession(u)
			if s.Allows(kmsg.Metadata.Int16()) {
				t.Fatal("Metadata allowed before authentication")
			}
			resp, clientErr := exchange(t, s, c.mech)
			if clientErr != nil {
				t.Fatalf("client refused the server: %v", clientErr)
			}
			if resp.ErrorCode != c.wantCode {
				t.Fatalf("error code %d, want %d (%v)", resp.ErrorCode, c.wantCode, resp.ErrorMessage)
			}
			if c.wantCode != 0 && (resp.ErrorMessage == nil || *resp.ErrorMessage == "") {
				t.Error("failure has no message")
			}
			if s.Authenticated() != c.ok || s.Allows(kmsg.Metadata.Int16()) != c.ok {
				t.Fatalf("authenticated %v, allows Metadata %v; want %v", s.Authenticated(), s.Allows(kmsg.Metadata.Int16()), c.ok)
			}
			if c.ok && s.Principal() != User(c.user) {
				t.Fatalf("principal %v, want User:%s", s.Principal(), c.user)
			}
			if !c.ok && !s.Principal().IsZero() {
				t.Fatalf("failed session has principal %v", s.Principal())
			}
		})
	}
}

// TestSCRAMUnknownUserLooksKnown: the server-first message for a user that
// does not exist has the same shape as for one that does, and the same salt
// when asked twice, so that a stranger cannot list users.
func TestSCRAMUnknownUserLooksKnown(t *testing.T) {
	u := testUsers(t)
	first := func(user string) string {
		s := newSession(u)
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 1, "SCRAM-SHA-256"
		s.Handshake(hs)
		req := kmsg.NewPtrSASLAuthenticateRequest()
		req.SASLAuthBytes = []byte("n,,n=" + user + ",r=abc")
		resp, closed := s.Authenticate(req)
		if resp.ErrorCode != 0 || closed {
			t.Fatalf("client-first of %s refused: %d", user, resp.ErrorCode)
		}
		parts := strings.Split(string(resp.SASLAuthBytes), ",")
		if len(parts) != 3 || !strings.HasPrefix(parts[0], "r=abc") {
			t.Fatalf("server-first %q", resp.SASLAuthBytes)
		}
		return parts[1] + "," + parts[2]
	}
	a, b := first("mallory"), first("mallory")
	if a != b {
		t.Errorf("decoy salt changes between attempts: %q vs %q", a, b)
	}
	if first("trudy") == a {
		t.Error("two unknown users get the same decoy salt")
	}
}

// scramClientFinal records what a real client sends, to replay it.
type recorder struct {
	first, final []byte
}

func recordSCRAM(t *testing.T, u *Users, auth scram.Auth) (recorder, *Session) {
	t.Helper()
	s := newSession(u)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "SCRAM-SHA-256"
	s.Handshake(hs)
	m := auth.AsSha256Mechanism()
	sess, tok, err := m.Authenticate(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	var r recorder
	r.first = tok
	req := kmsg.NewPtrSASLAuthenticateRequest()
	req.SASLAuthBytes = tok
	resp, _ := s.Authenticate(req)
	_, final, err := sess.Challenge(resp.SASLAuthBytes)
	if err != nil {
		t.Fatal(err)
	}
	r.final = final
	return r, s
}

func authenticate(s *Session, tok []byte) (*kmsg.SASLAuthenticateResponse, bool) {
	req := kmsg.NewPtrSASLAuthenticateRequest()
	req.Version = 1
	req.SASLAuthBytes = tok
	return s.Authenticate(req)
}

func TestSCRAMReplayedClientFinalFails(t *testing.T) {
	u := testUsers(t)
	// The client chooses the same nonce both times, as an attacker replaying
	// a recorded exchange would; the server's half differs, so the recorded
	// proof is for another AuthMessage.
	auth := scram.Auth{User: "alice", Pass: "alice-secret", Nonce: []byte("fixed-client-nonce")}
	rec, s1 := recordSCRAM(t, u, auth)
	if resp, _ := authenticate(s1, rec.final); resp.ErrorCode != 0 {
		t.Fatalf("original exchange failed: %d", resp.ErrorCode)
	}

	s2 := newSession(u)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "SCRAM-SHA-256"
	s2.Handshake(hs)
	if resp, _ := authenticate(s2, rec.first); resp.ErrorCode != 0 {
		t.Fatalf("replayed client-first refused: %d", resp.ErrorCode)
	}
	resp, closed := authenticate(s2, rec.final)
	if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code || !closed || s2.Authenticated() {
		t.Fatalf("replayed client-final: code %d close %v authenticated %v", resp.ErrorCode, closed, s2.Authenticated())
	}

	// The same proof with the new exchange's nonce spliced in is a forgery:
	// the proof was computed over the old nonce.
	s3 := newSession(u)
	s3.Handshake(hs)
	sf, _ := authenticate(s3, rec.first)
	nonce := strings.TrimPrefix(strings.Split(string(sf.SASLAuthBytes), ",")[0], "r=")
	i := strings.Index(string(rec.final), ",p=")
	forged := "c=" + base64.StdEncoding.EncodeToString([]byte("n,,")) + ",r=" + nonce + string(rec.final[i:])
	if resp, _ := authenticate(s3, []byte(forged)); resp.ErrorCode != kerr.SaslAuthenticationFailed.Code {
		t.Fatalf("forged client-final: code %d", resp.ErrorCode)
	}
}

func TestSCRAMMalformedMessages(t *testing.T) {
	u := testUsers(t)
	for _, c := range []struct{ name, first, final string }{
		{"empty", "", ""},
		{"no gs2 header", "n=alice,r=abc", ""},
		{"channel binding", "p=tls-unique,,n=alice,r=abc", ""},
		{"bad flag", "x,,n=alice,r=abc", ""},
		{"no nonce", "n,,n=alice", ""},
		{"empty nonce", "n,,n=alice,r=", ""},
		{"bad escape", "n,,n=al=ice,r=abc", ""},
		{"token auth", "n,,n=alice,r=abc,tokenauth=true", ""},
		{"unknown extension", "n,,n=alice,r=abc,x=y", ""},
		{"mandatory extension", "n,,m=foo,n=alice,r=abc", ""},
		{"final without proof", "n,,n=alice,r=abc", "c=biws,r=abc"},
		{"final wrong binding", "n,,n=alice,r=abc", "c=eSws,r=NONCE,p=AAAA"},
		{"final wrong nonce", "n,,n=alice,r=abc", "c=biws,r=abcdef,p=AAAA"},
		{"final short proof", "n,,n=alice,r=abc", "c=biws,r=NONCE,p=AAAA"},
		{"final proof not base64", "n,,n=alice,r=abc", "c=biws,r=NONCE,p=!!"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSession(u)
			hs := kmsg.NewPtrSASLHandshakeRequest()
			hs.Version, hs.Mechanism = 1, "SCRAM-SHA-256"
			s.Handshake(hs)
			resp, closed := authenticate(s, []byte(c.first))
			if c.final == "" {
				if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code || !closed {
					t.Fatalf("client-first %q: code %d close %v", c.first, resp.ErrorCode, closed)
				}
				return
			}
			if resp.ErrorCode != 0 {
				t.Fatalf("client-first refused: %d", resp.ErrorCode)
			}
			nonce := strings.TrimPrefix(strings.Split(string(resp.SASLAuthBytes), ",")[0], "r=")
			resp, closed = authenticate(s, []byte(strings.ReplaceAll(c.final, "NONCE", nonce)))
			if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code || !closed || s.Authenticated() {
				t.Fatalf("client-final %q: code %d close %v", c.final, resp.ErrorCode, closed)
			}
		})
	}
}

func TestSASLStateTransitions(t *testing.T) {
	u := testUsers(t)
	hs := func(v int16, mech string) *kmsg.SASLHandshakeRequest {
		r := kmsg.NewPtrSASLHandshakeRequest()
		r.Version, r.Mechanism = v, mech
		return r
	}
	t.Run("authenticate before handshake", func(t *testing.T) {
		s := newSession(u)
		resp, closed := authenticate(s, []byte("\x00alice\x00alice-secret"))
		if resp.ErrorCode != kerr.IllegalSaslState.Code || !closed {
			t.Fatalf("code %d close %v", resp.ErrorCode, closed)
		}
	})
	t.Run("two handshakes", func(t *testing.T) {
		s := newSession(u)
		s.Handshake(hs(1, "PLAIN"))
		resp, closed := s.Handshake(hs(1, "PLAIN"))
		if resp.ErrorCode != kerr.IllegalSaslState.Code || !closed {
			t.Fatalf("code %d close %v", resp.ErrorCode, closed)
		}
	})
	t.Run("handshake after authentication without lifetime", func(t *testing.T) {
		s := newSession(u)
		s.Handshake(hs(1, "PLAIN"))
		authenticate(s, []byte("\x00alice\x00alice-secret"))
		resp, closed := s.Handshake(hs(1, "PLAIN"))
		if resp.ErrorCode != kerr.IllegalSaslState.Code || !closed {
			t.Fatalf("code %d close %v", resp.ErrorCode, closed)
		}
	})
	t.Run("authenticate after authentication", func(t *testing.T) {
		s := newSession(u)
		s.Handshake(hs(1, "PLAIN"))
		authenticate(s, []byte("\x00alice\x00alice-secret"))
		resp, closed := authenticate(s, []byte("\x00alice\x00alice-secret"))
		if resp.ErrorCode != kerr.IllegalSaslState.Code || !closed {
			t.Fatalf("code %d close %v", resp.ErrorCode, closed)
		}
	})
	t.Run("retry after failure", func(t *testing.T) {
		s := newSession(u)
		s.Handshake(hs(1, "PLAIN"))
		authenticate(s, []byte("\x00alice\x00wrong"))
		resp, _ := authenticate(s, []byte("\x00alice\x00alice-secret"))
		if resp.ErrorCode != kerr.IllegalSaslState.Code || s.Authenticated() {
			t.Fatalf("second attempt on a failed connection: code %d", resp.ErrorCode)
		}
	})
	t.Run("unsupported mechanism", func(t *testing.T) {
		s := newSession(u)
		resp, closed := s.Handshake(hs(1, "GSSAPI"))
		if resp.ErrorCode != kerr.UnsupportedSaslMechanism.Code || !closed {
			t.Fatalf("code %d close %v", resp.ErrorCode, closed)
		}
		if strings.Join(resp.SupportedMechanisms, ",") != "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN" {
			t.Fatalf("mechanisms %v", resp.SupportedMechanisms)
		}
	})
	t.Run("plain refused where not allowed", func(t *testing.T) {
		s := NewSession(SessionConfig{Users: u})
		resp, closed := s.Handshake(hs(1, "PLAIN"))
		if resp.ErrorCode != kerr.UnsupportedSaslMechanism.Code || !closed {
			t.Fatalf("code %d close %v", resp.ErrorCode, closed)
		}
		for _, m := range resp.SupportedMechanisms {
			if m == "PLAIN" {
				t.Fatal("PLAIN offered")
			}
		}
	})
	t.Run("framed authenticate after v0 handshake", func(t *testing.T) {
		s := newSession(u)
		s.Handshake(hs(0, "PLAIN"))
		if !s.ExpectRawToken() {
			t.Fatal("v0 handshake does not expect a raw token")
		}
		resp, closed := authenticate(s, []byte("\x00alice\x00alice-secret"))
		if resp.ErrorCode != kerr.IllegalSaslState.Code || !closed {
			t.Fatalf("code %d close %v", resp.ErrorCode, closed)
		}
	})
	t.Run("raw token after v1 handshake", func(t *testing.T) {
		s := newSession(u)
		s.Handshake(hs(1, "PLAIN"))
		if s.ExpectRawToken() {
			t.Fatal("v1 handshake expects a raw token")
		}
		if _, err := s.RawToken([]byte("\x00alice\x00alice-secret")); err == nil || s.Authenticated() {
			t.Fatal("raw token accepted after a v1 handshake")
		}
	})
	t.Run("oversized token", func(t *testing.T) {
		s := newSession(u)
		s.Handshake(hs(1, "PLAIN"))
		resp, closed := authenticate(s, make([]byte, MaxTokenSize+1))
		if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code || !closed {
			t.Fatalf("code %d close %v", resp.ErrorCode, closed)
		}
	})
	t.Run("always allowed", func(t *testing.T) {
		s := newSession(u)
		for _, k := range []kmsg.Key{kmsg.ApiVersions, kmsg.SASLHandshake, kmsg.SASLAuthenticate} {
			if !s.Allows(k.Int16()) {
				t.Errorf("%v not allowed before authentication", k)
			}
		}
		for _, k := range []kmsg.Key{kmsg.Produce, kmsg.Fetch, kmsg.Metadata, kmsg.CreateTopics, kmsg.DescribeACLs} {
			if s.Allows(k.Int16()) {
				t.Errorf("%v allowed before authentication", k)
			}
		}
	})
}

// TestSASLRawTokens runs the v0 handshake's unframed exchange, as
// kafka-python 2.0 does for PLAIN and SCRAM.
func TestSASLRawTokens(t *testing.T) {
	u := testUsers(t)
	t.Run("plain", func(t *testing.T) {
		s := newSession(u)
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Mechanism = "PLAIN" // Version 0
		if resp, closed := s.Handshake(hs); resp.ErrorCode != 0 || closed {
			t.Fatalf("handshake: %d", resp.ErrorCode)
		}
		out, err := s.RawToken([]byte("alice\x00alice\x00alice-secret"))
		if err != nil || out == nil || len(out) != 0 {
			t.Fatalf("raw PLAIN: %q, %v; want an empty, non-nil token", out, err)
		}
		if !s.Authenticated() || s.ExpectRawToken() || s.Principal() != User("alice") {
			t.Fatalf("after raw PLAIN: authenticated %v raw %v principal %v", s.Authenticated(), s.ExpectRawToken(), s.Principal())
		}
	})
	t.Run("scram", func(t *testing.T) {
		s := newSession(u)
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Mechanism = "SCRAM-SHA-512"
		s.Handshake(hs)
		sess, tok, _ := scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha512Mechanism().Authenticate(context.Background(), "")
		for s.ExpectRawToken() {
			out, err := s.RawToken(tok)
			if err != nil {
				t.Fatal(err)
			}
			done, next, err := sess.Challenge(out)
			if err != nil {
				t.Fatal(err)
			}
			if done != !s.ExpectRawToken() {
				t.Fatalf("client done %v, server expects more %v", done, s.ExpectRawToken())
			}
			tok = next
		}
		if s.Principal() != User("alice") {
			t.Fatalf("principal %v", s.Principal())
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		s := newSession(u)
		hs := kmsg.NewPtrSASLHandshakeRequest()
		hs.Mechanism = "PLAIN"
		s.Handshake(hs)
		if _, err := s.RawToken([]byte("\x00alice\x00nope")); err == nil || s.Authenticated() || s.ExpectRawToken() {
			t.Fatal("wrong raw PLAIN password accepted or session left open")
		}
	})
}

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func TestSASLSessionLifetimeAndReauth(t *testing.T) {
	u := testUsers(t)
	clk := &fakeClock{now: time.Unix(1_000_000, 0)}
	s := NewSession(SessionConfig{Users: u, AllowPlain: true, Lifetime: time.Minute, Now: clk.Now})
	resp, err := exchange(t, s, scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha256Mechanism())
	if err != nil || resp.ErrorCode != 0 {
		t.Fatalf("auth: %v %d", err, resp.ErrorCode)
	}
	if resp.SessionLifetimeMillis != 60_000 {
		t.Fatalf("session lifetime %d ms", resp.SessionLifetimeMillis)
	}
	clk.now = clk.now.Add(59 * time.Second)
	if !s.Allows(kmsg.Produce.Int16()) {
		t.Fatal("session expired early")
	}
	// Re-authenticate before expiry, as the same user: the session goes on.
	if resp, err := exchange(t, s, plain.Auth{User: "alice", Pass: "alice-secret"}.AsMechanism()); err != nil || resp.ErrorCode != 0 {
		t.Fatalf("reauth: %v %d", err, resp.ErrorCode)
	}
	clk.now = clk.now.Add(59 * time.Second)
	if !s.Allows(kmsg.Produce.Int16()) {
		t.Fatal("re-authentication did not extend the session")
	}
	clk.now = clk.now.Add(2 * time.Second)
	if s.Allows(kmsg.Produce.Int16()) || s.Authenticated() {
		t.Fatal("expired session still allowed")
	}

	// Re-authenticating as somebody else is refused.
	s = NewSession(SessionConfig{Users: u, AllowPlain: true, Lifetime: time.Minute, Now: clk.Now})
	exchange(t, s, plain.Auth{User: "alice", Pass: "alice-secret"}.AsMechanism())
	resp, _ = exchange(t, s, plain.Auth{User: "bob", Pass: "bob,=secret"}.AsMechanism())
	if resp.ErrorCode != kerr.SaslAuthenticationFailed.Code || s.Authenticated() {
		t.Fatalf("reauth as another user: code %d authenticated %v", resp.ErrorCode, s.Authenticated())
	}
}

func TestPlainAllowed(t *testing.T) {
	for _, c := range []struct {
		tls  bool
		addr net.Addr
		want bool
	}{
		{false, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1}, true},
		{false, &net.TCPAddr{IP: net.ParseIP("127.8.9.1"), Port: 1}, true},
		{false, &net.TCPAddr{IP: net.ParseIP("::1"), Port: 1}, true},
		{false, &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 1}, false},
		{true, &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 1}, true},
		{false, &net.UnixAddr{Name: "/x", Net: "unix"}, false},
		{false, nil, false},
	} {
		if got := PlainAllowed(c.tls, c.addr); got != c.want {
			t.Errorf("PlainAllowed(%v, %v) = %v", c.tls, c.addr, got)
		}
	}
}
