package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrUnknownTopic is matched by the errors of calls about a topic that does
// not exist.
var ErrUnknownTopic = errors.New("unknown topic")

// TopicMismatchError is EnsureTopic's error for an existing topic whose
// partition count or cleanup policy is not the one asked for.
type TopicMismatchError struct {
	Topic   string
	Setting string // "partitions" or "cleanup.policy"
	Have    string
	Want    string
}

func (e *TopicMismatchError) Error() string {
	return fmt.Sprintf("kafka: topic %q exists with %s %s, want %s", e.Topic, e.Setting, e.Have, e.Want)
}

const cleanupPolicy = "cleanup.policy"

// EnsureTopic implements Admin. Of configs, only cleanup.policy is checked
// on an existing topic: it decides what the topic is (a changelog must be
// compacted, a stream must not lose records to compaction), while other
// settings (retention, segment size) are the operator's to change.
func (c *Client) EnsureTopic(ctx context.Context, name string, partitions int32, configs map[string]string) error {
	if partitions <= 0 {
		return fmt.Errorf("kafka: ensure topic %q: %d partitions", name, partitions)
	}
	have, err := c.Partitions(ctx, name)
	if errors.Is(err, ErrUnknownTopic) {
		err = c.createTopic(ctx, name, partitions, configs)
		if err == nil {
			return nil
		}
		if !errors.Is(err, kerr.TopicAlreadyExists) {
			return err
		}
		// Another instance created it meanwhile: check what it made.
		have, err = c.awaitTopic(ctx, name)
	}
	if err != nil {
		return err
	}
	if have != partitions {
		return &TopicMismatchError{Topic: name, Setting: "partitions", Have: fmt.Sprint(have), Want: fmt.Sprint(partitions)}
	}
	want, ok := configs[cleanupPolicy]
	if !ok {
		return nil
	}
	policy, err := c.cleanupPolicy(ctx, name)
	if err != nil {
		return err
	}
	if normalizePolicy(policy) != normalizePolicy(want) {
		return &TopicMismatchError{Topic: name, Setting: cleanupPolicy, Have: fmt.Sprintf("%q", policy), Want: fmt.Sprintf("%q", want)}
	}
	return nil
}

func (c *Client) createTopic(ctx context.Context, name string, partitions int32, configs map[string]string) error {
	cfgs := make(map[string]*string, len(configs))
	for k, v := range configs {
		cfgs[k] = &v
	}
	// A create whose answer was lost and is retried meets its own topic:
	// EnsureTopic checks what exists then.
	if err := c.retry(ctx, func(ctx context.Context) error {
		resp, err := c.adm.CreateTopic(ctx, partitions, c.cfg.ReplicationFactor, cfgs, name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return fmt.Errorf("kafka: create topic %q: %w", name, err)
		}
		return nil
	}); err != nil {
		return err
	}
	c.log.Info("created topic", "topic", name, "partitions", partitions, "configs", configs)
	// Kafka answers CreateTopics before every broker's metadata has the
	// topic; wait until it can be used.
	_, err := c.awaitTopic(ctx, name)
	return err
}

// awaitTopic asks for topic name's partition count until it exists.
func (c *Client) awaitTopic(ctx context.Context, name string) (int32, error) {
	backoff := 10 * time.Millisecond
	for {
		n, err := c.Partitions(ctx, name)
		if !errors.Is(err, ErrUnknownTopic) {
			return n, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("kafka: topic %q created but not yet visible: %w", name, ctx.Err())
		}
		backoff = min(2*backoff, time.Second)
	}
}

// cleanupPolicy returns the cleanup.policy of topic name.
func (c *Client) cleanupPolicy(ctx context.Context, name string) (policy string, err error) {
	err = c.retry(ctx, func(ctx context.Context) error {
		policy, err = c.cleanupPolicyOnce(ctx, name)
		return err
	})
	return policy, err
}

func (c *Client) cleanupPolicyOnce(ctx context.Context, name string) (string, error) {
	rcs, err := c.adm.DescribeTopicConfigs(ctx, name)
	if err != nil {
		return "", fmt.Errorf("kafka: describe configs of topic %q: %w", name, err)
	}
	rc, err := rcs.On(name, nil)
	if err == nil {
		err = rc.Err
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return "", fmt.Errorf("kafka: %w %q: %w", ErrUnknownTopic, name, err)
	}
	if err != nil {
		return "", fmt.Errorf("kafka: describe configs of topic %q: %w", name, err)
	}
	for _, e := range rc.Configs {
		if e.Key == cleanupPolicy {
			return e.MaybeValue(), nil
		}
	}
	return "delete", nil // Kafka's default, for a broker that leaves defaults out
}

