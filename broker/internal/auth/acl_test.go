package auth

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func allow(res ResourceType, pattern PatternType, name, principal string, op Operation) ACL {
	return ACL{ResourceType: res, ResourceName: name, PatternType: pattern, Principal: principal, Host: "*", Operation: op, Permission: kmsg.ACLPermissionTypeAllow}
}

func deny(res ResourceType, pattern PatternType, name, principal string, op Operation) ACL {
	a := allow(res, pattern, name, principal, op)
	a.Permission = kmsg.ACLPermissionTypeDeny
	return a
}

func fromHost(a ACL, host string) ACL { a.Host = host; return a }

const (
	lit = kmsg.ACLResourcePatternTypeLiteral
	pre = kmsg.ACLResourcePatternTypePrefixed
)

func openACLs(t testing.TB, dir string, super []string, acls ...ACL) *ACLs {
	t.Helper()
	a, err := OpenACLs(dir, super)
	if err != nil {
		t.Fatal(err)
	}
	if len(acls) > 0 {
		if err := a.Add(acls...); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func TestAuthorize(t *testing.T) {
	a := openACLs(t, t.TempDir(), []string{"User:admin"},
		allow(topic, lit, "orders", "User:alice", opRead),
		allow(topic, lit, "orders", "User:alice", opWrite),
		allow(topic, pre, "logs-", "User:bob", opWrite),
		allow(topic, pre, "logs-", "User:carol", kmsg.ACLOperationAll),
		deny(topic, lit, "logs-secret", "User:carol", opRead),
		deny(topic, pre, "logs-private-", "User:*", kmsg.ACLOperationAll),
		allow(topic, lit, "*", "User:dave", opDescribe),
		allow(topic, lit, "public", "User:*", opRead),
		deny(topic, lit, "public", "User:eve", opRead),
		fromHost(allow(topic, lit, "local", "User:alice", opRead), "127.0.0.1"),
		fromHost(deny(topic, lit, "orders", "User:alice", opWrite), "10.9.9.9"),
		allow(topic, lit, "conf", "User:alice", opAlterConfigs),
		allow(group, pre, "app-", "User:alice", opRead),
		allow(group, lit, "app-special", "User:alice", opDelete),
		allow(cluster, lit, ClusterName, "User:ops", opCreate),
		allow(txnID, lit, "tx-1", "User:alice", opWrite),
		allow(topic, pre, "l", "User:frank", opRead),
		allow(topic, pre, "logs-a", "User:frank", opRead),
	)
	for _, c := range []struct {
		principal, host string
		op              Operation
		res             ResourceType
		name            string
		want            bool
	}{
		{"User:alice", "1.2.3.4", opRead, topic, "orders", true},
		{"User:alice", "1.2.3.4", opWrite, topic, "orders", true},
		{"User:alice", "1.2.3.4", opDescribe, topic, "orders", true}, // implied by Read/Write
		{"User:alice", "1.2.3.4", opDelete, topic, "orders", false},
		{"User:alice", "1.2.3.4", opRead, topic, "orders2", false}, // literal is exact
		{"User:alice", "1.2.3.4", opRead, topic, "order", false},
		{"User:bob", "1.2.3.4", opRead, topic, "orders", false},          // another principal
		{"User:alice", "10.9.9.9", opWrite, topic, "orders", false},      // denied from that host
		{"User:alice", "10.9.9.9", opRead, topic, "orders", true},        // deny is for Write only
		{"User:alice", "127.0.0.1", opRead, topic, "local", true},        // host match
		{"User:alice", "127.0.0.2", opRead, topic, "local", false},       // host mismatch
		{"User:bob", "1.2.3.4", opWrite, topic, "logs-web", true},        // prefixed
		{"User:bob", "1.2.3.4", opWrite, topic, "logs-", true},           // prefix equals the name
		{"User:bob", "1.2.3.4", opWrite, topic, "logs", false},           // shorter than the prefix
		{"User:bob", "1.2.3.4", opWrite, topic, "xlogs-web", false},      // prefix not at the start
		{"User:bob", "1.2.3.4", opDescribe, topic, "logs-web", true},     // Write implies Describe
		{"User:bob", "1.2.3.4", opRead, topic, "logs-web", false},        // Write does not imply Read
		{"User:bob", "1.2.3.4", opWrite, topic, "logs-private-x", false}, // deny prefixed, wildcard principal, ALL
		{"User:carol", "1.2.3.4", opRead, topic, "logs-a", true},         // ALL
		{"User:carol", "1.2.3.4", opDelete, topic, "logs-a", true},
		{"User:carol", "1.2.3.4", opRead, topic, "logs-secret", false}, // deny literal beats allow prefixed ALL
		{"User:carol", "1.2.3.4", opWrite, topic, "logs-secret", true}, // deny is for Read only
		{"User:dave", "1.2.3.4", opDescribe, topic, "anything", true},  // wildcard resource
		{"User:dave", "1.2.3.4", opDescribe, topic, "*", true},
		{"User:dave", "1.2.3.4", opRead, topic, "anything", false},
		{"User:dave", "1.2.3.4", opDescribe, group, "anything", false},    // another resource type
		{"User:zed", "1.2.3.4", opRead, topic, "public", true},            // wildcard principal
		{"User:eve", "1.2.3.4", opRead, topic, "public", false},           // deny beats wildcard allow
		{"User:zed", "1.2.3.4", opRead, topic, "nothing-here", false},     // no ACL: denied
		{"User:alice", "1.2.3.4", opDescribeConfigs, topic, "conf", true}, // AlterConfigs implies DescribeConfigs
		{"User:alice", "1.2.3.4", opDescribe, topic, "conf", false},       // but not Describe
		{"User:alice", "1.2.3.4", opRead, group, "app-1", true},
		{"User:alice", "1.2.3.4", opDescribe, group, "app-1", true},
		{"User:alice", "1.2.3.4", opDelete, group, "app-1", false},
		{"User:alice", "1.2.3.4", opDelete, group, "app-special", true},
		{"User:alice", "1.2.3.4", opRead, topic, "app-1", false}, // group ACL does not grant topics
		{"User:ops", "1.2.3.4", opCreate, cluster, ClusterName, true},
		{"User:ops", "1.2.3.4", opAlter, cluster, ClusterName, false},
		{"User:alice", "1.2.3.4", opWrite, txnID, "tx-1", true},
		{"User:alice", "1.2.3.4", opDescribe, txnID, "tx-1", true},
		{"User:alice", "1.2.3.4", opWrite, txnID, "tx-2", false},
		{"User:frank", "1.2.3.4", opRead, topic, "logs-abc", true}, // two prefixes of different lengths
		{"User:frank", "1.2.3.4", opRead, topic, "l", true},
		{"User:frank", "1.2.3.4", opRead, topic, "", false},
		{"User:admin", "1.2.3.4", opDelete, topic, "anything", true}, // super user
		{"User:admin", "1.2.3.4", opAlter, cluster, ClusterName, true},
		{"User:admin", "1.2.3.4", opRead, topic, "logs-private-x", true}, // super user beats deny
		{"User:Admin", "1.2.3.4", opRead, topic, "x", false},             // principals are case-sensitive
		{"User:alice", "1.2.3.4", kmsg.ACLOperationAny, topic, "orders", false},
		{"User:alice", "1.2.3.4", opRead, ResourceType(99), "orders", false},
	} {
		if got := a.Authorize(c.principal, c.host, c.op, c.res, c.name); got != c.want {
			t.Errorf("Authorize(%s, %s, %s, %s, %q) = %v, want %v", c.principal, c.host, c.op, c.res, c.name, got, c.want)
		}
	}
}

func TestAuthorizeAny(t *testing.T) {
	a := openACLs(t, t.TempDir(), []string{"User:admin"},
		allow(topic, lit, "orders", "User:alice", opWrite),
		allow(topic, pre, "logs-", "User:bob", opWrite),
		deny(topic, pre, "logs", "User:bob", opWrite),
		allow(topic, lit, "x", "User:carol", opWrite),
		deny(topic, lit, "*", "User:carol", opWrite),
		allow(topic, lit, "y", "User:dave", opWrite),
		deny(topic, lit, "z", "User:dave", opWrite),
	)
	for _, c := range []struct {
		principal string
		want      bool
	}{
		{"User:alice", true},
		{"User:bob", false},   // the only allow is under a denied prefix
		{"User:carol", false}, // denied everywhere
		{"User:dave", true},   // a deny elsewhere does not matter
		{"User:erin", false},
		{"User:admin", true},
	} {
		if got := a.AuthorizeAny(c.principal, "1.2.3.4", opWrite, topic); got != c.want {
			t.Errorf("AuthorizeAny(%s) = %v, want %v", c.principal, got, c.want)
		}
	}
}

func TestACLValidate(t *testing.T) {
	good := allow(topic, lit, "t", "User:a", opRead)
	for _, c := range []struct {
		name string
		mod  func(*ACL)
	}{
		{"any resource type", func(a *ACL) { a.ResourceType = kmsg.ACLResourceTypeAny }},
		{"user resource type", func(a *ACL) { a.ResourceType = kmsg.ACLResourceTypeUser }},
		{"match pattern", func(a *ACL) { a.PatternType = kmsg.ACLResourcePatternTypeMatch }},
		{"any pattern", func(a *ACL) { a.PatternType = kmsg.ACLResourcePatternTypeAny }},
		{"empty name", func(a *ACL) { a.ResourceName = "" }},
		{"cluster named otherwise", func(a *ACL) { a.ResourceType, a.ResourceName, a.Operation = cluster, "c", opAlter }},
		{"prefixed wildcard", func(a *ACL) { a.PatternType, a.ResourceName = pre, "*" }},
		{"empty host", func(a *ACL) { a.Host = "" }},
		{"any permission", func(a *ACL) { a.Permission = kmsg.ACLPermissionTypeAny }},
		{"any operation", func(a *ACL) { a.Operation = kmsg.ACLOperationAny }},
		{"operation not for the type", func(a *ACL) { a.ResourceType = group; a.Operation = opWrite }},
		{"principal without type", func(a *ACL) { a.Principal = "alice" }},
		{"principal without name", func(a *ACL) { a.Principal = "User:" }},
	} {
		a := good
		c.mod(&a)
		if a.Validate() == nil {
			t.Errorf("%s: %v validates", c.name, a)
		}
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestFilterMatches(t *testing.T) {
	acls := []ACL{
		allow(topic, lit, "foo", "User:a", opRead),
		allow(topic, lit, "*", "User:a", opRead),
		allow(topic, pre, "fo", "User:b", opWrite),
		allow(topic, pre, "foo-bar", "User:b", opWrite),
		deny(group, lit, "foo", "User:a", opRead),
		fromHost(allow(topic, lit, "bar", "User:*", opRead), "10.0.0.1"),
	}
	s := func(v string) *string { return &v }
	f := func(mod func(*Filter)) Filter { x := MatchAll(); mod(&x); return x }
	for _, c := range []struct {
		name string
		f    Filter
		want []int
	}{
		{"all", MatchAll(), []int{0, 1, 2, 3, 4, 5}},
		{"topics", f(func(x *Filter) { x.ResourceType = topic }), []int{0, 1, 2, 3, 5}},
		{"any pattern, name foo: exact names only", f(func(x *Filter) { x.ResourceName = s("foo") }), []int{0, 4}},
		{"literal foo", f(func(x *Filter) { x.ResourceName, x.PatternType = s("foo"), lit }), []int{0, 4}},
		{"prefixed fo", f(func(x *Filter) { x.ResourceName, x.PatternType = s("fo"), pre }), []int{2}},
		{"prefixed, any name", f(func(x *Filter) { x.PatternType = pre }), []int{2, 3}},
		{"match foo", f(func(x *Filter) { x.ResourceName, x.PatternType = s("foo"), kmsg.ACLResourcePatternTypeMatch }), []int{0, 1, 2, 4}},
		{"match foo-bar-1 on topics", f(func(x *Filter) {
			x.ResourceType, x.ResourceName, x.PatternType = topic, s("foo-bar-1"), kmsg.ACLResourcePatternTypeMatch
		}), []int{1, 2, 3}},
		{"principal", f(func(x *Filter) { x.Principal = s("User:b") }), []int{2, 3}},
		{"wildcard principal is literal in filters", f(func(x *Filter) { x.Principal = s("User:*") }), []int{5}},
		{"host", f(func(x *Filter) { x.Host = s("10.0.0.1") }), []int{5}},
		{"operation", f(func(x *Filter) { x.Operation = opWrite }), []int{2, 3}},
		{"permission", f(func(x *Filter) { x.Permission = kmsg.ACLPermissionTypeDeny }), []int{4}},
	} {
		var got []int
		for i, a := range acls {
			if c.f.Matches(a) {
				got = append(got, i)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: matches %v, want %v", c.name, got, c.want)
		}
	}
}

// TestACLHandlers drives CreateAcls, DescribeAcls and DeleteAcls through
// their kmsg structs, encoded and decoded as on the wire.
func TestACLHandlers(t *testing.T) {
	dir := t.TempDir()
	a := openACLs(t, dir, nil)
	creation := func(res ResourceType, name string, pattern PatternType, principal string, op Operation, perm Permission) kmsg.CreateACLsRequestCreation {
		c := kmsg.NewCreateACLsRequestCreation()
		c.ResourceType, c.ResourceName, c.ResourcePatternType = res, name, pattern
		c.Principal, c.Host, c.Operation, c.PermissionType = principal, "*", op, perm
		return c
	}
	create := kmsg.NewPtrCreateACLsRequest()
	create.Version = 3
	create.Creations = []kmsg.CreateACLsRequestCreation{
		creation(topic, "orders", lit, "User:alice", opRead, kmsg.ACLPermissionTypeAllow),
		creation(topic, "logs-", pre, "User:bob", opWrite, kmsg.ACLPermissionTypeAllow),
		creation(topic, "x", kmsg.ACLResourcePatternTypeMatch, "User:bob", opWrite, kmsg.ACLPermissionTypeAllow), // invalid
		creation(group, "g", lit, "User:alice", opRead, kmsg.ACLPermissionTypeAllow),
		creation(cluster, "kafka-cluster", lit, "User:ops", opAlter, kmsg.ACLPermissionTypeAllow),
	}
	cresp := wireResp(t, a.HandleCreateACLs(wireReq(t, create), true))
	codes := []int16{0, 0, kerr.InvalidRequest.Code, 0, 0}
	for i, r := range cresp.Results {
		if r.ErrorCode != codes[i] {
			t.Errorf("creation %d: code %d, want %d", i, r.ErrorCode, codes[i])
		}
	}
	if cresp.Results[2].ErrorMessage == nil {
		t.Error("invalid creation has no message")
	}
	if !a.Authorize("User:bob", "h", opWrite, topic, "logs-1") {
		t.Fatal("created ACL does not apply")
	}

	// Unauthorized creations change nothing.
	deniedCreate := kmsg.NewPtrCreateACLsRequest()
	deniedCreate.Creations = []kmsg.CreateACLsRequestCreation{creation(topic, "t", lit, "User:x", opRead, kmsg.ACLPermissionTypeAllow)}
	if r := a.HandleCreateACLs(deniedCreate, false); r.Results[0].ErrorCode != kerr.ClusterAuthorizationFailed.Code {
		t.Fatalf("unauthorized create: %d", r.Results[0].ErrorCode)
	}
	if a.Authorize("User:x", "h", opRead, topic, "t") {
		t.Fatal("unauthorized create took effect")
	}

	describe := kmsg.NewPtrDescribeACLsRequest()
	describe.Version = 3
	describe.ResourceType, describe.ResourcePatternType = kmsg.ACLResourceTypeAny, kmsg.ACLResourcePatternTypeAny
	describe.Operation, describe.PermissionType = kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	dresp := wireResp(t, a.HandleDescribeACLs(wireReq(t, describe), true))
	var got []string
	for _, r := range dresp.Resources {
		for _, acl := range r.ACLs {
			got = append(got, fmt.Sprintf("%s/%s/%s/%s/%s", r.ResourceType, r.ResourcePatternType, r.ResourceName, acl.Principal, acl.Operation))
		}
	}
	want := []string{
		"TOPIC/LITERAL/orders/User:alice/READ",
		"TOPIC/PREFIXED/logs-/User:bob/WRITE",
		"GROUP/LITERAL/g/User:alice/READ",
		"CLUSTER/LITERAL/kafka-cluster/User:ops/ALTER",
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("described %v, want %v", got, want)
	}
	if r := a.HandleDescribeACLs(describe, false); r.ErrorCode != kerr.ClusterAuthorizationFailed.Code || len(r.Resources) != 0 {
		t.Fatalf("unauthorized describe: code %d, %d resources", r.ErrorCode, len(r.Resources))
	}
	bad := *describe
	bad.Operation = kmsg.ACLOperationUnknown
	if r := a.HandleDescribeACLs(&bad, true); r.ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("unknown operation filter: code %d", r.ErrorCode)
	}

	// v0 filters are literal: a v0 describe of topics sees no prefixed ACL.
	v0 := *describe
	v0.Version = 0
	v0.ResourceType = topic
	v0resp := wireResp(t, a.HandleDescribeACLs(wireReq(t, &v0), true))
	if len(v0resp.Resources) != 1 || v0resp.Resources[0].ResourceName != "orders" {
		t.Fatalf("v0 describe: %+v", v0resp.Resources)
	}

	del := kmsg.NewPtrDeleteACLsRequest()
	del.Version = 3
	f1 := kmsg.NewDeleteACLsRequestFilter()
	f1.ResourceType, f1.ResourcePatternType, f1.Operation, f1.PermissionType = topic, kmsg.ACLResourcePatternTypeMatch, kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	f1.ResourceName = kmsg.StringPtr("logs-abc")
	f2 := kmsg.NewDeleteACLsRequestFilter()
	f2.ResourceType, f2.ResourcePatternType, f2.Operation, f2.PermissionType = group, kmsg.ACLResourcePatternTypeAny, kmsg.ACLOperationAny, kmsg.ACLPermissionTypeAny
	f3 := f2
	f3.ResourceType = kmsg.ACLResourceTypeUnknown
	del.Filters = []kmsg.DeleteACLsRequestFilter{f1, f2, f3}
	delResp := wireResp(t, a.HandleDeleteACLs(wireReq(t, del), true))
	if len(delResp.Results) != 3 || len(delResp.Results[0].MatchingACLs) != 1 || delResp.Results[0].MatchingACLs[0].ResourceName != "logs-" ||
		len(delResp.Results[1].MatchingACLs) != 1 || delResp.Results[2].ErrorCode != kerr.InvalidRequest.Code {
		t.Fatalf("delete: %+v", delResp.Results)
	}
	if a.Authorize("User:bob", "h", opWrite, topic, "logs-1") || a.Authorize("User:alice", "h", opRead, group, "g") {
		t.Fatal("deleted ACLs still apply")
	}

	// What is left survives a reopen, exactly.
	before := a.List(MatchAll())
	b := openACLs(t, dir, nil)
	if after := b.List(MatchAll()); !slices.Equal(before, after) || len(after) != 2 {
		t.Fatalf("reopened %v, want %v", after, before)
	}
	if !b.Authorize("User:alice", "h", opRead, topic, "orders") {
		t.Fatal("reopened store does not authorize")
	}
}

// wireReq encodes req and decodes it into a fresh request, as the broker
// receives it.
func wireReq[R kmsg.Request](t *testing.T, req R) R {
	t.Helper()
	fresh := kmsg.RequestForKey(req.Key())
	fresh.SetVersion(req.GetVersion())
	if err := fresh.ReadFrom(req.AppendTo(nil)); err != nil {
		t.Fatal(err)
	}
	return fresh.(R)
}

// wireResp encodes resp and decodes it into a fresh response, as the client
// receives it.
func wireResp[R kmsg.Response](t *testing.T, resp R) R {
	t.Helper()
	fresh := kmsg.ResponseForKey(resp.Key())
	fresh.SetVersion(resp.GetVersion())
	if err := fresh.ReadFrom(resp.AppendTo(nil)); err != nil {
		t.Fatal(err)
	}
	return fresh.(R)
}

func TestACLsFileDurable(t *testing.T) {
	dir := t.TempDir()
	a := openACLs(t, dir, nil, allow(topic, pre, "p-", "User:CN=alice,O=runnel", opRead), allow(topic, lit, "q", "User:b", opWrite))
	// No temporary file is left, and the file is private.
	if _, err := os.Stat(filepath.Join(dir, ACLsFile+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("temporary file left: %v", err)
	}
	st, err := os.Stat(filepath.Join(dir, ACLsFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("acls file: %v, mode %v", err, st.Mode())
	}
	// Adding an existing ACL is a no-op; removing writes.
	if err := a.Add(allow(topic, lit, "q", "User:b", opWrite)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Remove(Filter{ResourceType: topic, PatternType: lit, Operation: kmsg.ACLOperationAny, Permission: kmsg.ACLPermissionTypeAny}); err != nil {
		t.Fatal(err)
	}
	b := openACLs(t, dir, nil)
	got := b.List(MatchAll())
	if len(got) != 1 || got[0] != allow(topic, pre, "p-", "User:CN=alice,O=runnel", opRead) {
		t.Fatalf("reopened: %v", got)
	}
	// A damaged file is an error at open, not an empty store that would
	// silently drop every deny.
	os.WriteFile(filepath.Join(dir, ACLsFile), []byte(`{"version":1,"acls":[{"operation":"NOPE"}]}`), 0o600)
	if _, err := OpenACLs(dir, nil); err == nil {
		t.Fatal("damaged acls file opened")
	}
	os.WriteFile(filepath.Join(dir, ACLsFile), []byte(`{"version":2,"acls":[]}`), 0o600)
	if _, err := OpenACLs(dir, nil); err == nil {
		t.Fatal("acls file of another version opened")
	}
	if _, err := OpenACLs(t.TempDir(), []string{"admin"}); err == nil {
		t.Fatal("super user without a type accepted")
	}
}

// TestACLsWriteFailureChangesNothing: a change that cannot be written does
// not take effect in memory either.
func TestACLsWriteFailureChangesNothing(t *testing.T) {
	// A directory in the temporary file's place makes the write fail, even
	// for root, who ignores permissions.
	dir := t.TempDir()
	a := openACLs(t, dir, nil)
	if err := os.Mkdir(filepath.Join(dir, ACLsFile+".tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := a.Add(allow(topic, lit, "t", "User:a", opRead)); err == nil {
		t.Fatal("add succeeded though the file cannot be written")
	}
	if a.Authorize("User:a", "h", opRead, topic, "t") || len(a.List(MatchAll())) != 0 {
		t.Fatal("failed add took effect")
	}
}
