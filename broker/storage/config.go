package storage

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Topic configuration names, as Kafka spells them. They are what topic.json
// stores, what CreateTopics and AlterConfigs carry and what DescribeConfigs
// reports.
const (
	ConfigCleanupPolicy          = "cleanup.policy"
	ConfigRetentionMs            = "retention.ms"
	ConfigRetentionBytes         = "retention.bytes"
	ConfigSegmentBytes           = "segment.bytes"
	ConfigSegmentMs              = "segment.ms"
	ConfigDeleteRetentionMs      = "delete.retention.ms"
	ConfigMinCleanableDirtyRatio = "min.cleanable.dirty.ratio"
	ConfigMaxMessageBytes        = "max.message.bytes"
	ConfigMessageTimestampType   = "message.timestamp.type"
)

// TopicConfig is the effective configuration of a topic: Kafka's defaults
// overlaid with the topic's own settings.
type TopicConfig struct {
	// Compact keeps the latest record per key (cleanup.policy contains
	// "compact"). Default false.
	Compact bool
	// Delete removes whole segments past retention (cleanup.policy contains
	// "delete"). Default true.
	Delete bool
	// RetentionMs is how long a closed segment is kept after its newest
	// record's timestamp; -1 keeps it forever. Default 7 days.
	RetentionMs int64
	// RetentionBytes bounds a partition's size; -1 is unbounded. Default -1.
	RetentionBytes int64
	// SegmentBytes is the size at which the active segment rolls. Default 1 GiB.
	SegmentBytes int64
	// SegmentMs is the age at which a non-empty active segment rolls. Default 7 days.
	SegmentMs int64
	// DeleteRetentionMs is how long compaction keeps tombstones. Default 1 day.
	DeleteRetentionMs int64
	// MinCleanableDirtyRatio is the share of not-yet-compacted bytes in closed
	// segments above which compaction runs. Default 0.5.
	MinCleanableDirtyRatio float64
	// MaxMessageBytes is the largest batch accepted. Default 1 MiB + 12 bytes
	// (1048588), Kafka's.
	MaxMessageBytes int32
	// LogAppendTime stamps batches with the broker's time on append
	// (message.timestamp.type=LogAppendTime). Default false (CreateTime).
	LogAppendTime bool
}

// DefaultTopicConfig returns Kafka's defaults for the settings runnel knows.
func DefaultTopicConfig() TopicConfig {
	const day = 24 * 60 * 60 * 1000
	return TopicConfig{
		Delete:                 true,
		RetentionMs:            7 * day,
		RetentionBytes:         -1,
		SegmentBytes:           1 << 30,
		SegmentMs:              7 * day,
		DeleteRetentionMs:      day,
		MinCleanableDirtyRatio: 0.5,
		MaxMessageBytes:        1048588,
	}
}

// ConfigNames lists the topic settings runnel knows, sorted.
func ConfigNames() []string {
	return slices.Sorted(maps.Keys(DefaultTopicConfig().Map()))
}

// Map renders the configuration with Kafka's names and value syntax.
func (c TopicConfig) Map() map[string]string {
	var policy []string
	if c.Compact {
		policy = append(policy, "compact")
	}
	if c.Delete {
		policy = append(policy, "delete")
	}
	ts := "CreateTime"
	if c.LogAppendTime {
		ts = "LogAppendTime"
	}
	return map[string]string{
		ConfigCleanupPolicy:          strings.Join(policy, ","),
		ConfigRetentionMs:            strconv.FormatInt(c.RetentionMs, 10),
		ConfigRetentionBytes:         strconv.FormatInt(c.RetentionBytes, 10),
		ConfigSegmentBytes:           strconv.FormatInt(c.SegmentBytes, 10),
		ConfigSegmentMs:              strconv.FormatInt(c.SegmentMs, 10),
		ConfigDeleteRetentionMs:      strconv.FormatInt(c.DeleteRetentionMs, 10),
		ConfigMinCleanableDirtyRatio: strconv.FormatFloat(c.MinCleanableDirtyRatio, 'g', -1, 64),
		ConfigMaxMessageBytes:        strconv.FormatInt(int64(c.MaxMessageBytes), 10),
		ConfigMessageTimestampType:   ts,
	}
}

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = fmt.Errorf("invalid topic config")

// ParseTopicConfig overlays overrides (Kafka names and syntax) on the
// defaults. An unknown name or a bad value is an error naming both.
func ParseTopicConfig(overrides map[string]string) (TopicConfig, error) {
	return DefaultTopicConfig().With(overrides)
}

// With returns c with overrides applied.
func (c TopicConfig) With(overrides map[string]string) (TopicConfig, error) {
	for _, name := range slices.Sorted(maps.Keys(overrides)) {
		v := overrides[name]
		bad := func(why string) error {
			return fmt.Errorf("%w: %s=%q: %s", ErrInvalidConfig, name, v, why)
		}
		intIn := func(lo, hi int64) (int64, error) {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, bad("not an integer")
			}
			if n < lo || n > hi {
				return 0, bad(fmt.Sprintf("must be between %d and %d", lo, hi))
			}
			return n, nil
		}
		var err error
		switch name {
		case ConfigCleanupPolicy:
			c.Compact, c.Delete = false, false
			for p := range strings.SplitSeq(v, ",") {
				switch strings.TrimSpace(p) {
				case "compact":
					c.Compact = true
				case "delete":
					c.Delete = true
				default:
					return c, bad(`must be "delete", "compact" or "compact,delete"`)
				}
			}
		case ConfigRetentionMs:
			c.RetentionMs, err = intIn(-1, 1<<62)
		case ConfigRetentionBytes:
			c.RetentionBytes, err = intIn(-1, 1<<62)
		case ConfigSegmentBytes:
			c.SegmentBytes, err = intIn(14, 1<<31-1)
		case ConfigSegmentMs:
			c.SegmentMs, err = intIn(1, 1<<62)
		case ConfigDeleteRetentionMs:
			c.DeleteRetentionMs, err = intIn(0, 1<<62)
		case ConfigMaxMessageBytes:
			var n int64
			n, err = intIn(0, 1<<31-1)
			c.MaxMessageBytes = int32(n)
		case ConfigMinCleanableDirtyRatio:
			f, perr := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if perr != nil || f < 0 || f > 1 {
				return c, bad("must be a number between 0 and 1")
			}
			c.MinCleanableDirtyRatio = f
		case ConfigMessageTimestampType:
			switch v {
			case "CreateTime":
				c.LogAppendTime = false
			case "LogAppendTime":
				c.LogAppendTime = true
			default:
				return c, bad(`must be "CreateTime" or "LogAppendTime"`)
			}
		default:
			return c, fmt.Errorf("%w: unknown config %q", ErrInvalidConfig, name)
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}