// normalizePolicy orders a cleanup.policy list, so that "delete,compact"
// and "compact, delete" compare equal.
func normalizePolicy(p string) string {
	parts := strings.Split(p, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// Partitions implements Admin. It asks the cluster, never creating the
// topic: the metadata request does not allow auto-creation.
func (c *Client) Partitions(ctx context.Context, topic string) (n int32, err error) {
	err = c.retry(ctx, func(ctx context.Context) error {
		n, err = c.partitionsOnce(ctx, topic)
		return err
	})
	return n, err
}

func (c *Client) partitionsOnce(ctx context.Context, topic string) (int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = false
	resp, err := req.RequestWith(ctx, c.admin)
	if err != nil {
		return 0, fmt.Errorf("kafka: describe topic %q: %w", topic, err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		switch err := kerr.ErrorForCode(t.ErrorCode); {
		case err == nil:
			return int32(len(t.Partitions)), nil
		case errors.Is(err, kerr.UnknownTopicOrPartition):
			return 0, fmt.Errorf("kafka: %w %q", ErrUnknownTopic, topic)
		default:
			return 0, fmt.Errorf("kafka: describe topic %q: %w", topic, err)
		}
	}
	return 0, fmt.Errorf("kafka: %w %q", ErrUnknownTopic, topic)
}

// Offsets implements Admin.
func (c *Client) Offsets(ctx context.Context, topic string, partition int32) (logStart, highWatermark int64, err error) {
	offset := func(timestamp int64) (off int64, err error) {
		err = c.retry(ctx, func(ctx context.Context) error {
			off, err = c.listOffset(ctx, topic, partition, timestamp)
			return err
		})
		return off, err
	}
	if logStart, err = offset(-2); err == nil {
		highWatermark, err = offset(-1)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("kafka: offsets of %s/%d: %w", topic, partition, err)
	}
	return logStart, highWatermark, nil
}

// listOffset asks the partition's leader for an offset: timestamp -2 is
// the log start, -1 the high watermark.
func (c *Client) listOffset(ctx context.Context, topic string, partition int32, timestamp int64) (int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition = partition
	rp.CurrentLeaderEpoch = -1
	rp.Timestamp = timestamp
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	// kgo sends a ListOffsets to each partition's leader, and answers an
	// unknown topic with UNKNOWN_TOPIC_OR_PARTITION.
	resp, err := req.RequestWith(ctx, c.admin)
	if err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return 0, fmt.Errorf("%w %q: %w", ErrUnknownTopic, topic, err)
		}
		return 0, err
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if t.Topic != topic || p.Partition != partition {
				continue
			}
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				if errors.Is(err, kerr.UnknownTopicOrPartition) {
					return 0, fmt.Errorf("%w %q: %w", ErrUnknownTopic, topic, err)
				}
				return 0, err
			}
			return p.Offset, nil
		}
	}
	return 0, fmt.Errorf("%w %q: no answer for partition %d", ErrUnknownTopic, topic, partition)
}

// CommittedOffsets implements Admin.
func (c *Client) CommittedOffsets(ctx context.Context, group, topic string) (map[int32]int64, error) {
	n, err := c.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	var offsets map[int32]int64
	err = c.retry(ctx, func(ctx context.Context) error {
		resps, err := c.adm.FetchOffsets(ctx, group)
		if err != nil {
			// The group's coordinator loading or moving, say.
			return fmt.Errorf("kafka: committed offsets of group %q: %w", group, err)
		}
		offsets = make(map[int32]int64, n)
		for p := range n {
			r, ok := resps.Lookup(topic, p)
			if !ok {
				continue
			}
			if r.Err != nil {
				return fmt.Errorf("kafka: committed offset of group %q on %s/%d: %w", group, topic, p, r.Err)
			}
			if r.At >= 0 {
				offsets[p] = r.At
			}
		}
		return nil
	})
	return offsets, err
}
