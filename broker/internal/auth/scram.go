package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// scramServer is the server side of one SCRAM exchange (RFC 5802, with
// RFC 7677's SHA-256 and Kafka's SHA-512):
//
//	client-first:  gs2-header client-first-bare    gs2-header = "n,," / "y,," / "n,a=<authzid>,"
//	                                               client-first-bare = "n=<user>,r=<cnonce>[,ext]"
//	server-first:  "r=<cnonce><snonce>,s=<salt>,i=<iterations>"
//	client-final:  "c=<b64 gs2-header>,r=<nonce>,p=<b64 proof>"
//	server-final:  "v=<b64 server signature>"
//
// The client proves it knows the salted password by sending
// ClientKey XOR HMAC(StoredKey, AuthMessage); the server checks that
// H(ClientKey) is the StoredKey it keeps, and proves itself in turn with
// HMAC(ServerKey, AuthMessage). AuthMessage is client-first-bare,
// server-first and client-final without its proof, joined by commas. The
// server's half of the nonce is fresh per exchange, so a client-final
// recorded from another exchange does not verify.
type scramServer struct {
	mech  Mechanism
	users *Users

	gs2Header       string // as the client sent it, to check the c= binding
	user            string
	known           bool // false: cred is a decoy and no proof will match
	cred            Credential
	clientFirstBare string
	serverFirst     string
	nonce           string // the client's and the server's, together
}

// errInvalidCredentials is the one answer to a wrong password and to an
// unknown user alike.
var errInvalidCredentials = errors.New("invalid credentials")

// serverNonceSize is how many random bytes make the server's nonce half.
const serverNonceSize = 24

// first takes client-first and returns server-first.
func (s *scramServer) first(msg []byte) ([]byte, error) {
	str := string(msg)
	// gs2-header: channel binding flag, authzid, then the bare message.
	flag, rest, ok := strings.Cut(str, ",")
	if !ok {
		return nil, errors.New("malformed client-first message")
	}
	switch {
	case flag == "n" || flag == "y":
	case strings.HasPrefix(flag, "p="):
		return nil, errors.New("channel binding is not supported")
	default:
		return nil, errors.New("malformed client-first message: bad channel binding flag")
	}
	authzField, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, errors.New("malformed client-first message")
	}
	s.gs2Header = str[:len(str)-len(bare)]
	s.clientFirstBare = bare

	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		return nil, errors.New("malformed client-first message: want n=<user>,r=<nonce>")
	}
	user, err := decodeSaslName(attrs[0][2:])
	if err != nil || user == "" {
		return nil, errors.New("malformed client-first message: bad user name")
	}
	cnonce := attrs[1][2:]
	if !printableNonce(cnonce) {
		return nil, errors.New("malformed client-first message: bad nonce")
	}
	for _, ext := range attrs[2:] {
		// Kafka's only extension is tokenauth (delegation tokens, KIP-48),
		// which this broker does not issue.
		if ext == "tokenauth=true" {
			return nil, errors.New("delegation tokens are not supported")
		}
		if !strings.HasPrefix(ext, "tokenauth=") {
			return nil, fmt.Errorf("unsupported SCRAM extension %q", ext)
		}
	}
	if authzField != "" {
		if !strings.HasPrefix(authzField, "a=") {
			return nil, errors.New("malformed client-first message: bad authorization id")
		}
		authz, err := decodeSaslName(authzField[2:])
		if err != nil || authz != user {
			return nil, errors.New("authorization id must be empty or the user name")
		}
	}
	s.user = user
	s.cred, s.known = s.users.scramCredential(user, s.mech)

	var snonce [serverNonceSize]byte
	rand.Read(snonce[:])
	s.nonce = cnonce + base64.RawStdEncoding.EncodeToString(snonce[:])
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(s.cred.Salt) + ",i=" + strconv.Itoa(s.cred.Iterations)
	return []byte(s.serverFirst), nil
}

// final takes client-final, checks the proof, and returns server-final.
func (s *scramServer) final(msg []byte) ([]byte, error) {
	str := string(msg)
	i := strings.LastIndex(str, ",p=")
	if i < 0 {
		return nil, errors.New("malformed client-final message: no proof")
	}
	withoutProof, proofB64 := str[:i], str[i+3:]
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return nil, errors.New("malformed client-final message: want c=<binding>,r=<nonce>")
	}
	if attrs[0][2:] != base64.StdEncoding.EncodeToString([]byte(s.gs2Header)) {
		return nil, errors.New("channel binding does not match the client-first message")
	}
	// The nonce must be this exchange's. Like Kafka, accept one that ends
	// with it: librdkafka repeats its own half in front of the nonce it was
	// sent. Either way the proof covers server-first, which holds this
	// exchange's fresh server nonce, so a proof from another exchange fails.
	if !strings.HasSuffix(attrs[1][2:], s.nonce) {
		return nil, errors.New("nonce does not match this exchange")
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	h := s.mech.hash()
	if err != nil || len(proof) != h().Size() {
		return nil, errors.New("malformed client-final message: bad proof")
	}
	authMsg := make([]byte, 0, len(s.clientFirstBare)+len(s.serverFirst)+len(withoutProof)+2)
	authMsg = append(authMsg, s.clientFirstBare...)
	authMsg = append(authMsg, ',')
	authMsg = append(authMsg, s.serverFirst...)
	authMsg = append(authMsg, ',')
	authMsg = append(authMsg, withoutProof...)

	clientKey := hmacSum(h, s.cred.StoredKey, authMsg) // ClientSignature, XORed into ClientKey below
	for i := range clientKey {
		clientKey[i] ^= proof[i]
	}
	stored := h()
	stored.Write(clientKey)
	if subtle.ConstantTimeCompare(stored.Sum(nil), s.cred.StoredKey) != 1 || !s.known {
		return nil, errInvalidCredentials
	}
	sig := hmacSum(h, s.cred.ServerKey, authMsg)
	return []byte("v=" + base64.StdEncoding.EncodeToString(sig)), nil
}

// decodeSaslName undoes RFC 5802's escaping of ',' as "=2C" and '=' as "=3D";
// any other '=' is malformed.
func decodeSaslName(s string) (string, error) {
	if !strings.Contains(s, "=") {
		return s, nil
	}
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", errors.New("bad escape in saslname")
		}
		i += 2
	}
	return b.String(), nil
}

// printableNonce reports whether n is a valid nonce: printable ASCII other
// than ','.
func printableNonce(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}
