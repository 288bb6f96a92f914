package auth

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The ACL vocabulary is Kafka's, with kmsg's wire values, so that requests
// and the store speak the same language and kmsg's constants (for example
// kmsg.ACLOperationRead) can be used directly.
type (
	// Operation is what a principal does to a resource: Read, Write, ...
	Operation = kmsg.ACLOperation
	// ResourceType is the kind of resource: Topic, Group, Cluster,
	// TransactionalId.
	ResourceType = kmsg.ACLResourceType
	// PatternType says how an ACL's resource name matches: Literal (the
	// name itself, or every name when it is "*") or Prefixed (every name
	// that starts with it). Filters also use Any and Match.
	PatternType = kmsg.ACLResourcePatternType
	// Permission is Allow or Deny.
	Permission = kmsg.ACLPermissionType
)

// Wildcards and fixed names of Kafka's ACLs.
const (
	// WildcardResource as a literal resource name matches every resource of
	// its type.
	WildcardResource = "*"
	// WildcardPrincipal matches every principal.
	WildcardPrincipal = "User:*"
	// WildcardHost matches every host.
	WildcardHost = "*"
	// ClusterName is the one name of the cluster resource.
	ClusterName = "kafka-cluster"
)

// An ACL allows or denies one principal, from one host, one operation on the
// resources that a pattern matches. Its JSON form, in ACLsFile, names the
// enums (for example "operation": "READ").
type ACL struct {
	ResourceType ResourceType `json:"resource_type"`
	ResourceName string       `json:"resource_name"`
	PatternType  PatternType  `json:"pattern_type"`
	Principal    string       `json:"principal"`
	Host         string       `json:"host"`
	Operation    Operation    `json:"operation"`
	Permission   Permission   `json:"permission"`
}

func (a ACL) String() string {
	return fmt.Sprintf("%s %s %s on %s %s:%s from %s", a.Permission, a.Principal, a.Operation, a.ResourceType, a.PatternType, a.ResourceName, a.Host)
}

func compareACL(a, b ACL) int {
	return cmp.Or(
		cmp.Compare(a.ResourceType, b.ResourceType),
		strings.Compare(a.ResourceName, b.ResourceName),
		cmp.Compare(a.PatternType, b.PatternType),
		strings.Compare(a.Principal, b.Principal),
		strings.Compare(a.Host, b.Host),
		cmp.Compare(a.Operation, b.Operation),
		cmp.Compare(a.Permission, b.Permission),
	)
}

// supportedOperations lists the operations an ACL on a resource type may
// name (Kafka's table, ALL included); nil for a type ACLs cannot name here.
func supportedOperations(rt ResourceType) []Operation {
	switch rt {
	case kmsg.ACLResourceTypeTopic:
		return []Operation{kmsg.ACLOperationAll, kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationCreate,
			kmsg.ACLOperationDelete, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs}
	case kmsg.ACLResourceTypeGroup:
		return []Operation{kmsg.ACLOperationAll, kmsg.ACLOperationRead, kmsg.ACLOperationDescribe, kmsg.ACLOperationDelete}
	case kmsg.ACLResourceTypeCluster:
		return []Operation{kmsg.ACLOperationAll, kmsg.ACLOperationCreate, kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs,
			kmsg.ACLOperationAlterConfigs, kmsg.ACLOperationIdempotentWrite, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe}
	case kmsg.ACLResourceTypeTransactionalId:
		return []Operation{kmsg.ACLOperationAll, kmsg.ACLOperationDescribe, kmsg.ACLOperationWrite}
	}
	return nil
}

