package runtime_test

import (
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

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/runnel-io/runnel/broker"
	"github.com/runnel-io/runnel/processor"
)

// TestSecuredLog runs a topology against a log that requires TLS and
// SASL/SCRAM, with Options.TLS and Options.SASL, as a user allowed only by
// the ACLs the README lists for an application.
func TestSecuredLog(t *testing.T) {
	dir := t.TempDir()
	pool, certFile, keyFile := testCerts(t)

	// The user is made before security is on, then the log restarts
	// secured with it as a super user.
	b, err := broker.Start(t.Context(), broker.Config{Addr: "127.0.0.1:0", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	res, err := kadm.NewClient(cl).AlterUserSCRAMs(t.Context(), nil, []kadm.UpsertSCRAM{
		{User: "admin", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "admin-secret"},
		{User: "app", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "app-secret"}})
	cl.Close()
	if err != nil || res.Error() != nil {
		t.Fatalf("create user: %v %v", err, res.Error())
	}
	b.Close()
	b, err = broker.Start(t.Context(), broker.Config{Addr: "127.0.0.1:0", Dir: dir, TLSCertFile: certFile, TLSKeyFile: keyFile,
		SASL: true, SuperUsers: []string{"User:admin"}, GroupInitialRebalanceDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	tlsCfg := &tls.Config{RootCAs: pool}
	admCl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DialTLSConfig(tlsCfg),
		kgo.SASL(scram.Auth{User: "admin", Pass: "admin-secret"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	for _, a := range []*kadm.ACLBuilder{
		kadm.NewACLs().Allow("User:app").AllowHosts("*").Topics("events", "counter").Operations(kadm.OpAll).ResourcePatternType(kadm.ACLPatternPrefixed),
		kadm.NewACLs().Allow("User:app").AllowHosts("*").Groups("counter").Operations(kadm.OpRead).ResourcePatternType(kadm.ACLPatternPrefixed),
	} {
		rs, err := kadm.NewClient(admCl).CreateACLs(t.Context(), a)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Err != nil {
				t.Fatalf("create ACL: %v", r.Err)
			}
		}
	}

	g, topo := countTopology(t, processor.Stop(), nil)
	opts := options(t, []string{b.Addr()}, t.TempDir(), 2)
	opts.TLS = tlsCfg
	opts.SASL = scram.Auth{User: "app", Pass: "app-secret"}.AsSha512Mechanism()
	in := startInstance(t, topo, opts)
	want := emit(t, in.rt, 1000, 50, func(int) string { return "x" })
	awaitCounts(t, in.rt, g, want)
}

// testCerts makes a throwaway CA and a certificate for 127.0.0.1 signed
// by it, and returns the CA as a pool and the certificate and key files.
func testCerts(t *testing.T) (*x509.CertPool, string, string) {
	t.Helper()
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
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "broker.pem"), filepath.Join(dir, "broker.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, certFile, keyFile
}
