package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/runnel-io/runnel/broker/internal/auth"
	"github.com/runnel-io/runnel/broker/internal/group"
	"github.com/runnel-io/runnel/broker/storage"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// transactionTopic is Kafka's name for the transaction coordinator's state.
const transactionTopic = "__transaction_state"

// isInternal reports whether a topic is one of the coordinators' own:
// Metadata marks them internal, and clients may neither produce to them nor
// delete them.
func isInternal(topic string) bool { return topic == group.OffsetsTopic || topic == transactionTopic }

// Authorized-operation bit sets (Kafka's AclOperation codes as bit
// positions). There are no ACLs: every client may do everything.
const (
	opRead, opWrite, opCreate, opDelete, opAlter, opDescribe = 3, 4, 5, 6, 7, 8
	opClusterAction, opDescribeConfigs, opAlterConfigs       = 9, 10, 11
	opIdempotentWrite                                        = 12

	topicOperations = 1<<opRead | 1<<opWrite | 1<<opCreate | 1<<opDelete | 1<<opAlter |
		1<<opDescribe | 1<<opDescribeConfigs | 1<<opAlterConfigs
	clusterOperations = 1<<opCreate | 1<<opAlter | 1<<opDescribe | 1<<opClusterAction |
		1<<opDescribeConfigs | 1<<opAlterConfigs | 1<<opIdempotentWrite
)

// handleMetadata describes this one-node cluster and the topics asked for
// (all of them for a null list, or an empty one before v1), creating unknown
// topics when both the config and the request allow it.
func (b *Broker) handleMetadata(ctx context.Context, req *kmsg.MetadataRequest) *kmsg.MetadataResponse {
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	mb := kmsg.NewMetadataResponseBroker()
	host, port := b.advertisedTo(ctx)
	mb.NodeID, mb.Host, mb.Port = b.cfg.NodeID, host, port
	resp.Brokers = []kmsg.MetadataResponseBroker{mb}
	resp.ClusterID = strp(b.meta.clusterID())
	resp.ControllerID = b.cfg.NodeID
	if req.IncludeClusterAuthorizedOperations {
		resp.AuthorizedOperations = clusterOperations
	}

	// With authorization on, as in Kafka: a listing leaves out the topics
	// the client may not describe; a topic it names and may not describe,
	// or may not create when the request would create it, is answered
	// with TOPIC_AUTHORIZATION_FAILED, whether it exists or not.
	z, authorizing := b.authzFor(ctx, kmsg.Metadata)
	if req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0) {
		for _, t := range b.log.Topics() {
			if authorizing && !z.may(auth.FromTopics, auth.AllTopics, t.Name()) {
				continue
			}
			resp.Topics = append(resp.Topics, b.metadataTopic(t, req))
		}
		return resp
	}
	denied := func(name string) bool {
		if authorizing && !z.may(auth.FromTopics, auth.NamedTopics, name) {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic, mt.ErrorCode = strp(name), z.code(auth.FromTopics, auth.NamedTopics)
			resp.Topics = append(resp.Topics, mt)
			return true
		}
		return false
	}
	// Before v4 there is no AllowAutoTopicCreation field: those versions
	// always allowed it.
	allowCreate := !b.cfg.DisableAutoCreate && (req.Version < 4 || req.AllowAutoTopicCreation)
	seen := make(map[string]bool, len(req.Topics))
	var byID map[[16]byte]*storage.Topic
	for _, rt := range req.Topics {
		if rt.Topic == nil {
			// v12+: a topic named by id only.
			if byID == nil {
				byID = b.topicsByID()
			}
			t := byID[rt.TopicID]
			if t == nil {
				mt := kmsg.NewMetadataResponseTopic()
				mt.ErrorCode, mt.TopicID = kerr.UnknownTopicID.Code, rt.TopicID
				resp.Topics = append(resp.Topics, mt)
				continue
			}
			if !seen[t.Name()] {
				seen[t.Name()] = true
				if !denied(t.Name()) {
					resp.Topics = append(resp.Topics, b.metadataTopic(t, req))
				}
			}
			continue
		}
		name := *rt.Topic
		if seen[name] {
			continue
		}
		seen[name] = true
		if denied(name) {
			continue
		}
		t := b.log.Topic(name)
		if t == nil && allowCreate && authorizing && !z.may(auth.FromTopics, auth.AutoCreate, name) {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic, mt.ErrorCode = strp(name), z.code(auth.FromTopics, auth.AutoCreate)
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		if t == nil && allowCreate {
			var err error
			if t, err = b.autoCreate(name); err != nil {
				mt := kmsg.NewMetadataResponseTopic()
				mt.Topic, mt.ErrorCode = strp(name), errorCode(err)
				resp.Topics = append(resp.Topics, mt)
				continue
			}
		}
		if t == nil {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic, mt.ErrorCode = strp(name), kerr.UnknownTopicOrPartition.Code
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		resp.Topics = append(resp.Topics, b.metadataTopic(t, req))
	}
	return resp
}

// autoCreate creates a topic a Metadata request named, with the default
// partition count and no config overrides. A topic created meanwhile by
// someone else is returned as it is.
func (b *Broker) autoCreate(name string) (*storage.Topic, error) {
	if err := storage.ValidateTopicName(name); err != nil {
		return nil, err
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if t := b.log.Topic(name); t != nil {
		return t, nil
	}
	if err := b.checkPartitionLimits(name, b.cfg.DefaultPartitions, b.cfg.DefaultPartitions); err != nil {
		b.logger.Warn("not auto-creating topic", "topic", name, "err", err)
		return nil, fmt.Errorf("auto-create: %w", err)
	}
	t, err := b.log.CreateTopic(name, b.cfg.DefaultPartitions, nil)
	if err != nil {
		if !errors.Is(err, storage.ErrInvalidTopicName) {
			b.logger.Error("auto-creating topic failed", "topic", name, "err", err)
		}
		return nil, fmt.Errorf("auto-create: %w", err)
	}
	b.logger.Info("auto-created topic", "topic", name, "partitions", b.cfg.DefaultPartitions)
	return t, nil
}

// metadataTopic describes one topic: every partition led by this node at
// epoch 0, with this node as the only replica.
func (b *Broker) metadataTopic(t *storage.Topic, req *kmsg.MetadataRequest) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	mt.Topic = strp(t.Name())
	mt.TopicID = t.ID()
	mt.IsInternal = isInternal(t.Name())
	if req.IncludeTopicAuthorizedOperations {
		mt.AuthorizedOperations = topicOperations
	}
	n := t.NumPartitions()
	mt.Partitions = make([]kmsg.MetadataResponseTopicPartition, n)
	for i := range n {
		p := kmsg.NewMetadataResponseTopicPartition()
		p.Partition = i
		p.Leader = b.cfg.NodeID
		p.LeaderEpoch = 0
		p.Replicas = []int32{b.cfg.NodeID}
		p.ISR = []int32{b.cfg.NodeID}
		p.OfflineReplicas = []int32{}
		mt.Partitions[i] = p
	}
	return mt
}

// topicsByID indexes the topics by id, for the requests that name topics
// by id (Metadata v12, Fetch v13, DeleteTopics v6).
func (b *Broker) topicsByID() map[[16]byte]*storage.Topic {
	ts := b.log.Topics()
	m := make(map[[16]byte]*storage.Topic, len(ts))
	for _, t := range ts {
		m[t.ID()] = t
	}
	return m
}
