package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/runnel-io/runnel/broker/internal/auth"
)

// testPKI is a throwaway CA with a broker certificate for 127.0.0.1, made
// for one test.
type testPKI struct {
	dir                       string
	caFile, certFile, keyFile string
	ca                        *x509.Certificate
	caKey                     *ecdsa.PrivateKey
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{dir: dir, caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "broker.pem"), keyFile: filepath.Join(dir, "broker.key")}
	var err error
	if p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "runnel test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	writePEM(t, p.caFile, "CERTIFICATE", der)
	p.issueFiles(t, pkix.Name{CommonName: "broker"}, x509.ExtKeyUsageServerAuth, p.certFile, p.keyFile)
	return p
}

// issue makes a certificate for subject signed by the CA.
func (p *testPKI) issue(t *testing.T, subject pkix.Name, usage x509.ExtKeyUsage) (der []byte, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	if der, err = x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey); err != nil {
		t.Fatal(err)
	}
	return der, key
}

// issueFiles writes a certificate for subject and its key as PEM files.
func (p *testPKI) issueFiles(t *testing.T, subject pkix.Name, usage x509.ExtKeyUsage, certFile, keyFile string) {
	t.Helper()
	der, key := p.issue(t, subject, usage)
	writePEM(t, certFile, "CERTIFICATE", der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
}

// clientTLS is a client configuration trusting the CA, with a client
// certificate for subject if it is not empty.
func (p *testPKI) clientTLS(t *testing.T, subject string) *tls.Config {
	cfg := &tls.Config{RootCAs: p.pool, MinVersion: tls.VersionTLS12}
	if subject != "" {
		der, key := p.issue(t, pkix.Name{CommonName: subject, Organization: []string{"runnel"}}, x509.ExtKeyUsageClientAuth)
		cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}
	}
	return cfg
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// addUser stores a user's SCRAM-SHA-256 and -512 credentials in dir before
// the broker starts: how the first user (a super user) comes to exist.
func addUser(t *testing.T, dir, name, password string) {
	t.Helper()
	u, err := auth.OpenUsers(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range auth.Mechanisms() {
		if err := u.SetPassword(name, m, password, 4096); err != nil {
			t.Fatal(err)
		}
	}
}

// securedBroker starts a broker whose only listener serves TLS and needs
// SASL, with User:admin (password admin-secret) a super user.
func securedBroker(t *testing.T, p *testPKI, opts ...func(*Config)) *Broker {
	t.Helper()
	dir := t.TempDir()
	addUser(t, dir, "admin", "admin-secret")
	return startBroker(t, dir, append([]func(*Config){func(c *Config) {
		c.TLSCertFile, c.TLSKeyFile = p.certFile, p.keyFile
		c.SASL = true
		c.SuperUsers = []string{"User:admin"}
		c.GroupInitialRebalanceDelay = -1
	}}, opts...)...)
}

// scramClient is a franz-go client of b over TLS as user, with SCRAM-SHA-512.
func scramClient(t *testing.T, b *Broker, p *testPKI, user, password string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return newKgo(t, b, append([]kgo.Opt{
		kgo.DialTLSConfig(p.clientTLS(t, "")),
		kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()),
	}, opts...)...)
}

// TestSecuredFranzGo runs franz-go over TLS with SCRAM against a broker
// with ACLs: the admin makes a user and its ACLs through the Kafka APIs;
// the user produces and consumes in a group on what it is allowed, and gets
// the *_AUTHORIZATION_FAILED codes elsewhere.
func TestSecuredFranzGo(t *testing.T) {
	p := newTestPKI(t)
	b := securedBroker(t, p)
	ctx := ctxFor(t)
	adm := kadm.NewClient(scramClient(t, b, p, "admin", "admin-secret"))

	// The user, through AlterUserScramCredentials.
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "alice", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "alice-secret"}})
	if err != nil || res.Error() != nil {
		t.Fatalf("create user: %v %v", err, res.Error())
	}
	for _, topic := range []string{"orders", "secret"} {
		if r, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil || r.Err != nil {
			t.Fatalf("create topic %s: %v %v", topic, err, r.Err)
		}
	}
	acls := kadm.NewACLs().Allow("User:alice").Topics("orders").Operations(kadm.OpWrite, kadm.OpRead).
		ResourcePatternType(kadm.ACLPatternLiteral)
	groupACL := kadm.NewACLs().Allow("User:alice").Groups("readers").Operations(kadm.OpRead).
		ResourcePatternType(kadm.ACLPatternLiteral)
	for _, a := range []*kadm.ACLBuilder{acls, groupACL} {
		rs, err := adm.CreateACLs(ctx, a)
		if err != nil {
			t.Fatalf("create ACLs: %v", err)
		}
		for _, r := range rs {
			if r.Err != nil {
				t.Fatalf("create ACL: %v", r.Err)
			}
		}
	}

	// Allowed: produce (idempotent, which needs Write on some topic) and
	// consume in the group.
	alice := scramClient(t, b, p, "alice", "alice-secret")
	if err := alice.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("o1")}).FirstErr(); err != nil {
		t.Fatalf("alice produce to orders: %v", err)
	}
	reader := scramClient(t, b, p, "alice", "alice-secret", kgo.ConsumerGroup("readers"), kgo.ConsumeTopics("orders"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	fs := reader.PollRecords(ctx, 1)
	if err := fs.Err0(); err != nil || len(fs.Records()) != 1 || string(fs.Records()[0].Value) != "o1" {
		t.Fatalf("alice consume in group readers: %v %v", err, fs.Records())
	}
	if err := reader.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("alice commit: %v", err)
	}

	// Denied: another topic, another group, an admin action.
	err = alice.ProduceSync(ctx, &kgo.Record{Topic: "secret", Value: []byte("x")}).FirstErr()
	if !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("alice produce to secret: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	aliceAdm := kadm.NewClient(alice)
	if _, err := aliceAdm.FetchOffsets(ctx, "other"); !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Fatalf("alice fetch offsets of group other: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}
	dr, err := aliceAdm.DeleteTopics(ctx, "orders")
	if err != nil || !errors.Is(dr["orders"].Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("alice delete topic: %v %v, want TOPIC_AUTHORIZATION_FAILED", err, dr["orders"].Err)
	}
	if err := describeACLsErr(ctx, alice); !errors.Is(err, kerr.ClusterAuthorizationFailed) {
		t.Fatalf("alice describe ACLs: %v, want CLUSTER_AUTHORIZATION_FAILED", err)
	}
	// A listing leaves out what alice may not describe.
	tds, err := aliceAdm.ListTopics(ctx)
	if err != nil || len(tds) != 1 || !tds.Has("orders") {
		t.Fatalf("alice lists topics %v (%v), want only orders", tds.Names(), err)
	}
	// Groups and transactional ids: a listing leaves out what she may
	// not describe, and a description names what she may not see with
	// its own error, beside what she may.
	if _, err := adm.CommitOffsets(ctx, "other", kadm.OffsetsFromRecords(kgo.Record{Topic: "orders", Offset: 0})); err != nil {
		t.Fatalf("admin commits for group other: %v", err)
	}
	listed, err := aliceAdm.ListGroups(ctx)
	if err != nil || !slices.Equal(listed.Groups(), []string{"readers"}) {
		t.Fatalf("alice lists groups %v (%v), want only readers", listed.Groups(), err)
	}
	// Sent straight to the broker, not through kadm, which would stop at
	// FindCoordinator's own check of the group.
	node := alice.Broker(int(b.cfg.NodeID))
	dg := kmsg.NewPtrDescribeGroupsRequest()
	dg.Groups = []string{"readers", "other"}
	dgr, err := dg.RequestWith(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]int16{}
	for _, g := range dgr.Groups {
		codes[g.Group] = g.ErrorCode
	}
	if len(codes) != 2 || codes["readers"] != 0 || codes["other"] != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("alice describes groups readers and other: codes %v, want readers 0 and other GROUP_AUTHORIZATION_FAILED", codes)
	}
	del := kmsg.NewPtrDeleteGroupsRequest()
	del.Groups = []string{"other"}
	delr, err := del.RequestWith(ctx, node)
	if err != nil || len(delr.Groups) != 1 || delr.Groups[0].ErrorCode != kerr.GroupAuthorizationFailed.Code {
		t.Fatalf("alice deletes group other: %v %+v, want GROUP_AUTHORIZATION_FAILED", err, delr)
	}
	if _, err := adm.DescribeGroups(ctx, "other"); err != nil {
		t.Fatalf("group other after alice's delete: %v", err)
	}
	dt := kmsg.NewPtrDescribeTransactionsRequest()
	dt.TransactionalIDs = []string{"someone-elses"}
	dtr, err := dt.RequestWith(ctx, node)
	if err != nil || len(dtr.TransactionStates) != 1 || dtr.TransactionStates[0].ErrorCode != kerr.TransactionalIDAuthorizationFailed.Code {
		t.Fatalf("alice describes a transactional id: %v %+v, want TRANSACTIONAL_ID_AUTHORIZATION_FAILED", err, dtr)
	}

	// Her own denial does not disturb the admin: the topic still exists.
	if tds, err := adm.ListTopics(ctx, "orders", "secret"); err != nil || len(tds) != 2 || tds.Error() != nil {
		t.Fatalf("admin lists topics: %v %v", err, tds.Error())
	}
}

// TestSASLBeforeAuthenticationCloses sends a request other than
// ApiVersions, SaslHandshake and SaslAuthenticate before authenticating (an
// anonymous DeleteTopics among them): the broker closes the connection and
// does nothing.
func TestSASLBeforeAuthenticationCloses(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir, func(c *Config) { c.SASL = true })
	createTopic(t, b, "keep", 1)

	raw := dialRaw(t, b)
	if resp := raw.roundTrip(kmsg.NewPtrApiVersionsRequest()).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 {
		t.Fatalf("ApiVersions before authenticating: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	del := kmsg.NewPtrDeleteTopicsRequest()
	del.Version = 5
	del.TopicNames = []string{"keep"}
	raw.send(del)
	raw.expectClosed()
	if b.Log().Topic("keep") == nil {
		t.Fatal("an anonymous DeleteTopics deleted the topic")
	}

	// A failed authentication is answered, then closed.
	raw = dialRaw(t, b)
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	if resp := raw.roundTrip(hs).(*kmsg.SASLHandshakeResponse); resp.ErrorCode != 0 {
		t.Fatalf("handshake: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	au := kmsg.NewPtrSASLAuthenticateRequest()
	au.Version, au.SASLAuthBytes = 2, []byte("\x00nobody\x00wrong")
	if resp := raw.roundTrip(au).(*kmsg.SASLAuthenticateResponse); resp.ErrorCode != kerr.SaslAuthenticationFailed.Code {
		t.Fatalf("authenticate with a wrong password: %v, want SASL_AUTHENTICATION_FAILED", kerr.ErrorForCode(resp.ErrorCode))
	}
	raw.expectClosed()
}

// TestAnonymousDeleteTopicsRefused: with mutual TLS on a listener of its
// own, the plaintext listener's clients are User:ANONYMOUS, and with no ACL
// for them a DeleteTopics is refused; a client certificate names a
// principal that ACLs grant.
func TestAnonymousDeleteTopicsRefused(t *testing.T) {
	p := newTestPKI(t)
	b := startBroker(t, "", func(c *Config) {
		c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile = p.certFile, p.keyFile, p.caFile
		c.TLSAddr = "127.0.0.1:0"
	})
	createTopic(t, b, "keep", 1)
	createTopic(t, b, "bobs", 1)
	ctx := ctxFor(t)

	anon := kadm.NewClient(newKgo(t, b))
	dr, err := anon.DeleteTopics(ctx, "keep")
	if err != nil || !errors.Is(dr["keep"].Err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("anonymous delete: %v %v, want TOPIC_AUTHORIZATION_FAILED", err, dr["keep"].Err)
	}
	if b.Log().Topic("keep") == nil {
		t.Fatal("an anonymous DeleteTopics deleted the topic")
	}

	// The certificate's subject is the principal.
	if err := b.acls.Add(auth.ACL{ResourceType: kmsg.ACLResourceTypeTopic, ResourceName: "bobs", PatternType: kmsg.ACLResourcePatternTypeLiteral,
		Principal: "User:CN=bob,O=runnel", Host: "*", Operation: kmsg.ACLOperationWrite, Permission: kmsg.ACLPermissionTypeAllow}); err != nil {
		t.Fatal(err)
	}
	bob, err := kgo.NewClient(kgo.SeedBrokers(b.TLSAddr()), kgo.DialTLSConfig(p.clientTLS(t, "bob")))
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	if err := bob.ProduceSync(ctx, &kgo.Record{Topic: "bobs", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("bob (mTLS) produce to bobs: %v", err)
	}
	if err := bob.ProduceSync(ctx, &kgo.Record{Topic: "keep", Value: []byte("v")}).FirstErr(); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("bob (mTLS) produce to keep: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	// Without a client certificate the TLS listener refuses the handshake.
	nocert, err := kgo.NewClient(kgo.SeedBrokers(b.TLSAddr()), kgo.DialTLSConfig(p.clientTLS(t, "")))
	if err != nil {
		t.Fatal(err)
	}
	defer nocert.Close()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := nocert.Ping(pctx); err == nil {
		t.Fatal("a TLS client without a certificate reached an mTLS listener")
	}
}

// TestSecurityDisabled: without authentication the ACL APIs answer
// SECURITY_DISABLED, and the SASL APIs are not listed.
func TestSecurityDisabled(t *testing.T) {
	b := startBroker(t, "")
	cl := newKgo(t, b)
	adm := kadm.NewClient(cl)
	ctx := ctxFor(t)
	if err := describeACLsErr(ctx, cl); !errors.Is(err, kerr.SecurityDisabled) {
		t.Fatalf("describe ACLs without authorization: %v, want SECURITY_DISABLED", err)
	}
	vs, err := adm.ApiVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if _, _, ok := v.KeyVersions(kmsg.SASLHandshake.Int16()); ok {
			t.Fatal("SaslHandshake listed without SASL")
		}
	}
}

// describeACLsErr describes every ACL and returns the request's error.
func describeACLsErr(ctx context.Context, cl *kgo.Client) error {
	req := kmsg.NewPtrDescribeACLsRequest()
	req.ResourceType, req.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
	req.Operation, req.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(resp.ErrorCode)
}

// TestEveryAPIAuthorized: every API of the dispatch table says how it is
// authorized and the rules table knows it, so that none is served
// unchecked or, by an oversight, only to super users.
func TestEveryAPIAuthorized(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.SASL = true })
	for key, a := range b.apis {
		if a.guard == nil {
			t.Errorf("%s has no guard", kmsg.NameForKey(key))
		}
		if _, ok := auth.RulesFor(key); !ok {
			t.Errorf("%s is not in auth.RulesFor", kmsg.NameForKey(key))
		}
	}
}

// TestKcatSASLSCRAMOverTLS runs kcat (librdkafka) with SASL_SSL and
// SCRAM-SHA-256: it produces, consumes in a group, and is denied a topic
// with the right error.
func TestKcatSASLSCRAMOverTLS(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed")
	}
	p := newTestPKI(t)
	b := securedBroker(t, p)
	createTopic(t, b, "events", 1)
	createTopic(t, b, "secret", 1)
	addACL := func(typ kmsg.ACLResourceType, name string, ops ...kmsg.ACLOperation) {
		for _, op := range ops {
			if err := b.acls.Add(auth.ACL{ResourceType: typ, ResourceName: name, PatternType: kmsg.ACLResourcePatternTypeLiteral,
				Principal: "User:carol", Host: "*", Operation: op, Permission: kmsg.ACLPermissionTypeAllow}); err != nil {
				t.Fatal(err)
			}
		}
	}
	addACL(kmsg.ACLResourceTypeTopic, "events", kmsg.ACLOperationWrite, kmsg.ACLOperationRead)
	addACL(kmsg.ACLResourceTypeGroup, "kcat-readers", kmsg.ACLOperationRead)
	ctx := ctxFor(t)
	adm := kadm.NewClient(scramClient(t, b, p, "admin", "admin-secret"))
	if res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "carol", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "carol-secret"}}); err != nil || res.Error() != nil {
		t.Fatalf("create user: %v %v", err, res.Error())
	}
	run := func(stdin string, args ...string) (string, error) {
		args = append([]string{"-b", b.Addr(), "-X", "security.protocol=SASL_SSL", "-X", "ssl.ca.location=" + p.caFile,
			"-X", "sasl.mechanisms=SCRAM-SHA-256", "-X", "sasl.username=carol", "-X", "sasl.password=carol-secret"}, args...)
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, kcat, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("k1:v1\nk2:v2\n", "-P", "-t", "events", "-K", ":"); err != nil {
		t.Fatalf("kcat produce: %v\n%s", err, out)
	}
	out, err := run("", "-G", "kcat-readers", "-X", "auto.offset.reset=earliest", "-c", "2", "-e", "-f", "%k=%s\n", "events")
	if err != nil || !strings.Contains(out, "k1=v1") || !strings.Contains(out, "k2=v2") {
		t.Fatalf("kcat consume in a group: %v\n%s", err, out)
	}
	out, err = run("x\n", "-P", "-t", "secret")
	if err == nil || !strings.Contains(out, "Topic authorization failed") {
		t.Fatalf("kcat produce to a denied topic: %v\n%s", err, out)
	}
}

