package group

import "github.com/twmb/franz-go/pkg/kmsg"

// MaxVersion reports the highest version of the API with the given key that the Coordinator
// implements, and false if the Coordinator does not handle that API. The wire server advertises
// these in ApiVersions. OffsetCommit and OffsetFetch stop at v9 and TxnOffsetCommit at v5: the
// next versions name topics by id.
func MaxVersion(key int16) (int16, bool) {
	switch kmsg.Key(key) {
	case kmsg.JoinGroup:
		return 9, true
	case kmsg.SyncGroup:
		return 5, true
	case kmsg.Heartbeat:
		return 4, true
	case kmsg.LeaveGroup:
		return 5, true
	case kmsg.DescribeGroups:
		return 6, true
	case kmsg.ListGroups:
		return 5, true
	case kmsg.DeleteGroups:
		return 3, true
	case kmsg.OffsetCommit:
		return 9, true
	case kmsg.OffsetFetch:
		return 9, true
	case kmsg.OffsetDelete:
		return 0, true
	case kmsg.TxnOffsetCommit:
		return 5, true
	}
	return 0, false
}
