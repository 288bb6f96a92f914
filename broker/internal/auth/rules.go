package auth

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// NameSource says which resource names of a request a Check applies to.
type NameSource uint8

// The places a request names resources.
const (
	// FromCluster: the cluster resource, named ClusterName.
	FromCluster NameSource = iota
	// FromTopics: each topic the request (or, where the request lists none
	// and means all, the response) names.
	FromTopics
	// FromGroup: the request's group id (ListGroups: each group listed).
	FromGroup
	// FromTransactionalID: the request's transactional id (ListTransactions:
	// each one listed).
	FromTransactionalID
	// FromAnyTopic: no particular topic; Authorizer.AuthorizeAny on
	// topics (Kafka's authorize-by-resource-type).
	FromAnyTopic
	// FromTopicConfigs: the request's config resources of type topic
	// (DescribeConfigs, AlterConfigs, IncrementalAlterConfigs).
	FromTopicConfigs
	// FromBrokerConfigs: the request's config resources of type broker or
	// broker logger, which are checked as the cluster.
	FromBrokerConfigs
	// FromGroupKeys: FindCoordinator's keys of type group.
	FromGroupKeys
	// FromTransactionKeys: FindCoordinator's keys of type transaction.
	FromTransactionKeys
)

// Condition says when a Check applies.
type Condition uint8

// When checks apply.
const (
	// Always: on every request of the API.
	Always Condition = iota
	// Transactional: when the request acts for a transactional id (a
	// Produce with transactional batches; an InitProducerId with an id).
	Transactional
	// NotTransactional: when it does not (an idempotent InitProducerId).
	NotTransactional
	// NamedTopics: when the request names its topics (Metadata, OffsetFetch).
	NamedTopics
	// AllTopics: when the request asks for every topic (Metadata with a null
	// topic list, OffsetFetch with null topics).
	AllTopics
	// AutoCreate: when the request would create the topics it names and
	// they do not exist (Metadata with AllowAutoTopicCreation).
	AutoCreate
)

// A Check is one authorization that an API makes: Op on resources of type
// Resource, for each name that Names yields, when When holds. A name
// passes if Authorize allows it, or if ClusterOp is set and is allowed on
// the cluster (one grant that covers every name: Create on the cluster
// creates any topic). A name that fails is answered with Code in its part
// of the response or, if Omit is set, silently left out of the response.
// A request-wide check (FromCluster, FromGroup for most group APIs,
// FromTransactionalID) fails the whole request.
type Check struct {
	When      Condition
	Resource  ResourceType
	Op        Operation
	Names     NameSource
	ClusterOp Operation // zero (Unknown): no cluster-wide alternative
	Omit      bool
	Code      int16
}

// ErrorCode returns the *_AUTHORIZATION_FAILED code for a resource type:
// TOPIC_, GROUP_, CLUSTER_ or TRANSACTIONAL_ID_AUTHORIZATION_FAILED, and
// CLUSTER_AUTHORIZATION_FAILED for any other.
func ErrorCode(res ResourceType) int16 {
	switch res {
	case kmsg.ACLResourceTypeTopic:
		return kerr.TopicAuthorizationFailed.Code
	case kmsg.ACLResourceTypeGroup:
		return kerr.GroupAuthorizationFailed.Code
	case kmsg.ACLResourceTypeTransactionalId:
		return kerr.TransactionalIDAuthorizationFailed.Code
	}
	return kerr.ClusterAuthorizationFailed.Code
}

// Short names for the table below.
const (
	topic   = kmsg.ACLResourceTypeTopic
	group   = kmsg.ACLResourceTypeGroup
	cluster = kmsg.ACLResourceTypeCluster
	txnID   = kmsg.ACLResourceTypeTransactionalId

	opRead            = kmsg.ACLOperationRead
	opWrite           = kmsg.ACLOperationWrite
	opCreate          = kmsg.ACLOperationCreate
	opDelete          = kmsg.ACLOperationDelete
	opAlter           = kmsg.ACLOperationAlter
	opDescribe        = kmsg.ACLOperationDescribe
	opClusterAction   = kmsg.ACLOperationClusterAction
	opDescribeConfigs = kmsg.ACLOperationDescribeConfigs
	opAlterConfigs    = kmsg.ACLOperationAlterConfigs
	opIdempotentWrite = kmsg.ACLOperationIdempotentWrite
)

// on is a check that always applies, answered with its resource type's code.
func on(res ResourceType, op Operation, names NameSource) Check {
	return Check{Resource: res, Op: op, Names: names, Code: ErrorCode(res)}
}

func (c Check) when(w Condition) Check       { c.When = w; return c }
func (c Check) orCluster(op Operation) Check { c.ClusterOp = op; return c }
func (c Check) omit() Check                  { c.Omit = true; return c }
func (c Check) code(code int16) Check        { c.Code = code; return c }

