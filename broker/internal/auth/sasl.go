package auth

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// MechanismPlain is the SASL PLAIN mechanism's name (RFC 4616).
const MechanismPlain = "PLAIN"

// MaxTokenSize bounds one SASL token, framed or raw. PLAIN and SCRAM tokens
// are a few hundred bytes; the bound keeps a client that has not yet
// authenticated from making the broker read a large frame.
const MaxTokenSize = 64 << 10

// SessionConfig configures a connection's Session.
type SessionConfig struct {
	// Users verifies credentials. Required.
	Users *Users
	// AllowPlain offers PLAIN on this connection. PLAIN sends the password
	// itself, so set it only for a TLS connection or a loopback one (see
	// PlainAllowed).
	AllowPlain bool
	// Lifetime, if positive, bounds an authenticated session, like Kafka's
	// connections.max.reauth.ms (KIP-368): the final SaslAuthenticate
	// response tells the client, which must authenticate again on the same
	// connection before then, and a request arriving after it is refused
	// (Allows reports false). Zero means sessions do not expire.
	Lifetime time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// PlainAllowed reports whether PLAIN may be offered on a connection: when it
// is encrypted by TLS, or when its peer is on loopback, where the password
// never crosses a network.
func PlainAllowed(tlsOn bool, remote net.Addr) bool {
	if tlsOn {
		return true
	}
	var ip net.IP
	switch a := remote.(type) {
	case *net.TCPAddr:
		ip = a.IP
	default:
		if remote == nil {
			return false
		}
		host, _, err := net.SplitHostPort(remote.String())
		if err != nil {
			return false
		}
		ip = net.ParseIP(host)
	}
	return ip != nil && ip.IsLoopback()
}

// saslState is where a Session is in its exchange.
type saslState uint8

const (
	stateHandshake  saslState = iota // waiting for SaslHandshake
	stateFirst                       // mechanism chosen, waiting for the first token
	stateScramFinal                  // SCRAM server-first sent, waiting for client-final
	stateDone                        // authenticated
	stateFailed                      // failed: the connection must close
)

// A Session is one connection's SASL state machine. The connection hands it
// SaslHandshake and SaslAuthenticate requests, in order, and asks Allows
// before serving anything else. A Session is not safe for concurrent use;
// the connection's reader goroutine, which handles requests in arrival
// order, is its only user.
//
// Flow (Kafka's): SaslHandshake names a mechanism; then the client sends its
// tokens, each in a SaslAuthenticate request after a v1 handshake, or as a
// bare length-prefixed frame after a v0 handshake (RawToken). PLAIN takes one
// token, SCRAM two. Any failure is answered (except in raw mode, where there
// is no way to say why) and then the connection must be closed: Kafka gives
// a client one attempt per connection.
type Session struct {
	cfg   SessionConfig
	state saslState
	mech  string
	raw   bool // the handshake was v0: tokens come unframed
	scram *scramServer

	principal Principal // set once authenticated
	expires   time.Time // zero: never
	reauth    bool      // an exchange is re-authenticating an established session
}

// NewSession returns a Session waiting for SaslHandshake.
func NewSession(cfg SessionConfig) *Session {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Session{cfg: cfg}
}

// Mechanisms returns the mechanisms this session offers, in the order a
// handshake response lists them.
func (s *Session) Mechanisms() []string {
	ms := []string{ScramSHA512.String(), ScramSHA256.String()}
	if s.cfg.AllowPlain {
		ms = append(ms, MechanismPlain)
	}
	return ms
}

// Handshake answers SaslHandshake (v0 or v1). close reports that the
// connection must be closed once the response is written: after
// ILLEGAL_SASL_STATE or UNSUPPORTED_SASL_MECHANISM, as Kafka does.
//
// A handshake is legal first, and again on an authenticated connection whose
// session has a Lifetime (KIP-368 re-authentication, v1 only).
func (s *Session) Handshake(req *kmsg.SASLHandshakeRequest) (resp *kmsg.SASLHandshakeResponse, close bool) {
	resp = req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	resp.SupportedMechanisms = s.Mechanisms()
	reauth := s.state == stateDone && s.cfg.Lifetime > 0 && req.Version >= 1
	if s.state != stateHandshake && !reauth {
		s.fail()
		resp.ErrorCode = kerr.IllegalSaslState.Code
		return resp, true
	}
	mech := ""
	for _, m := range resp.SupportedMechanisms {
		if m == req.Mechanism {
			mech = m
		}
	}
	if mech == "" {
		s.fail()
		resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		return resp, true
	}
	s.state, s.mech, s.raw, s.reauth = stateFirst, mech, req.Version == 0, reauth
	return resp, false
}

// Authenticate answers SaslAuthenticate (v0 to v2). close reports that the
// connection must be closed once the response is written: the token was
// refused (SASL_AUTHENTICATION_FAILED, with a message saying why) or the
// request came out of turn (ILLEGAL_SASL_STATE).
func (s *Session) Authenticate(req *kmsg.SASLAuthenticateRequest) (resp *kmsg.SASLAuthenticateResponse, close bool) {
	resp = req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	if s.raw || (s.state != stateFirst && s.state != stateScramFinal) {
		s.fail()
		resp.ErrorCode = kerr.IllegalSaslState.Code
		resp.ErrorMessage = kmsg.StringPtr("SaslAuthenticate out of turn: expected after a v1 SaslHandshake")
		return resp, true
	}
	out, err := s.step(req.SASLAuthBytes)
	if err != nil {
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = kmsg.StringPtr(err.Error())
		return resp, true
	}
	resp.SASLAuthBytes = out
	if s.state == stateDone && s.cfg.Lifetime > 0 {
		resp.SessionLifetimeMillis = s.cfg.Lifetime.Milliseconds()
	}
	return resp, false
}

// ExpectRawToken reports whether the connection's next frame is a raw SASL
// token rather than a request: after a v0 SaslHandshake, until the exchange
// ends. The connection reads such a frame as a 4-byte big-endian length and
// that many bytes (at most MaxTokenSize), passes them to RawToken, and writes
// the answer back the same way.
func (s *Session) ExpectRawToken() bool {
	return s.raw && (s.state == stateFirst || s.state == stateScramFinal)
}

// RawToken handles one unframed token after a v0 SaslHandshake and returns
// the token to send back, length-prefixed and with no response header
// (PLAIN's success is an empty token, so a 4-byte zero). An error means the
// connection must be closed without an answer: raw framing has no way to
// carry one, and Kafka closes too.
func (s *Session) RawToken(tok []byte) ([]byte, error) {
	if !s.ExpectRawToken() {
		s.fail()
		return nil, errors.New("sasl: raw token out of turn")
	}
	out, err := s.step(tok)
	if err != nil {
		return nil, fmt.Errorf("sasl: %w", err)
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// step runs one token through the chosen mechanism.
func (s *Session) step(tok []byte) ([]byte, error) {
	if len(tok) > MaxTokenSize {
		s.fail()
		return nil, fmt.Errorf("authentication failed: %d-byte token is too large", len(tok))
	}
	switch {
	case s.mech == MechanismPlain:
		user, err := s.plain(tok)
		if err != nil {
			s.fail()
			return nil, err
		}
		return nil, s.done(User(user))
	case s.state == stateFirst:
		m, _ := ParseMechanism(s.mech)
		s.scram = &scramServer{mech: m, users: s.cfg.Users}
		out, err := s.scram.first(tok)
		if err != nil {
			s.fail()
			return nil, fmt.Errorf("authentication failed: %s: %w", s.mech, err)
		}
		s.state = stateScramFinal
		return out, nil
	default:
		out, err := s.scram.final(tok)
		user := s.scram.user
		s.scram = nil
		if errors.Is(err, errInvalidCredentials) {
			s.fail()
			return nil, fmt.Errorf("authentication failed during authentication due to invalid credentials with SASL mechanism %s", s.mech)
		}
		if err != nil {
			s.fail()
			return nil, fmt.Errorf("authentication failed: %s: %w", s.mech, err)
		}
		return out, s.done(User(user))
	}
}

// plain checks a PLAIN token, "authzid NUL authcid NUL password", and returns
// the user. As in Kafka, the authzid must be empty or the user itself.
func (s *Session) plain(tok []byte) (string, error) {
	parts := bytes.Split(tok, []byte{0})
	if len(parts) != 3 {
		return "", errors.New("authentication failed: malformed PLAIN token")
	}
	authz, user, pass := string(parts[0]), string(parts[1]), string(parts[2])
	switch {
	case user == "":
		return "", errors.New("authentication failed: username not specified")
	case pass == "":
		return "", errors.New("authentication failed: password not specified")
	case authz != "" && authz != user:
		return "", errors.New("authentication failed: client requested an authorization id that is different from username")
	case !s.cfg.Users.VerifyPlain(user, pass):
		return "", errors.New("authentication failed: invalid username or password")
	}
	return user, nil
}

// done completes an exchange for p. Re-authentication must keep the
// principal, as in Kafka: a connection cannot change whom it speaks for.
func (s *Session) done(p Principal) error {
	if s.reauth && p != s.principal {
		s.fail()
		return errors.New("authentication failed: re-authentication cannot change the principal")
	}
	s.state, s.principal, s.reauth, s.raw = stateDone, p, false, false
	if s.cfg.Lifetime > 0 {
		s.expires = s.cfg.Now().Add(s.cfg.Lifetime)
	}
	return nil
}

func (s *Session) fail() {
	s.state, s.scram, s.principal = stateFailed, nil, Principal{}
}

// Authenticated reports whether the client has authenticated and its
// session has not expired.
func (s *Session) Authenticated() bool {
	if s.principal.IsZero() {
		return false
	}
	return s.expires.IsZero() || s.cfg.Now().Before(s.expires)
}

// Principal returns the authenticated principal, or the zero Principal
// before authentication.
func (s *Session) Principal() Principal { return s.principal }

// Allows reports whether a request with API key key may be served now:
// ApiVersions, SaslHandshake and SaslAuthenticate always (the session itself
// answers an out-of-turn one), anything else only on an authenticated,
// unexpired session. A request that is not allowed closes the connection,
// as in Kafka.
func (s *Session) Allows(key int16) bool {
	switch kmsg.Key(key) {
	case kmsg.ApiVersions, kmsg.SASLHandshake, kmsg.SASLAuthenticate:
		return true
	}
	return s.Authenticated()
}
