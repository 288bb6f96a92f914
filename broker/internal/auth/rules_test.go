package auth

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// brokerAPIs are the APIs the bundled broker serves or will serve with
// security on; each must have rules, or it would be refused to everyone but
// super users.
var brokerAPIs = []kmsg.Key{
	kmsg.Produce, kmsg.Fetch, kmsg.ListOffsets, kmsg.Metadata, kmsg.OffsetCommit, kmsg.OffsetFetch,
	kmsg.FindCoordinator, kmsg.JoinGroup, kmsg.Heartbeat, kmsg.LeaveGroup, kmsg.SyncGroup,
	kmsg.DescribeGroups, kmsg.ListGroups, kmsg.SASLHandshake, kmsg.ApiVersions, kmsg.CreateTopics,
	kmsg.DeleteTopics, kmsg.DeleteRecords, kmsg.InitProducerID, kmsg.OffsetForLeaderEpoch,
	kmsg.AddPartitionsToTxn, kmsg.AddOffsetsToTxn, kmsg.EndTxn, kmsg.TxnOffsetCommit,
	kmsg.DescribeACLs, kmsg.CreateACLs, kmsg.DeleteACLs, kmsg.DescribeConfigs, kmsg.AlterConfigs,
	kmsg.SASLAuthenticate, kmsg.CreatePartitions, kmsg.DeleteGroups, kmsg.IncrementalAlterConfigs,
	kmsg.OffsetDelete, kmsg.DescribeUserSCRAMCredentials, kmsg.AlterUserSCRAMCredentials,
	kmsg.DescribeCluster, kmsg.DescribeProducers, kmsg.DescribeTransactions, kmsg.ListTransactions,
}

func TestRulesCoverBrokerAPIs(t *testing.T) {
	for _, k := range brokerAPIs {
		checks, ok := RulesFor(k.Int16())
		if !ok {
			t.Errorf("%s: no rules", k.Name())
			continue
		}
		for _, c := range checks {
			if c.Code != ErrorCode(c.Resource) && c.Code != kerr.ClusterAuthorizationFailed.Code {
				t.Errorf("%s: check on %s answers %d", k.Name(), c.Resource, c.Code)
			}
			ops := supportedOperations(c.Resource)
			found := false
			for _, op := range ops {
				found = found || grants(op, c.Op)
			}
			if !found {
				t.Errorf("%s: %s on %s cannot be granted by any ACL", k.Name(), c.Op, c.Resource)
			}
			if c.ClusterOp != kmsg.ACLOperationUnknown && !containsOp(supportedOperations(kmsg.ACLResourceTypeCluster), c.ClusterOp) {
				t.Errorf("%s: cluster alternative %s cannot be granted", k.Name(), c.ClusterOp)
			}
		}
	}
	if _, ok := RulesFor(999); ok {
		t.Error("unknown API has rules")
	}
}

func containsOp(ops []Operation, op Operation) bool {
	for _, o := range ops {
		if o == op {
			return true
		}
	}
	return false
}

// TestRulesAsKafka spot-checks the table against Kafka's authorizer.
func TestRulesAsKafka(t *testing.T) {
	type want struct {
		when Condition
		res  ResourceType
		op   Operation
		alt  Operation
		code int16
	}
	for key, wants := range map[kmsg.Key][]want{
		kmsg.Produce: {
			{Transactional, txnID, opWrite, 0, kerr.TransactionalIDAuthorizationFailed.Code},
			{Always, topic, opWrite, 0, kerr.TopicAuthorizationFailed.Code},
		},
		kmsg.Fetch:        {{Always, topic, opRead, 0, kerr.TopicAuthorizationFailed.Code}},
		kmsg.CreateTopics: {{Always, topic, opCreate, opCreate, kerr.TopicAuthorizationFailed.Code}},
		kmsg.DeleteTopics: {{Always, topic, opDelete, 0, kerr.TopicAuthorizationFailed.Code}},
		kmsg.JoinGroup:    {{Always, group, opRead, 0, kerr.GroupAuthorizationFailed.Code}},
		kmsg.OffsetCommit: {
			{Always, group, opRead, 0, kerr.GroupAuthorizationFailed.Code},
			{Always, topic, opRead, 0, kerr.TopicAuthorizationFailed.Code},
		},
		kmsg.InitProducerID: {
			{Transactional, txnID, opWrite, 0, kerr.TransactionalIDAuthorizationFailed.Code},
			{NotTransactional, topic, opWrite, opIdempotentWrite, kerr.ClusterAuthorizationFailed.Code},
		},
		kmsg.CreateACLs: {{Always, cluster, opAlter, 0, kerr.ClusterAuthorizationFailed.Code}},
	} {
		checks, _ := RulesFor(key.Int16())
		if len(checks) != len(wants) {
			t.Errorf("%s: %d checks, want %d", key.Name(), len(checks), len(wants))
			continue
		}
		for i, w := range wants {
			c := checks[i]
			if c.When != w.when || c.Resource != w.res || c.Op != w.op || c.ClusterOp != w.alt || c.Code != w.code {
				t.Errorf("%s check %d: %+v, want %+v", key.Name(), i, c, w)
			}
		}
	}
	if checks, ok := RulesFor(kmsg.SASLHandshake.Int16()); !ok || len(checks) != 0 {
		t.Error("SaslHandshake needs no authorization")
	}
}
