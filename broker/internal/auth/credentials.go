package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// Mechanism is a SCRAM mechanism. Its values are those of the mechanism field
// of DescribeUserScramCredentials and AlterUserScramCredentials.
type Mechanism int8

// The SCRAM mechanisms, numbered as on the wire.
const (
	ScramSHA256 Mechanism = 1
	ScramSHA512 Mechanism = 2
)

// Mechanisms lists the SCRAM mechanisms, in wire order.
func Mechanisms() []Mechanism { return []Mechanism{ScramSHA256, ScramSHA512} }

// String returns the SASL name of m: "SCRAM-SHA-256" or "SCRAM-SHA-512".
func (m Mechanism) String() string {
	switch m {
	case ScramSHA256:
		return "SCRAM-SHA-256"
	case ScramSHA512:
		return "SCRAM-SHA-512"
	}
	return fmt.Sprintf("SCRAM-UNKNOWN(%d)", int8(m))
}

// ParseMechanism parses a SASL mechanism name, case-insensitively.
func ParseMechanism(s string) (Mechanism, bool) {
	switch strings.ToUpper(s) {
	case "SCRAM-SHA-256":
		return ScramSHA256, true
	case "SCRAM-SHA-512":
		return ScramSHA512, true
	}
	return 0, false
}

func (m Mechanism) valid() bool { return m == ScramSHA256 || m == ScramSHA512 }

func (m Mechanism) hash() func() hash.Hash {
	if m == ScramSHA512 {
		return sha512.New
	}
	return sha256.New
}

// Iteration bounds for SCRAM credentials. Kafka accepts 4096 to 16384
// iterations; clients (franz-go's among them) refuse fewer than 4096.
const (
	MinIterations     = 4096
	MaxIterations     = 16384
	DefaultIterations = 8192
)

// saltSize is the length of a salt made here. Credentials set through
// AlterUserScramCredentials bring their own salt.
const saltSize = 24

// A Credential is what the broker keeps of a SCRAM password (RFC 5802): the
// salt and iteration count, and the StoredKey and ServerKey derived from the
// salted password. Neither key lets anyone log in, and the password cannot
// be recovered from them except by guessing.
type Credential struct {
	Salt       []byte `json:"salt"`
	Iterations int    `json:"iterations"`
	StoredKey  []byte `json:"stored_key"`
	ServerKey  []byte `json:"server_key"`
}

// NewCredential derives a credential from a salted password, which is
// PBKDF2(password, salt, iterations) with m's hash, and what
// AlterUserScramCredentials carries instead of the password.
func NewCredential(m Mechanism, salt, saltedPassword []byte, iterations int) Credential {
	h := m.hash()
	clientKey := hmacSum(h, saltedPassword, []byte("Client Key"))
	stored := h()
	stored.Write(clientKey)
	return Credential{
		Salt:       slices.Clone(salt),
		Iterations: iterations,
		StoredKey:  stored.Sum(nil),
		ServerKey:  hmacSum(h, saltedPassword, []byte("Server Key")),
	}
}

// SaltPassword returns PBKDF2(password, salt, iterations) with m's hash: the
// SaltedPassword of RFC 5802, which a client computes and which
// AlterUserScramCredentials sends.
func SaltPassword(m Mechanism, password string, salt []byte, iterations int) ([]byte, error) {
	h := m.hash()
	sp, err := pbkdf2.Key(h, password, salt, iterations, h().Size())
	if err != nil {
		return nil, fmt.Errorf("salt password: %w", err)
	}
	return sp, nil
}

func hmacSum(h func() hash.Hash, key, msg []byte) []byte {
	mac := hmac.New(h, key)
	mac.Write(msg)
	return mac.Sum(nil)
}

// UsersFile is the name of the credentials file in the data directory.
const UsersFile = "users.json"

// usersFileVersion is the format version of UsersFile. The file is JSON:
//
//	{"version": 1,
//	 "users": {"alice": {"SCRAM-SHA-256": {"salt": "<base64>", "iterations": 8192,
//	                                         "stored_key": "<base64>", "server_key": "<base64>"}}}}
//
// A file with another version is refused rather than misread.
const usersFileVersion = 1

type usersFile struct {
	Version int                              `json:"version"`
	Users   map[string]map[string]Credential `json:"users"`
}

// Errors of the credential store.
var (
	// ErrNoCredential is returned when deleting a credential that does not exist.
	ErrNoCredential = errors.New("no such credential")
	// ErrBadCredential is returned for an unacceptable user name, password,
	// salt or iteration count.
	ErrBadCredential = errors.New("unacceptable credential")
	// ErrBadMechanism is returned for a mechanism other than SCRAM-SHA-256/512.
	ErrBadMechanism = errors.New("unsupported SCRAM mechanism")
)

