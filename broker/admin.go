package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/runnel-io/runnel/broker/storage"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// adminError is a per-item error of an admin request: a Kafka error code
// and a message for the client.
type adminError struct {
	code int16
	msg  string
}

func (e *adminError) Error() string { return e.msg }

func adminErr(code int16, format string, args ...any) *adminError {
	return &adminError{code: code, msg: fmt.Sprintf(format, args...)}
}

// adminCode returns an error's code and message for a response: an
// adminError's own, or errorCode's mapping of a storage error.
func (b *Broker) adminCode(op string, err error) (int16, *string) {
	if err == nil {
		return 0, nil
	}
	var ae *adminError
	if errors.As(err, &ae) {
		return ae.code, strp(ae.msg)
	}
	code := errorCode(err)
	if code == kerr.UnknownServerError.Code {
		b.logger.Error(op+" failed", "err", err)
	}
	return code, errMessage(err)
}

// handleCreateTopics creates topics, or with ValidateOnly checks that they
// could be created.
func (b *Broker) handleCreateTopics(ctx context.Context, req *kmsg.CreateTopicsRequest) *kmsg.CreateTopicsResponse {
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	z, _ := b.authzFor(ctx, kmsg.CreateTopics)
	count := make(map[string]int, len(req.Topics))
	for _, rt := range req.Topics {
		count[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic = rt.Topic
		st.NumPartitions, st.ReplicationFactor = -1, -1
		var t topicView
		var err error
		if count[rt.Topic] > 1 {
			err = adminErr(kerr.InvalidRequest.Code, "topic %q is named more than once in the request", rt.Topic)
		} else if denied := z.deniedTopic(rt.Topic); denied != 0 {
			err = adminErr(denied, "not authorized to create topic %q", rt.Topic)
		} else {
			t, err = b.createTopic(rt, req.ValidateOnly)
		}
		if err != nil {
			st.ErrorCode, st.ErrorMessage = b.adminCode("create topic", err)
			resp.Topics = append(resp.Topics, st)
			continue
		}
		st.NumPartitions, st.ReplicationFactor = t.partitions, 1
		st.TopicID = t.id
		for _, c := range describeTopicConfigs(t.cfg, t.overrides, nil, false, false) {
			rc := kmsg.NewCreateTopicsResponseTopicConfig()
			rc.Name, rc.Value, rc.ReadOnly, rc.Source, rc.IsSensitive = c.Name, c.Value, c.ReadOnly, int8(c.Source), c.IsSensitive
			st.Configs = append(st.Configs, rc)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// topicView is what CreateTopics reports of a topic it created, or would
// have created (validate-only: id zero).
type topicView struct {
	id         [16]byte
	partitions int32
	cfg        storage.TopicConfig
	overrides  map[string]string
}

// createTopic validates one topic of a CreateTopics request and, unless
// validateOnly, creates it.
func (b *Broker) createTopic(rt kmsg.CreateTopicsRequestTopic, validateOnly bool) (topicView, error) {
	var none topicView
	if err := storage.ValidateTopicName(rt.Topic); err != nil {
		return none, err
	}
	partitions := rt.NumPartitions
	if len(rt.ReplicaAssignment) > 0 {
		if rt.NumPartitions != -1 || rt.ReplicationFactor != -1 {
			return none, adminErr(kerr.InvalidRequest.Code, "both a replica assignment and numPartitions or replicationFactor were given; give one or the other")
		}
		if err := b.checkAssignment(rt.ReplicaAssignment); err != nil {
			return none, err
		}
		partitions = int32(len(rt.ReplicaAssignment))
	} else {
		switch {
		case partitions == -1:
			partitions = b.cfg.DefaultPartitions
		case partitions < 1:
			return none, adminErr(kerr.InvalidPartitions.Code, "number of partitions must be at least 1, or -1 for the default (%d); got %d", b.cfg.DefaultPartitions, partitions)
		}
		switch rf := rt.ReplicationFactor; {
		case rf == -1 || rf == 1:
		case rf < 1:
			return none, adminErr(kerr.InvalidReplicationFactor.Code, "replication factor must be at least 1, or -1 for the default (1); got %d", rf)
		default:
			return none, adminErr(kerr.InvalidReplicationFactor.Code, "replication factor %d is larger than the number of brokers, 1", rf)
		}
	}
	overrides := map[string]string{}
	for _, c := range rt.Configs {
		if c.Value != nil { // a null value asks for the default
			overrides[c.Name] = *c.Value
		}
	}
	cfg, err := storage.ParseTopicConfig(overrides)
	if err != nil {
		return none, err
	}
	if validateOnly {
		if b.log.Topic(rt.Topic) != nil {
			return none, adminErr(kerr.TopicAlreadyExists.Code, "topic %q already exists", rt.Topic)
		}
		if err := b.checkPartitionLimits(rt.Topic, partitions, partitions); err != nil {
			return none, err
		}
		return topicView{partitions: partitions, cfg: cfg, overrides: overrides}, nil
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if b.log.Topic(rt.Topic) != nil {
		return none, adminErr(kerr.TopicAlreadyExists.Code, "topic %q already exists", rt.Topic)
	}
	if err := b.checkPartitionLimits(rt.Topic, partitions, partitions); err != nil {
		return none, err
	}
	t, err := b.log.CreateTopic(rt.Topic, partitions, overrides)
	if err != nil {
		return none, err
	}
	b.logger.Info("created topic", "topic", rt.Topic, "partitions", partitions, "configs", overrides)
	return topicView{id: t.ID(), partitions: t.NumPartitions(), cfg: t.Config(), overrides: t.Overrides()}, nil
}

// checkPartitionLimits refuses a topic that would have total partitions,
// add of them new, when that exceeds MaxPartitionsPerTopic or would take the
// broker past MaxPartitions. It runs before anything is written, so that a
// refused request leaves no trace on disk; callers creating hold adminMu, so
// that two creates cannot both pass on the same headroom.
func (b *Broker) checkPartitionLimits(topic string, total, add int32) error {
	if total > b.cfg.MaxPartitionsPerTopic {
		return adminErr(kerr.InvalidPartitions.Code, "topic %q: %d partitions exceed the limit of %d per topic (max-partitions-per-topic)",
			topic, total, b.cfg.MaxPartitionsPerTopic)
	}
	var have int64
	for _, t := range b.log.Topics() {
		have += int64(t.NumPartitions())
	}
	if have+int64(add) > int64(b.cfg.MaxPartitions) {
		return adminErr(kerr.PolicyViolation.Code, "topic %q: %d more partitions would make %d on this broker, over its limit of %d (max-partitions)",
			topic, add, have+int64(add), b.cfg.MaxPartitions)
	}
	return nil
}

// checkAssignment accepts a manual replica assignment only if it puts
// partitions 0 to n-1 on this node alone.
func (b *Broker) checkAssignment(as []kmsg.CreateTopicsRequestTopicReplicaAssignment) error {
	seen := make(map[int32]bool, len(as))
	for _, a := range as {
		if a.Partition < 0 || int(a.Partition) >= len(as) || seen[a.Partition] {
			return adminErr(kerr.InvalidReplicaAssignment.Code, "replica assignment must name partitions 0 to %d once each; partition %d is out of place", len(as)-1, a.Partition)
		}
		seen[a.Partition] = true
		if len(a.Replicas) != 1 || a.Replicas[0] != b.cfg.NodeID {
			return adminErr(kerr.InvalidReplicaAssignment.Code, "partition %d: replicas %v; this one-node cluster has only node %d", a.Partition, a.Replicas, b.cfg.NodeID)
		}
	}
	return nil
}

// handleDeleteTopics deletes topics by name, or from v6 by name or id.
func (b *Broker) handleDeleteTopics(ctx context.Context, req *kmsg.DeleteTopicsRequest) *kmsg.DeleteTopicsResponse {
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	z, _ := b.authzFor(ctx, kmsg.DeleteTopics)
	targets := req.Topics
	if req.Version < 6 {
		targets = make([]kmsg.DeleteTopicsRequestTopic, len(req.TopicNames))
		for i, name := range req.TopicNames {
			targets[i] = kmsg.NewDeleteTopicsRequestTopic()
			targets[i].Topic = &name
		}
	}
	var byID map[[16]byte]*storage.Topic
	for _, rt := range targets {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		var name string
		switch {
		case rt.Topic != nil:
			name = *rt.Topic
		default:
			if byID == nil {
				byID = b.topicsByID()
			}
			t := byID[rt.TopicID]
			if t == nil {
				st.ErrorCode, st.ErrorMessage = kerr.UnknownTopicID.Code, strp("no topic has this id")
				resp.Topics = append(resp.Topics, st)
				continue
			}
			name = t.Name()
			st.Topic = strp(name)
		}
		if denied := z.deniedTopic(name); denied != 0 {
			st.ErrorCode, st.ErrorMessage = denied, strp(fmt.Sprintf("not authorized to delete topic %q", name))
			resp.Topics = append(resp.Topics, st)
			continue
		}
		st.ErrorCode, st.ErrorMessage = b.adminCode("delete topic", b.deleteTopic(name))
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) deleteTopic(name string) error {
	if isInternal(name) {
		return adminErr(kerr.InvalidTopicException.Code, "topic %q is internal and cannot be deleted", name)
	}
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	if err := b.log.DeleteTopic(name); err != nil {
		return err
	}
	b.logger.Info("deleted topic", "topic", name)
	return nil
}

// handleCreatePartitions raises partition counts.
func (b *Broker) handleCreatePartitions(ctx context.Context, req *kmsg.CreatePartitionsRequest) *kmsg.CreatePartitionsResponse {
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	z, _ := b.authzFor(ctx, kmsg.CreatePartitions)
	count := make(map[string]int, len(req.Topics))
	for _, rt := range req.Topics {
		count[rt.Topic]++
	}
	for _, rt := range req.Topics {
		st := kmsg.NewCreatePartitionsResponseTopic()
		st.Topic = rt.Topic
		var err error
		if count[rt.Topic] > 1 {
			err = adminErr(kerr.InvalidRequest.Code, "topic %q is named more than once in the request", rt.Topic)
		} else if denied := z.deniedTopic(rt.Topic); denied != 0 {
			err = adminErr(denied, "not authorized to alter topic %q", rt.Topic)
		} else {
			err = b.createPartitions(rt, req.ValidateOnly)
		}
		st.ErrorCode, st.ErrorMessage = b.adminCode("create partitions", err)
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

func (b *Broker) createPartitions(rt kmsg.CreatePartitionsRequestTopic, validateOnly bool) error {
	b.adminMu.Lock()
	defer b.adminMu.Unlock()
	t := b.log.Topic(rt.Topic)
	if t == nil {
		return adminErr(kerr.UnknownTopicOrPartition.Code, "topic %q does not exist", rt.Topic)
	}
	have := t.NumPartitions()
	if rt.Count <= have {
		return adminErr(kerr.InvalidPartitions.Code, "topic %q has %d partitions; the count can only grow, and %d does not", rt.Topic, have, rt.Count)
	}
	if rt.Assignment != nil {
		if len(rt.Assignment) != int(rt.Count-have) {
			return adminErr(kerr.InvalidReplicaAssignment.Code, "%d new partitions but %d assignments", rt.Count-have, len(rt.Assignment))
		}
		for _, a := range rt.Assignment {
			if len(a.Replicas) != 1 || a.Replicas[0] != b.cfg.NodeID {
				return adminErr(kerr.InvalidReplicaAssignment.Code, "replicas %v; this one-node cluster has only node %d", a.Replicas, b.cfg.NodeID)
			}
		}
	}
	if err := b.checkPartitionLimits(rt.Topic, rt.Count, rt.Count-have); err != nil {
		return err
	}
	if validateOnly {
		return nil
	}
	if err := b.log.CreatePartitions(rt.Topic, rt.Count); err != nil {
		return err
	}
	b.logger.Info("created partitions", "topic", rt.Topic, "from", have, "to", rt.Count)
	return nil
}

// Endpoint types of DescribeCluster v1+ (KIP-919).
const (
	endpointBrokers     = 1
	endpointControllers = 2
)

// handleDescribeCluster describes the one-node cluster.
func (b *Broker) handleDescribeCluster(ctx context.Context, req *kmsg.DescribeClusterRequest) *kmsg.DescribeClusterResponse {
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	if !b.clusterAllowed(ctx, kmsg.DescribeCluster) {
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
		return resp
	}
	resp.EndpointType = endpointBrokers
	if req.Version >= 1 && req.EndpointType != endpointBrokers {
		resp.ErrorCode = kerr.MismatchedEndpointType.Code
		resp.ErrorMessage = strp("this is a broker endpoint; runnel has no separate controller endpoints")
		return resp
	}
	resp.ClusterID = b.meta.clusterID()
	resp.ControllerID = b.cfg.NodeID
	mb := kmsg.NewDescribeClusterResponseBroker()
	host, port := b.advertisedTo(ctx)
	mb.NodeID, mb.Host, mb.Port = b.cfg.NodeID, host, port
	resp.Brokers = []kmsg.DescribeClusterResponseBroker{mb}
	if req.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = clusterOperations
	}
	return resp
}
