package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testPKI makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, and writes the server's files and the
// CA to dir.
type testPKI struct {
	caFile, certFile, keyFile string
	ca                        *x509.Certificate
	caKey                     *ecdsa.PrivateKey
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "server.pem"), keyFile: filepath.Join(dir, "server.key")}
	var err error
	p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	writePEM(t, p.caFile, "CERTIFICATE", der)

	cert, key := p.issue(t, pkix.Name{CommonName: "broker"}, x509.ExtKeyUsageServerAuth)
	writePEM(t, p.certFile, "CERTIFICATE", cert.Certificate[0])
	kder, _ := x509.MarshalECPrivateKey(key)
	writePEM(t, p.keyFile, "EC PRIVATE KEY", kder)
	return p
}

func (p *testPKI) issue(t *testing.T, subject pkix.Name, usage x509.ExtKeyUsage) (tls.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// handshake runs a TLS handshake over a real loopback socket and returns the
// server's view of the connection, or the server's handshake error.
func handshake(t *testing.T, server *tls.Config, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tc := c.(*tls.Conn)
		err = tc.HandshakeContext(ctx)
		done <- result{tc.ConnectionState(), err}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err == nil {
		// TLS 1.3 reports a rejected client certificate on the first read.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		c.Read(make([]byte, 1))
		c.Close()
	}
	r := <-done
	return r.cs, r.err
}

func TestServerTLSConfigMutual(t *testing.T) {
	p := newTestPKI(t)
	cfg, err := ServerTLSConfig(p.certFile, p.keyFile, p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	clientCert, _ := p.issue(t, pkix.Name{CommonName: "alice", Organization: []string{"runnel"}}, x509.ExtKeyUsageClientAuth)
	cs, err := handshake(t, cfg, &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{clientCert}})
	if err != nil {
		t.Fatalf("mTLS handshake: %v", err)
	}
	pr, ok := PrincipalFromTLS(cs)
	if !ok || pr.String() != "User:CN=alice,O=runnel" {
		t.Fatalf("principal %v, %v", pr, ok)
	}

	// No client certificate: refused.
	if _, err := handshake(t, cfg, &tls.Config{RootCAs: p.pool}); err == nil {
		t.Fatal("client without a certificate accepted")
	}
	// A certificate from another CA: refused.
	other := newTestPKI(t)
	stranger, _ := other.issue(t, pkix.Name{CommonName: "alice", Organization: []string{"runnel"}}, x509.ExtKeyUsageClientAuth)
	if _, err := handshake(t, cfg, &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{stranger}}); err == nil {
		t.Fatal("client certificate of another CA accepted")
	}
}

func TestServerTLSConfigServerOnly(t *testing.T) {
	p := newTestPKI(t)
	cfg, err := ServerTLSConfig(p.certFile, p.keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := handshake(t, cfg, &tls.Config{RootCAs: p.pool})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if _, ok := PrincipalFromTLS(cs); ok {
		t.Fatal("principal without a client certificate")
	}
	if _, err := handshake(t, cfg, &tls.Config{RootCAs: p.pool, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}

	if _, err := ServerTLSConfig(p.certFile, p.keyFile, p.keyFile); err == nil {
		t.Fatal("client CA file without certificates accepted")
	}
	if _, err := ServerTLSConfig(p.certFile, p.caFile, ""); err == nil {
		t.Fatal("mismatched key accepted")
	}
	if _, err := ServerTLSConfig(filepath.Join(t.TempDir(), "none"), p.keyFile, ""); err == nil {
		t.Fatal("missing certificate accepted")
	}
}

func TestPrincipalParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		want Principal
	}{
		{"User:alice", true, User("alice")},
		{"User:CN=a,O=b:c", true, User("CN=a,O=b:c")},
		{"Group:ops", true, Principal{"Group", "ops"}},
		{"alice", false, Principal{}},
		{":alice", false, Principal{}},
		{"User:", false, Principal{}},
	} {
		got, ok := ParsePrincipal(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("ParsePrincipal(%q) = %v, %v", c.in, got, ok)
		}
		if ok && got.String() != c.in {
			t.Errorf("%q does not round-trip: %q", c.in, got.String())
		}
	}
	if _, ok := PrincipalFromTLS(tls.ConnectionState{}); ok {
		t.Fatal("principal from an incomplete handshake")
	}
}
