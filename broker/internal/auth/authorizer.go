package auth

import (
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// An Authorizer decides whether a principal, connected from host, may
// perform op on the resource of type res called name. The broker asks it
// for every resource every request touches, so an implementation must be
// cheap. *ACLs is the Authorizer of this package.
type Authorizer interface {
	Authorize(principal, host string, op Operation, res ResourceType, name string) bool
}

// aclEntry is one ACL as the index keeps it, under its resource pattern.
type aclEntry struct {
	principal string
	host      string
	op        Operation
	allow     bool
}

// resourceIndex holds the ACLs of one resource type by pattern.
type resourceIndex struct {
	literal  map[string][]aclEntry // by name; "*" holds the wildcard ACLs
	prefixed map[string][]aclEntry // by prefix
	// prefixLens are the distinct lengths of the prefixes, ascending: the
	// prefixed ACLs that can apply to a name are found with one map lookup
	// per length, rather than by scanning every prefix.
	prefixLens []int
}

// numResourceTypes bounds the resource types the index covers (kmsg's
// values run from Unknown, 0, to User, 7).
const numResourceTypes = int(kmsg.ACLResourceTypeUser) + 1

// aclIndex is an immutable view of the ACLs for Authorize. A change builds
// a new one.
type aclIndex struct {
	byType [numResourceTypes]resourceIndex
}

func buildIndex(acls []ACL) *aclIndex {
	ix := &aclIndex{}
	for _, a := range acls {
		if int(a.ResourceType) >= numResourceTypes {
			continue
		}
		r := &ix.byType[a.ResourceType]
		e := aclEntry{principal: a.Principal, host: a.Host, op: a.Operation, allow: a.Permission == kmsg.ACLPermissionTypeAllow}
		if a.PatternType == kmsg.ACLResourcePatternTypePrefixed {
			if r.prefixed == nil {
				r.prefixed = map[string][]aclEntry{}
			}
			r.prefixed[a.ResourceName] = append(r.prefixed[a.ResourceName], e)
			if !slices.Contains(r.prefixLens, len(a.ResourceName)) {
				r.prefixLens = append(r.prefixLens, len(a.ResourceName))
			}
			continue
		}
		if r.literal == nil {
			r.literal = map[string][]aclEntry{}
		}
		r.literal[a.ResourceName] = append(r.literal[a.ResourceName], e)
	}
	for i := range ix.byType {
		slices.Sort(ix.byType[i].prefixLens)
	}
	return ix
}

// Authorize reports whether principal ("User:alice"), connected from host
// (an IP address), may perform op on the resource of type res called name.
// The rules are Kafka's:
//   - a super user may do anything;
//   - the ACLs that apply are those whose pattern matches name (the literal
//     name, the literal "*", a prefix of name), whose principal is principal
//     or "User:*" and whose host is host or "*";
//   - if one of them denies op (or ALL), the answer is no, whatever allows it;
//   - otherwise the answer is yes if one of them allows op, ALL, or an
//     operation that implies op: Read, Write, Delete and Alter imply
//     Describe, and AlterConfigs implies DescribeConfigs;
//   - otherwise, and in particular when no ACL names the resource at all,
//     the answer is no (allow.everyone.if.no.acl.found=false).
//
// It allocates nothing.
func (a *ACLs) Authorize(principal, host string, op Operation, res ResourceType, name string) bool {
	if _, ok := a.super[principal]; ok {
		return true
	}
	if int(res) >= numResourceTypes || op == kmsg.ACLOperationAny || op == kmsg.ACLOperationUnknown {
		return false
	}
	r := &a.idx.Load().byType[res]
	allowed := false
	if es, ok := r.literal[name]; ok {
		if scan(es, principal, host, op, &allowed) {
			return false
		}
	}
	if name != WildcardResource {
		if es, ok := r.literal[WildcardResource]; ok {
			if scan(es, principal, host, op, &allowed) {
				return false
			}
		}
	}
	for _, n := range r.prefixLens {
		if n > len(name) {
			break
		}
		if es, ok := r.prefixed[name[:n]]; ok {
			if scan(es, principal, host, op, &allowed) {
				return false
			}
		}
	}
	return allowed
}

// scan looks through the ACLs of one pattern: it reports a deny that
// applies, and sets *allowed if an allow applies.
func scan(es []aclEntry, principal, host string, op Operation, allowed *bool) (denied bool) {
	for i := range es {
		e := &es[i]
		if (e.principal != principal && e.principal != WildcardPrincipal) || (e.host != host && e.host != WildcardHost) {
			continue
		}
		if e.allow {
			if !*allowed && grants(e.op, op) {
				*allowed = true
			}
		} else if e.op == op || e.op == kmsg.ACLOperationAll {
			return true
		}
	}
	return false
}

// grants reports whether an allow ACL for have permits want.
func grants(have, want Operation) bool {
	if have == want || have == kmsg.ACLOperationAll {
		return true
	}
	switch want {
	case kmsg.ACLOperationDescribe:
		return have == kmsg.ACLOperationRead || have == kmsg.ACLOperationWrite ||
			have == kmsg.ACLOperationDelete || have == kmsg.ACLOperationAlter
	case kmsg.ACLOperationDescribeConfigs:
		return have == kmsg.ACLOperationAlterConfigs
	}
	return false
}

// AuthorizeAny reports whether principal may perform op on at least one
// resource of type res: Kafka's authorizeByResourceType, which an idempotent
// producer's InitProducerId uses (IdempotentWrite on the cluster, or Write on
// any topic). It is true for a super user, and when some allow ACL for op
// applies to principal and host and is not wholly overridden by a deny: a
// deny on the literal "*", on the same pattern, or on a prefix of the
// allowed pattern. It is not on a hot path and may allocate.
func (a *ACLs) AuthorizeAny(principal, host string, op Operation, res ResourceType) bool {
	if _, ok := a.super[principal]; ok {
		return true
	}
	if int(res) >= numResourceTypes {
		return false
	}
	applies := func(e aclEntry) bool {
		return (e.principal == principal || e.principal == WildcardPrincipal) && (e.host == host || e.host == WildcardHost)
	}
	r := &a.idx.Load().byType[res]
	denied := func(e aclEntry) bool { return !e.allow && applies(e) && (e.op == op || e.op == kmsg.ACLOperationAll) }
	for _, e := range r.literal[WildcardResource] {
		if denied(e) {
			return false
		}
	}
	// shadowed reports whether a deny covers every name the pattern
	// (name, prefixed) can match.
	shadowed := func(name string, prefixed bool) bool {
		if !prefixed && slices.ContainsFunc(r.literal[name], denied) {
			return true
		}
		for p, es := range r.prefixed {
			if strings.HasPrefix(name, p) && slices.ContainsFunc(es, denied) {
				return true
			}
		}
		return false
	}
	for name, es := range r.literal {
		for _, e := range es {
			if e.allow && applies(e) && grants(e.op, op) && !shadowed(name, false) {
				return true
			}
		}
	}
	for name, es := range r.prefixed {
		for _, e := range es {
			if e.allow && applies(e) && grants(e.op, op) && !shadowed(name, true) {
				return true
			}
		}
	}
	return false
}