// RulesFor returns the checks that API key needs, as Kafka's authorizer
// makes them (KafkaApis), and whether the API is known to the table. ok
// with no checks means the API needs none (ApiVersions, SaslHandshake,
// SaslAuthenticate). An API the table does not know should be refused to
// all but super users. It builds a new slice on every call: the broker
// should look each API up once, when it builds its dispatch table.
func RulesFor(key int16) (checks []Check, ok bool) {
	switch kmsg.Key(key) {
	case kmsg.ApiVersions, kmsg.SASLHandshake, kmsg.SASLAuthenticate:
		return nil, true

	case kmsg.Produce:
		// The transactional id first: failing it fails the whole request
		// with TRANSACTIONAL_ID_AUTHORIZATION_FAILED. Idempotent batches need
		// nothing more than Write (KIP-679).
		return []Check{on(txnID, opWrite, FromTransactionalID).when(Transactional), on(topic, opWrite, FromTopics)}, true
	case kmsg.Fetch:
		return []Check{on(topic, opRead, FromTopics)}, true
	case kmsg.ListOffsets, kmsg.OffsetForLeaderEpoch, kmsg.DescribeTopicPartitions:
		return []Check{on(topic, opDescribe, FromTopics)}, true
	case kmsg.Metadata:
		return []Check{
			on(topic, opDescribe, FromTopics).when(NamedTopics),
			on(topic, opDescribe, FromTopics).when(AllTopics).omit(),
			on(topic, opCreate, FromTopics).when(AutoCreate).orCluster(opCreate),
		}, true

	case kmsg.CreateTopics:
		return []Check{on(topic, opCreate, FromTopics).orCluster(opCreate)}, true
	case kmsg.DeleteTopics, kmsg.DeleteRecords:
		return []Check{on(topic, opDelete, FromTopics)}, true
	case kmsg.CreatePartitions:
		return []Check{on(topic, opAlter, FromTopics)}, true
	case kmsg.DescribeConfigs:
		return []Check{on(topic, opDescribeConfigs, FromTopicConfigs), on(cluster, opDescribeConfigs, FromBrokerConfigs)}, true
	case kmsg.AlterConfigs, kmsg.IncrementalAlterConfigs:
		return []Check{on(topic, opAlterConfigs, FromTopicConfigs), on(cluster, opAlterConfigs, FromBrokerConfigs)}, true
	case kmsg.DescribeProducers:
		return []Check{on(topic, opRead, FromTopics)}, true

	case kmsg.FindCoordinator:
		return []Check{on(group, opDescribe, FromGroupKeys), on(txnID, opDescribe, FromTransactionKeys)}, true
	case kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat, kmsg.LeaveGroup, kmsg.ConsumerGroupHeartbeat:
		return []Check{on(group, opRead, FromGroup)}, true
	case kmsg.OffsetCommit:
		return []Check{on(group, opRead, FromGroup), on(topic, opRead, FromTopics)}, true
	case kmsg.OffsetFetch:
		return []Check{
			on(group, opDescribe, FromGroup),
			on(topic, opDescribe, FromTopics).when(NamedTopics),
			on(topic, opDescribe, FromTopics).when(AllTopics).omit(),
		}, true
	case kmsg.DescribeGroups, kmsg.ConsumerGroupDescribe:
		return []Check{on(group, opDescribe, FromGroup)}, true
	case kmsg.ListGroups:
		return []Check{on(group, opDescribe, FromGroup).orCluster(opDescribe).omit()}, true
	case kmsg.DeleteGroups:
		return []Check{on(group, opDelete, FromGroup)}, true
	case kmsg.OffsetDelete:
		return []Check{on(group, opDelete, FromGroup), on(topic, opRead, FromTopics)}, true

	case kmsg.InitProducerID:
		return []Check{
			on(txnID, opWrite, FromTransactionalID).when(Transactional),
			on(topic, opWrite, FromAnyTopic).when(NotTransactional).orCluster(opIdempotentWrite).code(kerr.ClusterAuthorizationFailed.Code),
		}, true
	case kmsg.AddPartitionsToTxn:
		return []Check{on(txnID, opWrite, FromTransactionalID), on(topic, opWrite, FromTopics)}, true
	case kmsg.AddOffsetsToTxn:
		return []Check{on(txnID, opWrite, FromTransactionalID), on(group, opRead, FromGroup)}, true
	case kmsg.EndTxn:
		return []Check{on(txnID, opWrite, FromTransactionalID)}, true
	case kmsg.TxnOffsetCommit:
		return []Check{on(txnID, opWrite, FromTransactionalID), on(group, opRead, FromGroup), on(topic, opRead, FromTopics)}, true
	case kmsg.WriteTxnMarkers:
		return []Check{on(cluster, opClusterAction, FromCluster)}, true
	case kmsg.DescribeTransactions:
		return []Check{on(txnID, opDescribe, FromTransactionalID)}, true
	case kmsg.ListTransactions:
		return []Check{on(txnID, opDescribe, FromTransactionalID).omit()}, true

	case kmsg.DescribeACLs, kmsg.DescribeCluster, kmsg.DescribeLogDirs, kmsg.ListPartitionReassignments,
		kmsg.DescribeUserSCRAMCredentials:
		return []Check{on(cluster, opDescribe, FromCluster)}, true
	case kmsg.CreateACLs, kmsg.DeleteACLs, kmsg.ElectLeaders, kmsg.AlterPartitionAssignments,
		kmsg.UpdateFeatures, kmsg.AlterUserSCRAMCredentials:
		return []Check{on(cluster, opAlter, FromCluster)}, true
	case kmsg.DescribeClientQuotas:
		return []Check{on(cluster, opDescribeConfigs, FromCluster)}, true
	case kmsg.AlterClientQuotas:
		return []Check{on(cluster, opAlterConfigs, FromCluster)}, true
	}
	return nil, false
}
