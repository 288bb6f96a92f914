package auth

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// benchACLs is a store shaped like a busy deployment: many literal topic
// ACLs, a few hundred prefixes of assorted lengths, wildcard rules and
// group ACLs.
func benchACLs(tb testing.TB) *ACLs {
	var acls []ACL
	for i := range 2000 {
		acls = append(acls, allow(topic, lit, fmt.Sprintf("topic-%d", i), fmt.Sprintf("User:u%d", i%50), opWrite))
	}
	for i := range 300 {
		acls = append(acls, allow(topic, pre, fmt.Sprintf("team-%d-%s", i, "xxxxxxxxxx"[:i%10]), fmt.Sprintf("User:u%d", i%50), opRead))
		acls = append(acls, allow(group, pre, fmt.Sprintf("app-%d-", i), fmt.Sprintf("User:u%d", i%50), opRead))
	}
	acls = append(acls, allow(topic, lit, "*", "User:monitor", opDescribe), deny(topic, pre, "secret-", "User:*", kmsg.ACLOperationAll))
	return openACLs(tb, tb.TempDir(), []string{"User:admin"}, acls...)
}

// TestAuthorizeDoesNotAllocate: Authorize runs for every resource of every
// request, so it must not allocate, whether it allows, denies or finds a
// super user.
func TestAuthorizeDoesNotAllocate(t *testing.T) {
	a := benchACLs(t)
	for _, c := range []struct {
		principal string
		res       ResourceType
		op        Operation
		name      string
		want      bool
	}{
		{"User:u7", topic, opWrite, "topic-7", true},
		{"User:u8", topic, opWrite, "topic-7", false},
		{"User:u7", topic, opRead, "team-7-xxxxxxx-orders", true},
		{"User:u7", topic, opRead, "secret-x", false},
		{"User:admin", topic, opDelete, "anything", true},
		{"User:u1", group, opRead, "app-1-consumers", true},
	} {
		var got bool
		allocs := testing.AllocsPerRun(100, func() {
			got = a.Authorize(c.principal, "10.1.2.3", c.op, c.res, c.name)
		})
		if got != c.want {
			t.Errorf("Authorize(%s, %s, %q) = %v, want %v", c.principal, c.op, c.name, got, c.want)
		}
		if allocs != 0 {
			t.Errorf("Authorize(%s, %s, %q) allocates %.1f times", c.principal, c.op, c.name, allocs)
		}
	}
}

func BenchmarkAuthorize(b *testing.B) {
	a := benchACLs(b)
	for _, c := range []struct {
		name, principal, resource string
		op                        Operation
	}{
		{"literal-allow", "User:u7", "topic-7", opWrite},
		{"literal-deny", "User:u8", "topic-7", opWrite},
		{"prefixed-allow", "User:u7", "team-7-xxxxxxx-orders", opRead},
		{"no-acl", "User:u7", "unrelated-topic-name", opRead},
		{"super-user", "User:admin", "topic-7", opWrite},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a.Authorize(c.principal, "10.1.2.3", c.op, topic, c.resource)
			}
		})
	}
}

// BenchmarkAuthorizeParallel measures checks on many connections at once
// while nothing changes the ACLs: they share one immutable index.
func BenchmarkAuthorizeParallel(b *testing.B) {
	a := benchACLs(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a.Authorize("User:u7", "10.1.2.3", opRead, topic, "team-7-xxxxxxx-orders")
		}
	})
}