// Validate reports why a could not be stored, as CreateAcls checks a
// creation: a specific supported resource type, a literal or prefixed
// pattern, a non-empty name ("kafka-cluster" for the cluster), a
// "Type:name" principal, a host, an operation the resource type has, and
// allow or deny.
func (a ACL) Validate() error {
	ops := supportedOperations(a.ResourceType)
	switch {
	case ops == nil:
		return fmt.Errorf("resource type %s is not supported: use TOPIC, GROUP, CLUSTER or TRANSACTIONAL_ID", a.ResourceType)
	case a.PatternType != kmsg.ACLResourcePatternTypeLiteral && a.PatternType != kmsg.ACLResourcePatternTypePrefixed:
		return fmt.Errorf("pattern type %s is not allowed in an ACL: use LITERAL or PREFIXED", a.PatternType)
	case a.ResourceName == "":
		return errors.New("resource name must not be empty")
	case a.ResourceType == kmsg.ACLResourceTypeCluster && (a.ResourceName != ClusterName || a.PatternType != kmsg.ACLResourcePatternTypeLiteral):
		return fmt.Errorf("the cluster resource is the literal %q", ClusterName)
	case a.PatternType == kmsg.ACLResourcePatternTypePrefixed && a.ResourceName == WildcardResource:
		return errors.New("a prefixed pattern cannot be the wildcard: use a literal \"*\"")
	case a.Host == "":
		return errors.New("host must not be empty: use \"*\" for any host")
	case a.Permission != kmsg.ACLPermissionTypeAllow && a.Permission != kmsg.ACLPermissionTypeDeny:
		return fmt.Errorf("permission %s is not allowed in an ACL: use ALLOW or DENY", a.Permission)
	case !slices.Contains(ops, a.Operation):
		return fmt.Errorf("operation %s does not apply to %s resources", a.Operation, a.ResourceType)
	}
	if _, ok := ParsePrincipal(a.Principal); !ok {
		return fmt.Errorf("principal %q is not of the form Type:name", a.Principal)
	}
	return nil
}

// A Filter selects ACLs, as DescribeAcls and DeleteAcls filters do: each
// field narrows the selection, and its zero or Any value (nil for the
// strings) does not.
type Filter struct {
	ResourceType ResourceType // Any: every type
	ResourceName *string      // nil: every name
	// PatternType: Any matches literal and prefixed ACLs whose name is
	// ResourceName; Literal or Prefixed only those of that type; Match the
	// ACLs that would apply to a resource called ResourceName (the literal
	// name, the literal "*", and every prefix of it).
	PatternType PatternType
	Principal   *string    // nil: every principal (no wildcard expansion)
	Host        *string    // nil: every host
	Operation   Operation  // Any: every operation
	Permission  Permission // Any: every permission
}

// MatchAll is the filter that selects every ACL.
func MatchAll() Filter {
	return Filter{
		ResourceType: kmsg.ACLResourceTypeAny,
		PatternType:  kmsg.ACLResourcePatternTypeAny,
		Operation:    kmsg.ACLOperationAny,
		Permission:   kmsg.ACLPermissionTypeAny,
	}
}

// Validate reports why f is not a filter Kafka would accept: none of its
// enums may be Unknown.
func (f Filter) Validate() error {
	switch {
	case f.ResourceType == kmsg.ACLResourceTypeUnknown:
		return errors.New("filter has an unknown resource type")
	case f.PatternType == kmsg.ACLResourcePatternTypeUnknown:
		return errors.New("filter has an unknown pattern type")
	case f.Operation == kmsg.ACLOperationUnknown:
		return errors.New("filter has an unknown operation")
	case f.Permission == kmsg.ACLPermissionTypeUnknown:
		return errors.New("filter has an unknown permission")
	}
	return nil
}

// Matches reports whether f selects a.
func (f Filter) Matches(a ACL) bool {
	if f.ResourceType != kmsg.ACLResourceTypeAny && f.ResourceType != a.ResourceType {
		return false
	}
	if f.Principal != nil && *f.Principal != a.Principal {
		return false
	}
	if f.Host != nil && *f.Host != a.Host {
		return false
	}
	if f.Operation != kmsg.ACLOperationAny && f.Operation != a.Operation {
		return false
	}
	if f.Permission != kmsg.ACLPermissionTypeAny && f.Permission != a.Permission {
		return false
	}
	switch f.PatternType {
	case kmsg.ACLResourcePatternTypeAny, kmsg.ACLResourcePatternTypeMatch:
	default:
		if f.PatternType != a.PatternType {
			return false
		}
	}
	if f.ResourceName == nil {
		return true
	}
	name := *f.ResourceName
	if f.PatternType != kmsg.ACLResourcePatternTypeMatch {
		return name == a.ResourceName
	}
	if a.PatternType == kmsg.ACLResourcePatternTypePrefixed {
		return strings.HasPrefix(name, a.ResourceName)
	}
	return name == a.ResourceName || a.ResourceName == WildcardResource
}

// ACLsFile is the name of the ACL file in the data directory.
const ACLsFile = "acls.json"

// aclsFileVersion is the format version of ACLsFile, which is JSON:
//
//	{"version": 1, "acls": [{"resource_type": "TOPIC", "resource_name": "orders",
//	  "pattern_type": "PREFIXED", "principal": "User:alice", "host": "*",
//	  "operation": "READ", "permission": "ALLOW"}]}
const aclsFileVersion = 1

type aclsFile struct {
	Version int   `json:"version"`
	ACLs    []ACL `json:"acls"`
}

