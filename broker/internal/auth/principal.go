package auth

import (
	"crypto/tls"
	"strings"
)

// PrincipalType is the type of every principal this broker authenticates,
// as in Kafka, where principals are written "User:<name>".
const PrincipalType = "User"

// Anonymous returns the principal of a connection that did not
// authenticate, User:ANONYMOUS, as Kafka names it.
func Anonymous() Principal { return Principal{Type: PrincipalType, Name: "ANONYMOUS"} }

// A Principal is an authenticated identity: a SASL user name, or the subject
// of a verified client certificate. ACLs and super users name principals by
// their String form, "User:alice".
type Principal struct {
	Type string
	Name string
}

// User returns the principal User:name.
func User(name string) Principal { return Principal{Type: PrincipalType, Name: name} }

// String returns the principal as ACLs write it: "Type:Name".
func (p Principal) String() string { return p.Type + ":" + p.Name }

// IsZero reports whether p is the zero Principal (no identity at all).
func (p Principal) IsZero() bool { return p == Principal{} }

// ParsePrincipal parses "Type:Name". Both parts must be non-empty; the name
// may itself contain colons (a certificate subject can), so the split is at
// the first one.
func ParsePrincipal(s string) (Principal, bool) {
	typ, name, ok := strings.Cut(s, ":")
	if !ok || typ == "" || name == "" {
		return Principal{}, false
	}
	return Principal{Type: typ, Name: name}, true
}

// PrincipalFromTLS returns the principal of a TLS connection whose client
// presented a certificate that was verified against the client CA: User:
// followed by the certificate subject's distinguished name in RFC 2253 form
// (for example "User:CN=alice,O=runnel"), which is what Kafka's default SSL
// principal builder yields. It reports false when the handshake has not
// completed or no verified client certificate was presented, so that an
// unverified certificate never names anybody.
func PrincipalFromTLS(cs tls.ConnectionState) (Principal, bool) {
	if !cs.HandshakeComplete || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Principal{}, false
	}
	return User(cs.VerifiedChains[0][0].Subject.String()), true
}
