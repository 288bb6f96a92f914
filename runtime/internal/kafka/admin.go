package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/IBM/sarama"
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
	meta, err := c.describeTopic(ctx, name)
	if errors.Is(err, ErrUnknownTopic) {
		err = c.createTopic(ctx, name, partitions, configs)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sarama.ErrTopicAlreadyExists) {
			return err
		}
		// Another instance created it meanwhile: check what it made.
		meta, err = c.awaitTopic(ctx, name)
	}
	if err != nil {
		return err
	}
	if have := int32(len(meta.Partitions)); have != partitions {
		return &TopicMismatchError{Topic: name, Setting: "partitions", Have: fmt.Sprint(have), Want: fmt.Sprint(partitions)}
	}
	want, ok := configs[cleanupPolicy]
	if !ok {
		return nil
	}
	have, err := c.cleanupPolicy(ctx, name)
	if err != nil {
		return err
	}
	if normalizePolicy(have) != normalizePolicy(want) {
		return &TopicMismatchError{Topic: name, Setting: cleanupPolicy, Have: fmt.Sprintf("%q", have), Want: fmt.Sprintf("%q", want)}
	}
	return nil
}

func (c *Client) createTopic(ctx context.Context, name string, partitions int32, configs map[string]string) error {
	detail := &sarama.TopicDetail{
		NumPartitions:     partitions,
		ReplicationFactor: c.cfg.ReplicationFactor,
		ConfigEntries:     make(map[string]*string, len(configs)),
	}
	for k, v := range configs {
		detail.ConfigEntries[k] = &v
	}
	// A create whose answer was lost and is retried meets its own topic:
	// EnsureTopic checks what exists then.
	if err := c.retry(ctx, func() error {
		_, err := call(ctx, func() (struct{}, error) { return struct{}{}, c.adm.CreateTopic(name, detail, false) })
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

// awaitTopic describes topic name until it exists.
func (c *Client) awaitTopic(ctx context.Context, name string) (*sarama.TopicMetadata, error) {
	backoff := 10 * time.Millisecond
	for {
		meta, err := c.describeTopic(ctx, name)
		if !errors.Is(err, ErrUnknownTopic) {
			return meta, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("kafka: topic %q created but not yet visible: %w", name, ctx.Err())
		}
		backoff = min(2*backoff, time.Second)
	}
}

// describeTopic returns the metadata of topic name, or an error matching
// ErrUnknownTopic.
func (c *Client) describeTopic(ctx context.Context, name string) (meta *sarama.TopicMetadata, err error) {
	err = c.retry(ctx, func() error {
		meta, err = c.describeTopicOnce(ctx, name)
		return err
	})
	return meta, err
}

func (c *Client) describeTopicOnce(ctx context.Context, name string) (*sarama.TopicMetadata, error) {
	metas, err := call(ctx, func() ([]*sarama.TopicMetadata, error) { return c.adm.DescribeTopics([]string{name}) })
	if err != nil {
		return nil, fmt.Errorf("kafka: describe topic %q: %w", name, err)
	}
	for _, m := range metas {
		if m.Name != name {
			continue
		}
		switch {
		case errors.Is(m.Err, sarama.ErrNoError):
			return m, nil
		case errors.Is(m.Err, sarama.ErrUnknownTopicOrPartition):
			return nil, fmt.Errorf("kafka: %w %q", ErrUnknownTopic, name)
		default:
			return nil, fmt.Errorf("kafka: describe topic %q: %w", name, m.Err)
		}
	}
	return nil, fmt.Errorf("kafka: %w %q", ErrUnknownTopic, name)
}

// cleanupPolicy returns the cleanup.policy of topic name.
func (c *Client) cleanupPolicy(ctx context.Context, name string) (policy string, err error) {
	err = c.retry(ctx, func() error {
		policy, err = c.cleanupPolicyOnce(ctx, name)
		return err
	})
	return policy, err
}

func (c *Client) cleanupPolicyOnce(ctx context.Context, name string) (string, error) {
	res := &sarama.ConfigResource{Type: sarama.TopicResource, Name: name, ConfigNames: []string{cleanupPolicy}}
	results, err := call(ctx, func() ([]*sarama.ConfigResourceResult, error) {
		return c.adm.DescribeConfigs([]*sarama.ConfigResource{res}, sarama.DescribeConfigsOptions{})
	})
	if err != nil {
		return "", fmt.Errorf("kafka: describe configs of topic %q: %w", name, err)
	}
	for _, r := range results {
		if r.Name != name {
			continue
		}
		if !errors.Is(r.ErrorCode, sarama.ErrNoError) {
			return "", fmt.Errorf("kafka: describe configs of topic %q: %w: %s", name, r.ErrorCode, r.ErrorMsg)
		}
		for _, e := range r.Configs {
			if e.Name == cleanupPolicy {
				return e.Value, nil
			}
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

// Partitions implements Admin.
func (c *Client) Partitions(ctx context.Context, topic string) (int32, error) {
	meta, err := c.describeTopic(ctx, topic)
	if err != nil {
		return 0, err
	}
	return int32(len(meta.Partitions)), nil
}

// Offsets implements Admin.
func (c *Client) Offsets(ctx context.Context, topic string, partition int32) (logStart, highWatermark int64, err error) {
	offset := func(which int64) (off int64, err error) {
		err = c.retry(ctx, func() error {
			off, err = call(ctx, func() (int64, error) { return c.admin.GetOffset(topic, partition, which) })
			if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
				err = fmt.Errorf("%w %q: %w", ErrUnknownTopic, topic, err)
			}
			return err
		})
		return off, err
	}
	if logStart, err = offset(sarama.OffsetOldest); err == nil {
		highWatermark, err = offset(sarama.OffsetNewest)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("kafka: offsets of %s/%d: %w", topic, partition, err)
	}
	return logStart, highWatermark, nil
}

// CommittedOffsets implements Admin.
func (c *Client) CommittedOffsets(ctx context.Context, group, topic string) (map[int32]int64, error) {
	n, err := c.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	parts := make([]int32, n)
	for i := range parts {
		parts[i] = int32(i)
	}
	var offsets map[int32]int64
	err = c.retry(ctx, func() error {
		resp, err := call(ctx, func() (*sarama.OffsetFetchResponse, error) {
			return c.adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
		})
		if err != nil {
			return fmt.Errorf("kafka: committed offsets of group %q: %w", group, err)
		}
		if !errors.Is(resp.Err, sarama.ErrNoError) {
			// The group's coordinator loading or moving, say.
			return fmt.Errorf("kafka: committed offsets of group %q: %w", group, resp.Err)
		}
		offsets = make(map[int32]int64, n)
		for _, p := range parts {
			b := resp.GetBlock(topic, p)
			if b == nil {
				continue
			}
			if !errors.Is(b.Err, sarama.ErrNoError) {
				return fmt.Errorf("kafka: committed offset of group %q on %s/%d: %w", group, topic, p, b.Err)
			}
			if b.Offset >= 0 {
				offsets[p] = b.Offset
			}
		}
		return nil
	})
	return offsets, err
}