// ACLs is the ACL store and the Authorizer over it. ACLs live in memory and
// in ACLsFile in the data directory; a change is written to the file,
// atomically and durably, before it takes effect. Authorize reads an
// immutable index that each change replaces, so checks never wait for a
// change and never allocate. ACLs is safe for concurrent use.
type ACLs struct {
	path  string
	super map[string]struct{} // principals allowed everything; fixed at open

	mu   sync.Mutex // serialises changes
	acls []ACL      // sorted by compareACL, without duplicates
	idx  atomic.Pointer[aclIndex]
}

// OpenACLs loads the ACL store of data directory dir, empty if it has no
// ACLsFile yet. superUsers are principals ("User:admin") that every check
// allows, whatever the ACLs say, like Kafka's super.users.
func OpenACLs(dir string, superUsers []string) (*ACLs, error) {
	a := &ACLs{path: filepath.Join(dir, ACLsFile), super: map[string]struct{}{}}
	for _, s := range superUsers {
		if _, ok := ParsePrincipal(s); !ok {
			return nil, fmt.Errorf("open acls: super user %q is not of the form User:name", s)
		}
		a.super[s] = struct{}{}
	}
	var f aclsFile
	ok, err := readJSON(a.path, &f)
	if err != nil {
		return nil, fmt.Errorf("open acls: %w", err)
	}
	if ok && f.Version != aclsFileVersion {
		return nil, fmt.Errorf("open acls: %s: format version %d, want %d", a.path, f.Version, aclsFileVersion)
	}
	for _, acl := range f.ACLs {
		if err := acl.Validate(); err != nil {
			return nil, fmt.Errorf("open acls: %s: %v: %w", a.path, acl, err)
		}
	}
	a.acls = normalize(f.ACLs)
	a.idx.Store(buildIndex(a.acls))
	return a, nil
}

func normalize(acls []ACL) []ACL {
	acls = slices.Clone(acls)
	slices.SortFunc(acls, compareACL)
	return slices.CompactFunc(acls, func(x, y ACL) bool { return x == y })
}

// Path returns the ACL file's path.
func (a *ACLs) Path() string { return a.path }

// IsSuperUser reports whether principal is a super user.
func (a *ACLs) IsSuperUser(principal string) bool {
	_, ok := a.super[principal]
	return ok
}

// Add stores acls, which must all be valid; adding one that exists already
// changes nothing. Either all are stored or, on error, none.
func (a *ACLs) Add(acls ...ACL) error {
	for _, acl := range acls {
		if err := acl.Validate(); err != nil {
			return fmt.Errorf("add acl %v: %w", acl, err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.setLocked(append(slices.Clone(a.acls), acls...))
}

// Remove deletes the ACLs that f selects and returns them.
func (a *ACLs) Remove(f Filter) ([]ACL, error) {
	removed, err := a.removeAll([]Filter{f})
	if err != nil {
		return nil, err
	}
	return removed[0], nil
}

// removeAll deletes what any of filters selects, in one change, and returns
// per filter what it selected before the change (an ACL two filters select
// is reported under both, as Kafka does).
func (a *ACLs) removeAll(filters []Filter) ([][]ACL, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([][]ACL, len(filters))
	keep := make([]ACL, 0, len(a.acls))
	for _, acl := range a.acls {
		gone := false
		for i, f := range filters {
			if f.Matches(acl) {
				out[i] = append(out[i], acl)
				gone = true
			}
		}
		if !gone {
			keep = append(keep, acl)
		}
	}
	if len(keep) == len(a.acls) {
		return out, nil
	}
	if err := a.setLocked(keep); err != nil {
		return nil, err
	}
	return out, nil
}

// List returns the ACLs that f selects, sorted by resource, then principal,
// host, operation and permission.
func (a *ACLs) List(f Filter) []ACL {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []ACL
	for _, acl := range a.acls {
		if f.Matches(acl) {
			out = append(out, acl)
		}
	}
	return out
}

// setLocked writes next and makes it current. Memory changes only after the
// file did.
func (a *ACLs) setLocked(next []ACL) error {
	next = normalize(next)
	if slices.Equal(next, a.acls) {
		return nil
	}
	b, err := marshalIndent(aclsFile{Version: aclsFileVersion, ACLs: next})
	if err != nil {
		return fmt.Errorf("save acls: %w", err)
	}
	if err := writeFileAtomic(a.path, b); err != nil {
		return fmt.Errorf("save acls: %w", err)
	}
	a.acls = next
	a.idx.Store(buildIndex(next))
	return nil
}
