package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runnel-io/runnel/broker"
)

// writeTestCerts writes a throwaway CA and a broker certificate for
// 127.0.0.1 signed by it, and returns the CA, certificate and key files.
func writeTestCerts(t *testing.T) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "broker.pem"), filepath.Join(dir, "broker.key")
	for f, b := range map[string]*pem.Block{caFile: {Type: "CERTIFICATE", Bytes: caDER}, certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(f, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// TestSecuredSetup walks the README's secured setup with the CLI: the
// first user is made while the broker runs without SASL on loopback; then,
// with TLS, SASL and that user a super user, the admin makes another user
// and its ACLs, and the user produces where allowed and is refused a
// delete.
func TestSecuredSetup(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTestCerts(t)

	// 1. The first user, before security is on.
	b, err := broker.Start(t.Context(), broker.Config{Addr: "127.0.0.1:0", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(userPasswordEnv, "admin-secret")
	mustRun(t, "users", "create", "admin", "--brokers", b.Addr())
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// 2. Secured.
	b, err = broker.Start(t.Context(), broker.Config{Addr: "127.0.0.1:0", Dir: dir, TLSCertFile: certFile, TLSKeyFile: keyFile,
		SASL: true, SuperUsers: []string{"User:admin"}, DisableAutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	conn := func(user string) []string {
		return []string{"--brokers", b.Addr(), "--tls-ca", caFile, "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-user", user}
	}
	as := func(user string, args ...string) []string { return append(args, conn(user)...) }

	t.Setenv(saslPasswordEnv, "admin-secret")
	t.Setenv(userPasswordEnv, "alice-secret")
	mustRun(t, as("admin", "users", "create", "alice")...)
	if out := mustRun(t, as("admin", "users", "list")...); !strings.Contains(out, "alice") || !strings.Contains(out, "SCRAM-SHA-512") {
		t.Fatalf("users list:\n%s", out)
	}
	mustRun(t, as("admin", "topics", "create", "orders", "--partitions", "1")...)
	mustRun(t, as("admin", "acls", "add", "--principal", "User:alice", "--operation", "write,describe", "--topic", "orders")...)
	out := mustRun(t, as("admin", "acls", "list", "--principal", "User:alice")...)
	if !strings.Contains(out, "orders") || !strings.Contains(out, "write") || !strings.Contains(out, "describe") {
		t.Fatalf("acls list:\n%s", out)
	}

	t.Setenv(saslPasswordEnv, "alice-secret")
	input := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(input, []byte("o1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, as("alice", "produce", "orders", "--file", input)...)
	wantFailure(t, 1, "TOPIC_AUTHORIZATION_FAILED", as("alice", "topics", "delete", "orders")...)
	wantFailure(t, 1, "SASL_AUTHENTICATION_FAILED", append(as("alice", "topics", "list"), "--sasl-user", "mallory")...)

	// Removing the ACL takes the right away.
	t.Setenv(saslPasswordEnv, "admin-secret")
	if out := mustRun(t, as("admin", "acls", "remove", "--principal", "User:alice", "--topic", "orders")...); !strings.Contains(out, "removed 2 ACLs") {
		t.Fatalf("acls remove: %s", out)
	}
	mustRun(t, as("admin", "users", "delete", "alice")...)
	if out := mustRun(t, as("admin", "users", "list")...); strings.Contains(out, "alice") {
		t.Fatalf("alice still listed after delete:\n%s", out)
	}
}

// TestServeRefusesExposure: runnel serve will not listen beyond loopback
// without TLS and authentication unless --insecure says so.
func TestServeRefusesExposure(t *testing.T) {
	r := wantFailure(t, 1, "not a loopback address", "serve", "--addr", "0.0.0.0:0", "--data", t.TempDir())
	if !strings.Contains(r.stderr, "--insecure") {
		t.Fatalf("the refusal does not name --insecure:\n%s", r.stderr)
	}
	for _, c := range []struct {
		p    listenPlan
		ok   bool
		desc string
	}{
		{listenPlan{addr: "127.0.0.1:9092"}, true, "loopback"},
		{listenPlan{addr: "localhost:9092"}, true, "localhost"},
		{listenPlan{addr: "[::1]:9092"}, true, "IPv6 loopback"},
		{listenPlan{addr: ":9092"}, false, "every interface"},
		{listenPlan{addr: "0.0.0.0:9092", tls: true}, false, "TLS without authentication"},
		{listenPlan{addr: "0.0.0.0:9092", sasl: true}, false, "SASL without TLS"},
		{listenPlan{addr: "0.0.0.0:9092", tls: true, sasl: true}, true, "TLS and SASL"},
		{listenPlan{addr: "0.0.0.0:9092", tls: true, mtls: true}, true, "mutual TLS"},
		{listenPlan{addr: "0.0.0.0:9092", tlsAddr: "0.0.0.0:9093", tls: true, sasl: true}, false, "a plaintext listener beside TLS"},
		{listenPlan{addr: "127.0.0.1:9092", tlsAddr: "0.0.0.0:9093", tls: true, sasl: true}, true, "plaintext on loopback, TLS outside"},
	} {
		err := checkExposure(c.p, false, slog.New(slog.DiscardHandler))
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.desc, err, c.ok)
		}
		if err := checkExposure(c.p, true, slog.New(slog.DiscardHandler)); err != nil {
			t.Errorf("%s with --insecure: %v", c.desc, err)
		}
	}
}