// Users is the credential store: SCRAM credentials by user and mechanism,
// kept in memory and in UsersFile in the data directory. Every change is
// written to the file, atomically and durably, before it takes effect; a
// change that cannot be written is not made. Users is safe for concurrent
// use.
//
// The broker owns the file while it runs; `runnel users` edits it directly
// only while the broker is stopped, and uses AlterUserScramCredentials
// otherwise.
type Users struct {
	path string
	// pepper keys the fake credentials offered for unknown users, so that a
	// SCRAM exchange does not reveal which users exist, yet a retried user
	// gets the same salt.
	pepper [32]byte

	mu    sync.RWMutex
	users map[string]map[Mechanism]Credential
}

// OpenUsers loads the credential store of data directory dir, empty if it has
// no UsersFile yet.
func OpenUsers(dir string) (*Users, error) {
	u := &Users{path: filepath.Join(dir, UsersFile), users: map[string]map[Mechanism]Credential{}}
	rand.Read(u.pepper[:])
	var f usersFile
	ok, err := readJSON(u.path, &f)
	if err != nil {
		return nil, fmt.Errorf("open users: %w", err)
	}
	if !ok {
		return u, nil
	}
	if f.Version != usersFileVersion {
		return nil, fmt.Errorf("open users: %s: format version %d, want %d", u.path, f.Version, usersFileVersion)
	}
	for name, creds := range f.Users {
		for mn, c := range creds {
			m, ok := ParseMechanism(mn)
			if !ok {
				return nil, fmt.Errorf("open users: %s: user %q: unknown mechanism %q", u.path, name, mn)
			}
			if err := checkCredential(m, c); err != nil {
				return nil, fmt.Errorf("open users: %s: user %q: %w", u.path, name, err)
			}
			if u.users[name] == nil {
				u.users[name] = map[Mechanism]Credential{}
			}
			u.users[name][m] = c
		}
	}
	return u, nil
}

func checkCredential(m Mechanism, c Credential) error {
	size := m.hash()().Size()
	switch {
	case len(c.Salt) == 0:
		return fmt.Errorf("%w: empty salt", ErrBadCredential)
	case c.Iterations < MinIterations || c.Iterations > MaxIterations:
		return fmt.Errorf("%w: %d iterations, want %d to %d", ErrBadCredential, c.Iterations, MinIterations, MaxIterations)
	case len(c.StoredKey) != size || len(c.ServerKey) != size:
		return fmt.Errorf("%w: keys are not %d bytes", ErrBadCredential, size)
	}
	return nil
}

// Path returns the credentials file's path.
func (u *Users) Path() string { return u.path }

// CheckUserName reports whether name may be a user name: non-empty valid
// UTF-8 without NUL or control characters (PLAIN separates its fields with
// NUL, and a name is printed in logs and listings).
func CheckUserName(name string) error {
	if name == "" || !utf8.ValidString(name) {
		return fmt.Errorf("%w: user name must be non-empty UTF-8", ErrBadCredential)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: user name %q has a control character", ErrBadCredential, name)
		}
	}
	return nil
}

// SetPassword creates or replaces name's credential for m from a password,
// with a fresh random salt. iterations 0 means DefaultIterations.
func (u *Users) SetPassword(name string, m Mechanism, password string, iterations int) error {
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if password == "" {
		return fmt.Errorf("set password of %q: %w: empty password", name, ErrBadCredential)
	}
	salt := make([]byte, saltSize)
	rand.Read(salt)
	if !m.valid() {
		return fmt.Errorf("set password of %q: %w", name, ErrBadMechanism)
	}
	if iterations < MinIterations || iterations > MaxIterations {
		return fmt.Errorf("set password of %q: %w: %d iterations, want %d to %d", name, ErrBadCredential, iterations, MinIterations, MaxIterations)
	}
	sp, err := SaltPassword(m, password, salt, iterations)
	if err != nil {
		return fmt.Errorf("set password of %q: %w", name, err)
	}
	return u.SetSalted(name, m, salt, sp, iterations)
}

// SetSalted creates or replaces name's credential for m from a salted
// password, as AlterUserScramCredentials sends it.
func (u *Users) SetSalted(name string, m Mechanism, salt, saltedPassword []byte, iterations int) error {
	if err := validUpsert(name, m, salt, saltedPassword, iterations); err != nil {
		return fmt.Errorf("set credential of %q: %w", name, err)
	}
	c := NewCredential(m, salt, saltedPassword, iterations)
	return u.change(func(users map[string]map[Mechanism]Credential) error {
		putCredential(users, name, m, c)
		return nil
	})
}

func validUpsert(name string, m Mechanism, salt, saltedPassword []byte, iterations int) error {
	if err := CheckUserName(name); err != nil {
		return err
	}
	switch {
	case !m.valid():
		return ErrBadMechanism
	case len(salt) == 0 || len(saltedPassword) == 0:
		return fmt.Errorf("%w: empty salt or salted password", ErrBadCredential)
	case iterations < MinIterations || iterations > MaxIterations:
		return fmt.Errorf("%w: %d iterations, want %d to %d", ErrBadCredential, iterations, MinIterations, MaxIterations)
	}
	return nil
}

func putCredential(users map[string]map[Mechanism]Credential, name string, m Mechanism, c Credential) {
	if users[name] == nil {
		users[name] = map[Mechanism]Credential{}
	}
	users[name][m] = c
}

