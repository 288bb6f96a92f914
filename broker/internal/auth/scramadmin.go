package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// HandleDescribeUserScram answers DescribeUserScramCredentials (v0) as Kafka
// does: no users (null or empty) describes every user; a user named twice
// gets DUPLICATE_RESOURCE and one without credentials RESOURCE_NOT_FOUND.
// Only mechanisms and iteration counts are told, never salts or keys.
// authorized is the caller's verdict for Describe on the cluster; without it
// the whole request fails with CLUSTER_AUTHORIZATION_FAILED.
func (u *Users) HandleDescribeUserScram(req *kmsg.DescribeUserSCRAMCredentialsRequest, authorized bool) *kmsg.DescribeUserSCRAMCredentialsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	if !authorized {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		resp.ErrorMessage = kmsg.StringPtr(kerr.ClusterAuthorizationFailed.Message)
		return resp
	}
	u.mu.RLock()
	defer u.mu.RUnlock()
	var names []string
	seen := map[string]int{}
	if len(req.Users) == 0 {
		for name := range u.users {
			names = append(names, name)
		}
		slices.Sort(names)
	} else {
		for _, ru := range req.Users {
			if seen[ru.Name] == 0 {
				names = append(names, ru.Name)
			}
			seen[ru.Name]++
		}
	}
	for _, name := range names {
		r := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		r.User = name
		switch {
		case seen[name] > 1:
			r.ErrorCode = kerr.DuplicateResource.Code
			r.ErrorMessage = kmsg.StringPtr("cannot describe the credentials of user " + name + " twice in one request")
		case len(u.users[name]) == 0:
			r.ErrorCode = kerr.ResourceNotFound.Code
			r.ErrorMessage = kmsg.StringPtr("attempt to describe a user credential that does not exist: " + name)
		default:
			for _, ci := range u.infoLocked(name).Credentials {
				info := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
				info.Mechanism = int8(ci.Mechanism)
				info.Iterations = int32(ci.Iterations)
				r.CredentialInfos = append(r.CredentialInfos, info)
			}
		}
		resp.Results = append(resp.Results, r)
	}
	return resp
}

// HandleAlterUserScram answers AlterUserScramCredentials (v0) as Kafka does.
// Each user named in the request gets one result. A user whose changes are
// not all valid (an empty name, an unknown mechanism, iterations outside
// MinIterations..MaxIterations, the same user and mechanism twice, a deletion
// of a credential that does not exist) gets that error and none of its
// changes are made; the valid users' changes are written together in one
// atomic update of the file. authorized is the caller's verdict for Alter on
// the cluster; without it every user gets CLUSTER_AUTHORIZATION_FAILED and
// nothing changes.
func (u *Users) HandleAlterUserScram(req *kmsg.AlterUserSCRAMCredentialsRequest, authorized bool) *kmsg.AlterUserSCRAMCredentialsResponse {
	resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	var order []string
	failed := map[string]*kerr.Error{}
	messages := map[string]string{}
	fail := func(name string, e *kerr.Error, msg string) {
		if _, ok := failed[name]; !ok || failed[name] == nil {
			failed[name], messages[name] = e, msg
		}
	}
	note := func(name string) {
		if _, ok := failed[name]; !ok {
			order = append(order, name)
			failed[name] = nil
		}
	}
	type change struct {
		name string
		mech Mechanism
		del  bool
		cred Credential
	}
	var changes []change
	pairs := map[string]bool{}
	pair := func(name string, m Mechanism) {
		k := m.String() + "\x00" + name
		if pairs[k] {
			fail(name, kerr.DuplicateResource, "a user credential cannot be altered twice in one request")
		}
		pairs[k] = true
	}
	for _, d := range req.Deletions {
		note(d.Name)
		m := Mechanism(d.Mechanism)
		switch {
		case d.Name == "":
			fail(d.Name, kerr.UnacceptableCredential, "user name must not be empty")
		case !m.valid():
			fail(d.Name, kerr.UnsupportedSaslMechanism, fmt.Sprintf("unknown SCRAM mechanism %d", d.Mechanism))
		default:
			pair(d.Name, m)
			changes = append(changes, change{name: d.Name, mech: m, del: true})
		}
	}
	for _, up := range req.Upsertions {
		note(up.Name)
		m := Mechanism(up.Mechanism)
		if err := validUpsert(up.Name, m, up.Salt, up.SaltedPassword, int(up.Iterations)); err != nil {
			e := kerr.UnacceptableCredential
			if errors.Is(err, ErrBadMechanism) {
				e = kerr.UnsupportedSaslMechanism
			}
			fail(up.Name, e, err.Error())
			continue
		}
		pair(up.Name, m)
		changes = append(changes, change{name: up.Name, mech: m, cred: NewCredential(m, up.Salt, up.SaltedPassword, int(up.Iterations))})
	}

	if !authorized {
		for _, name := range order {
			failed[name], messages[name] = kerr.ClusterAuthorizationFailed, kerr.ClusterAuthorizationFailed.Message
		}
	} else {
		err := u.change(func(users map[string]map[Mechanism]Credential) error {
			for _, c := range changes {
				if c.del && failed[c.name] == nil {
					if _, ok := users[c.name][c.mech]; !ok {
						fail(c.name, kerr.ResourceNotFound, "attempt to delete a user credential that does not exist")
					}
				}
			}
			applied := 0
			for _, c := range changes {
				if failed[c.name] == nil {
					applied++
				}
				switch {
				case failed[c.name] != nil:
				case c.del:
					delete(users[c.name], c.mech)
					if len(users[c.name]) == 0 {
						delete(users, c.name)
					}
				default:
					putCredential(users, c.name, c.mech, c.cred)
				}
			}
			if applied == 0 {
				return errUnchanged
			}
			return nil
		})
		if err != nil {
			for _, name := range order {
				if failed[name] == nil {
					failed[name], messages[name] = kerr.UnknownServerError, err.Error()
				}
			}
		}
	}
	for _, name := range order {
		r := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		r.User = name
		if e := failed[name]; e != nil {
			r.ErrorCode = e.Code
			r.ErrorMessage = kmsg.StringPtr(strings.TrimSpace(messages[name]))
		}
		resp.Results = append(resp.Results, r)
	}
	return resp
}