// TestKafkaPythonSASLPlain runs kafka-python with SASL PLAIN over plaintext
// on loopback, where PLAIN is allowed: it produces and reads back.
func TestKafkaPythonSASLPlain(t *testing.T) {
	if err := exec.Command("/usr/bin/python3", "-c", "import kafka").Run(); err != nil {
		t.Skip("kafka-python is not installed (/usr/bin/python3 -c 'import kafka' fails)")
	}
	dir := t.TempDir()
	addUser(t, dir, "dave", "dave-secret")
	b := startBroker(t, dir, func(c *Config) {
		c.SASL = true
		c.SuperUsers = []string{"User:dave"}
	})
	createTopic(t, b, "py", 1)
	script := `
import sys
from kafka import KafkaProducer, KafkaConsumer
kw = dict(bootstrap_servers=sys.argv[1], security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
          sasl_plain_username="dave", sasl_plain_password="dave-secret", api_version_auto_timeout_ms=10000)
p = KafkaProducer(**kw)
p.send("py", b"hello").get(timeout=20)
p.close()
c = KafkaConsumer("py", auto_offset_reset="earliest", consumer_timeout_ms=10000, **kw)
for m in c:
    print("got", m.value.decode())
    break
c.close()
`
	cctx, cancel := context.WithTimeout(ctxFor(t), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, "/usr/bin/python3", "-c", script, b.Addr()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "got hello") {
		t.Fatalf("kafka-python with SASL PLAIN: %v\n%s", err, out)
	}
}

// TestPlainRefusedOffLoopback: PLAIN is offered over TLS, and SCRAM is.
func TestPlainOverTLS(t *testing.T) {
	p := newTestPKI(t)
	b := securedBroker(t, p)
	cl := newKgo(t, b, kgo.DialTLSConfig(p.clientTLS(t, "")), kgo.SASL(plain.Auth{User: "admin", Pass: "admin-secret"}.AsMechanism()))
	if err := cl.Ping(ctxFor(t)); err != nil {
		t.Fatalf("PLAIN over TLS: %v", err)
	}
	bad := newKgo(t, b, kgo.DialTLSConfig(p.clientTLS(t, "")), kgo.SASL(scram.Auth{User: "admin", Pass: "wrong"}.AsSha256Mechanism()))
	if err := bad.Ping(ctxFor(t)); !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("SCRAM with a wrong password: %v, want SASL_AUTHENTICATION_FAILED", err)
	}
}