// Delete removes name's credential for m. It returns ErrNoCredential if there
// is none.
func (u *Users) Delete(name string, m Mechanism) error {
	return u.change(func(users map[string]map[Mechanism]Credential) error {
		if _, ok := users[name][m]; !ok {
			return fmt.Errorf("delete %s credential of %q: %w", m, name, ErrNoCredential)
		}
		delete(users[name], m)
		if len(users[name]) == 0 {
			delete(users, name)
		}
		return nil
	})
}

// DeleteUser removes every credential of name. It returns ErrNoCredential if
// there is none.
func (u *Users) DeleteUser(name string) error {
	return u.change(func(users map[string]map[Mechanism]Credential) error {
		if len(users[name]) == 0 {
			return fmt.Errorf("delete user %q: %w", name, ErrNoCredential)
		}
		delete(users, name)
		return nil
	})
}

// errUnchanged, returned by a change function, means it changed nothing and
// there is nothing to write.
var errUnchanged = errors.New("unchanged")

// change applies fn to a copy of the users, writes the copy and only then
// makes it current, so memory never gets ahead of the file.
func (u *Users) change(fn func(map[string]map[Mechanism]Credential) error) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	next := cloneUsers(u.users)
	if err := fn(next); errors.Is(err, errUnchanged) {
		return nil
	} else if err != nil {
		return err
	}
	if err := u.save(next); err != nil {
		return err
	}
	u.users = next
	return nil
}

func cloneUsers(users map[string]map[Mechanism]Credential) map[string]map[Mechanism]Credential {
	next := make(map[string]map[Mechanism]Credential, len(users))
	for name, creds := range users {
		next[name] = maps.Clone(creds)
	}
	return next
}

func (u *Users) save(users map[string]map[Mechanism]Credential) error {
	f := usersFile{Version: usersFileVersion, Users: make(map[string]map[string]Credential, len(users))}
	for name, creds := range users {
		m := make(map[string]Credential, len(creds))
		for mech, c := range creds {
			m[mech.String()] = c
		}
		f.Users[name] = m
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("save users: %w", err)
	}
	if err := writeFileAtomic(u.path, append(b, '\n')); err != nil {
		return fmt.Errorf("save users: %w", err)
	}
	return nil
}

// Lookup returns name's credential for m.
func (u *Users) Lookup(name string, m Mechanism) (Credential, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	c, ok := u.users[name][m]
	return c, ok
}

// UserInfo describes one user's credentials, without their secrets.
type UserInfo struct {
	Name        string
	Credentials []CredentialInfo // by mechanism
}

// CredentialInfo is what may be told about one credential.
type CredentialInfo struct {
	Mechanism  Mechanism
	Iterations int
}

// List returns every user, by name.
func (u *Users) List() []UserInfo {
	u.mu.RLock()
	defer u.mu.RUnlock()
	out := make([]UserInfo, 0, len(u.users))
	for name := range u.users {
		out = append(out, u.infoLocked(name))
	}
	slices.SortFunc(out, func(a, b UserInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (u *Users) infoLocked(name string) UserInfo {
	ui := UserInfo{Name: name}
	for _, m := range Mechanisms() {
		if c, ok := u.users[name][m]; ok {
			ui.Credentials = append(ui.Credentials, CredentialInfo{Mechanism: m, Iterations: c.Iterations})
		}
	}
	return ui
}

// Len returns the number of users.
func (u *Users) Len() int {
	u.mu.RLock()
	defer u.mu.RUnlock()
	return len(u.users)
}

// VerifyPlain reports whether password is name's password, as SASL PLAIN
// needs. Only SCRAM credentials are kept, so the password is salted with one
// of them (SCRAM-SHA-512's if the user has both) and the derived StoredKey
// compared, in constant time.
func (u *Users) VerifyPlain(name, password string) bool {
	for _, m := range []Mechanism{ScramSHA512, ScramSHA256} {
		c, ok := u.Lookup(name, m)
		if !ok {
			continue
		}
		sp, err := SaltPassword(m, password, c.Salt, c.Iterations)
		if err != nil {
			return false
		}
		got := NewCredential(m, c.Salt, sp, c.Iterations)
		return subtle.ConstantTimeCompare(got.StoredKey, c.StoredKey) == 1
	}
	return false
}

// scramCredential returns the credential a SCRAM exchange for name uses. For
// an unknown user it returns a fake one, stable for the name, that no proof
// can match: the exchange then fails at the proof as for a wrong password,
// and does not tell a stranger which users exist.
func (u *Users) scramCredential(name string, m Mechanism) (Credential, bool) {
	if c, ok := u.Lookup(name, m); ok {
		return c, true
	}
	h := m.hash()
	seed := hmacSum(sha256.New, u.pepper[:], []byte(m.String()+"\x00"+name))
	return Credential{
		Salt:       seed[:saltSize],
		Iterations: DefaultIterations,
		StoredKey:  hmacSum(h, seed, []byte("stored")),
		ServerKey:  hmacSum(h, seed, []byte("server")),
	}, false
}
