package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

func TestUsersDurable(t *testing.T) {
	dir := t.TempDir()
	u, err := OpenUsers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.SetPassword("alice", ScramSHA256, "pw-1", 0); err != nil {
		t.Fatal(err)
	}
	if err := u.SetPassword("alice", ScramSHA512, "pw-1", MaxIterations); err != nil {
		t.Fatal(err)
	}
	if err := u.SetPassword("bob", ScramSHA512, "pw-2", MinIterations); err != nil {
		t.Fatal(err)
	}
	if err := u.Delete("alice", ScramSHA256); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, UsersFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "pw-1") || strings.Contains(string(raw), "pw-2") {
		t.Fatal("the users file holds a password")
	}
	if st, _ := os.Stat(filepath.Join(dir, UsersFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("users file mode %v", st.Mode())
	}

	r, err := OpenUsers(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := r.List()
	if len(got) != 2 || got[0].Name != "alice" || got[1].Name != "bob" ||
		len(got[0].Credentials) != 1 || got[0].Credentials[0] != (CredentialInfo{ScramSHA512, MaxIterations}) ||
		got[1].Credentials[0] != (CredentialInfo{ScramSHA512, MinIterations}) {
		t.Fatalf("reopened users: %+v", got)
	}
	if !r.VerifyPlain("alice", "pw-1") || r.VerifyPlain("alice", "pw-2") || !r.VerifyPlain("bob", "pw-2") || r.VerifyPlain("carol", "") {
		t.Fatal("reopened store verifies wrongly")
	}
	// A SCRAM login works against the reopened store.
	s := NewSession(SessionConfig{Users: r})
	if resp, err := exchange(t, s, scram.Auth{User: "bob", Pass: "pw-2"}.AsSha512Mechanism()); err != nil || resp.ErrorCode != 0 {
		t.Fatalf("scram after reopen: %v %d", err, resp.ErrorCode)
	}

	if err := r.DeleteUser("alice"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteUser("alice"); !errors.Is(err, ErrNoCredential) {
		t.Fatalf("second delete: %v", err)
	}
	if err := r.Delete("bob", ScramSHA256); !errors.Is(err, ErrNoCredential) {
		t.Fatalf("delete of a missing mechanism: %v", err)
	}
	r2, err := OpenUsers(dir)
	if err != nil || r2.Len() != 1 {
		t.Fatalf("after delete: %v, %d users", err, r2.Len())
	}

	for _, bad := range []func() error{
		func() error { return u.SetPassword("", ScramSHA256, "x", 0) },
		func() error { return u.SetPassword("a\x00b", ScramSHA256, "x", 0) },
		func() error { return u.SetPassword("a", ScramSHA256, "", 0) },
		func() error { return u.SetPassword("a", Mechanism(3), "x", 0) },
		func() error { return u.SetPassword("a", ScramSHA256, "x", MinIterations-1) },
		func() error { return u.SetPassword("a", ScramSHA256, "x", MaxIterations+1) },
	} {
		if bad() == nil {
			t.Error("bad credential accepted")
		}
	}

	if err := os.WriteFile(filepath.Join(dir, UsersFile), []byte(`{"version":1,"users":{"a":{"SCRAM-SHA-256":{"salt":"AA==","iterations":1}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenUsers(dir); err == nil {
		t.Fatal("users file with a bad credential opened")
	}
}

// TestAlterUserScramThenLogin sets credentials as a Kafka admin client does
// (salting the password on the client and sending the salted password), and
// logs in with them through both SCRAM mechanisms and PLAIN.
func TestAlterUserScramThenLogin(t *testing.T) {
	dir := t.TempDir()
	u, err := OpenUsers(dir)
	if err != nil {
		t.Fatal(err)
	}
	upsert := func(name string, m Mechanism, pass string, iters int32) kmsg.AlterUserSCRAMCredentialsRequestUpsertion {
		salt := make([]byte, 16)
		rand.Read(salt)
		sp, err := SaltPassword(m, pass, salt, int(iters))
		if err != nil {
			t.Fatal(err)
		}
		up := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
		up.Name, up.Mechanism, up.Iterations, up.Salt, up.SaltedPassword = name, int8(m), iters, salt, sp
		return up
	}
	del := func(name string, m int8) kmsg.AlterUserSCRAMCredentialsRequestDeletion {
		d := kmsg.NewAlterUserSCRAMCredentialsRequestDeletion()
		d.Name, d.Mechanism = name, m
		return d
	}
	req := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	req.Upsertions = []kmsg.AlterUserSCRAMCredentialsRequestUpsertion{
		upsert("alice", ScramSHA256, "a-pass", 4096),
		upsert("alice", ScramSHA512, "a-pass", 4096),
		upsert("bob", ScramSHA256, "b-pass", 4000),    // too few iterations
		upsert("carol", ScramSHA256, "c-pass", 4096),  // twice: duplicate
		upsert("carol", ScramSHA256, "c-pass2", 4096), //
		upsert("", ScramSHA256, "x", 4096),            // no name
	}
	bad := upsert("dave", ScramSHA256, "d", 4096)
	bad.Mechanism = 7
	req.Upsertions = append(req.Upsertions, bad)
	req.Deletions = []kmsg.AlterUserSCRAMCredentialsRequestDeletion{del("erin", 1)} // does not exist
	resp := wireResp(t, u.HandleAlterUserScram(wireReq(t, req), true))
	want := map[string]int16{
		"alice": 0,
		"bob":   kerr.UnacceptableCredential.Code,
		"carol": kerr.DuplicateResource.Code,
		"":      kerr.UnacceptableCredential.Code,
		"dave":  kerr.UnsupportedSaslMechanism.Code,
		"erin":  kerr.ResourceNotFound.Code,
	}
	if len(resp.Results) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(resp.Results), len(want), resp.Results)
	}
	for _, r := range resp.Results {
		if code, ok := want[r.User]; !ok || code != r.ErrorCode {
			t.Errorf("user %q: code %d, want %d", r.User, r.ErrorCode, code)
		}
		if r.ErrorCode != 0 && r.ErrorMessage == nil {
			t.Errorf("user %q: error without message", r.User)
		}
	}
	if u.Len() != 1 {
		t.Fatalf("%d users stored, want only alice", u.Len())
	}
	for _, m := range []func() (*kmsg.SASLAuthenticateResponse, error){
		func() (*kmsg.SASLAuthenticateResponse, error) {
			return exchange(t, newSession(u), scram.Auth{User: "alice", Pass: "a-pass"}.AsSha256Mechanism())
		},
		func() (*kmsg.SASLAuthenticateResponse, error) {
			return exchange(t, newSession(u), scram.Auth{User: "alice", Pass: "a-pass"}.AsSha512Mechanism())
		},
	} {
		if resp, err := m(); err != nil || resp.ErrorCode != 0 {
			t.Fatalf("login with altered credentials: %v %d", err, resp.ErrorCode)
		}
	}
	if !u.VerifyPlain("alice", "a-pass") {
		t.Fatal("PLAIN does not verify the altered credential")
	}

	// Describe: all users, named ones, a missing one, a duplicate.
	d := kmsg.NewPtrDescribeUserSCRAMCredentialsRequest()
	dresp := wireResp(t, u.HandleDescribeUserScram(wireReq(t, d), true))
	if len(dresp.Results) != 1 || dresp.Results[0].User != "alice" || len(dresp.Results[0].CredentialInfos) != 2 ||
		dresp.Results[0].CredentialInfos[0].Mechanism != 1 || dresp.Results[0].CredentialInfos[1].Iterations != 4096 {
		t.Fatalf("describe all: %+v", dresp.Results)
	}
	for _, n := range []string{"alice", "zed", "bob", "bob"} {
		ru := kmsg.NewDescribeUserSCRAMCredentialsRequestUser()
		ru.Name = n
		d.Users = append(d.Users, ru)
	}
	dresp = wireResp(t, u.HandleDescribeUserScram(wireReq(t, d), true))
	codes := map[string]int16{}
	for _, r := range dresp.Results {
		codes[r.User] = r.ErrorCode
	}
	if len(dresp.Results) != 3 || codes["alice"] != 0 || codes["zed"] != kerr.ResourceNotFound.Code || codes["bob"] != kerr.DuplicateResource.Code {
		t.Fatalf("describe named: %+v", dresp.Results)
	}
	if r := u.HandleDescribeUserScram(d, false); r.ErrorCode != kerr.ClusterAuthorizationFailed.Code || len(r.Results) != 0 {
		t.Fatalf("unauthorized describe: %d", r.ErrorCode)
	}

	// Unauthorized alter changes nothing; an authorized delete does, durably.
	req = kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	req.Deletions = []kmsg.AlterUserSCRAMCredentialsRequestDeletion{del("alice", 1)}
	if r := u.HandleAlterUserScram(req, false); r.Results[0].ErrorCode != kerr.ClusterAuthorizationFailed.Code {
		t.Fatalf("unauthorized alter: %d", r.Results[0].ErrorCode)
	}
	if _, ok := u.Lookup("alice", ScramSHA256); !ok {
		t.Fatal("unauthorized alter deleted a credential")
	}
	if r := u.HandleAlterUserScram(req, true); r.Results[0].ErrorCode != 0 {
		t.Fatalf("delete: %d", r.Results[0].ErrorCode)
	}
	re, err := OpenUsers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := re.Lookup("alice", ScramSHA256); ok {
		t.Fatal("deleted credential back after reopen")
	}
	if _, ok := re.Lookup("alice", ScramSHA512); !ok {
		t.Fatal("kept credential lost after reopen")
	}
}

// TestSCRAMRFC7677Vector checks the server side against the example
// exchange of RFC 7677 section 3 (user "user", password "pencil").
func TestSCRAMRFC7677Vector(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	sp, err := SaltPassword(ScramSHA256, "pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	u, err := OpenUsers(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := u.SetSalted("user", ScramSHA256, salt, sp, 4096); err != nil {
		t.Fatal(err)
	}
	s := &scramServer{mech: ScramSHA256, users: u}
	if _, err := s.first([]byte("n,,n=user,r=rOprNGfwEbeRWgbNEkqO")); err != nil {
		t.Fatal(err)
	}
	// Put the RFC's server nonce in place of our random one, to reproduce
	// its AuthMessage.
	s.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	s.serverFirst = "r=" + s.nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	out, err := s.final([]byte("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
	if err != nil {
		t.Fatalf("RFC 7677 proof refused: %v", err)
	}
	if string(out) != "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=" {
		t.Fatalf("server-final %q", out)
	}
}

// TestAlterUserScramNothingValidWritesNothing: a request whose every change
// is refused leaves the data directory as it was.
func TestAlterUserScramNothingValidWritesNothing(t *testing.T) {
	dir := t.TempDir()
	u, err := OpenUsers(dir)
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	d := kmsg.NewAlterUserSCRAMCredentialsRequestDeletion()
	d.Name, d.Mechanism = "nobody", 1
	req.Deletions = append(req.Deletions, d)
	if r := u.HandleAlterUserScram(req, true); r.Results[0].ErrorCode != kerr.ResourceNotFound.Code {
		t.Fatalf("code %d", r.Results[0].ErrorCode)
	}
	if _, err := os.Stat(filepath.Join(dir, UsersFile)); !os.IsNotExist(err) {
		t.Fatalf("users file written for a request that changed nothing: %v", err)
	}
}
