package kafka

import (
	"errors"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
)

// Defaults of the Config fields.
const (
	DefaultClientID          = "runnel"
	DefaultSessionTimeout    = 10 * time.Second
	DefaultHeartbeatInterval = 3 * time.Second
	DefaultRebalanceTimeout  = 60 * time.Second
	DefaultDeliveryTimeout   = 2 * time.Minute
)

// kafkaVersion is the protocol level sarama speaks. 2.8 is the oldest Kafka
// whose request versions are all still accepted by Kafka 4 (KIP-896 removed
// the older ones), and it is what the bundled log and kfake are tested with.
// Commit (group.go) relies on it for the OffsetCommit version it sends.
var kafkaVersion = sarama.V2_8_0_0

// Config configures a Client. Brokers is required; every other field has a
// usable zero value. The client needs Kafka 2.8 or later, the bundled log
// or any broker that speaks the same protocol versions.
type Config struct {
	// Brokers are the bootstrap addresses (host:port) of the cluster: the
	// bundled log, `runnel serve` or Kafka. Required.
	Brokers []string

	// ClientID names the client in the brokers' logs and quotas.
	// Default "runnel".
	ClientID string

	// Logger receives group membership changes at Info and errors the
	// client recovers from at Warn. Default: discard.
	Logger *slog.Logger

	// SessionTimeout is how long the group coordinator waits for a member's
	// heartbeat before it drops the member and rebalances. The broker bounds
	// it (Kafka's group.min/max.session.timeout.ms, 6s to 30 min by
	// default). Default 10s.
	SessionTimeout time.Duration

	// HeartbeatInterval is how often a member heartbeats; it is also how
	// soon a member learns that a rebalance has begun. It must be below
	// SessionTimeout. Default 3s.
	HeartbeatInterval time.Duration

	// RebalanceTimeout is how long the coordinator waits for every member to
	// rejoin during a rebalance, which bounds how long a member may take to
	// give its partitions up (GroupHandler.Revoked). Default 60s.
	RebalanceTimeout time.Duration

	// InstanceID, when set, makes this member a static member of the groups
	// it joins (Kafka's group.instance.id, KIP-345): leaving does not send
	// LeaveGroup, and a member restarting with the same id within the
	// session timeout gets its partitions back without a rebalance. It must
	// be unique among the members of a group. Default: dynamic membership,
	// which leaves the group when Join returns.
	InstanceID string

	// ReplicationFactor is the replication factor of topics EnsureTopic
	// creates. Default -1: the broker's default.replication.factor.
	ReplicationFactor int16

	// DeliveryTimeout is how long the client keeps retrying through a
	// broker outage (connections refused or broken, a leader or coordinator
	// not available) before it gives up: a record not acknowledged this long
	// after Send fails with an error matching ErrDeliveryTimeout, as do
	// offset commits and the admin calls that have been failing this long
	// (see Admin and Generation.Commit). It is Kafka's delivery.timeout.ms.
	// With idempotence, a record whose request may have reached the broker
	// but got no answer is not failed for time, since it may be in the log:
	// it, and the records of its partition behind it, wait for the broker's
	// answer (see producer.go).
	// Default 2 minutes.
	DeliveryTimeout time.Duration

	// DisableIdempotence turns off the idempotent producer, for brokers that
	// do not support it (InitProducerID). Default false: the producer is
	// idempotent, so retries neither duplicate nor reorder records.
	DisableIdempotence bool
}

// withDefaults returns cfg with defaults filled in, or an error for a
// config that cannot work.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Brokers) == 0 {
		return cfg, errors.New("kafka: config: no brokers")
	}
	if cfg.ClientID == "" {
		cfg.ClientID = DefaultClientID
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.RebalanceTimeout <= 0 {
		cfg.RebalanceTimeout = DefaultRebalanceTimeout
	}
	if cfg.HeartbeatInterval >= cfg.SessionTimeout {
		return cfg, errors.New("kafka: config: HeartbeatInterval must be below SessionTimeout")
	}
	if cfg.DeliveryTimeout <= 0 {
		cfg.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if cfg.ReplicationFactor == 0 {
		cfg.ReplicationFactor = -1
	}
	return cfg, nil
}

// saramaBase is the sarama configuration every client starts from.
func (cfg Config) saramaBase() *sarama.Config {
	sc := sarama.NewConfig()
	sc.Version = kafkaVersion
	sc.ClientID = cfg.ClientID
	// sarama asks brokers to auto-create topics its metadata requests name,
	// so that merely asking about a missing topic would create it with the
	// broker's default partition count. Topics are created by EnsureTopic
	// only.
	sc.Metadata.AllowAutoTopicCreation = false
	// Errors come back to the caller (or are logged) rather than going to
	// sarama's package-level Logger.
	sc.Consumer.Return.Errors = true
	// A sarama consumer fetches for all its partitions on a broker in one
	// request at a time, and takes up a partition it starts reading (or
	// gives one back) only between two fetches: an idle partition's long
	// poll delays the start of a restore, and the end of a revoked claim,
	// by up to this wait. sarama's default is 500ms.
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	return sc
}

// saramaGroup configures the sarama client of one group membership.
func (cfg Config) saramaGroup(strategy sarama.BalanceStrategy) *sarama.Config {
	sc := cfg.saramaBase()
	sc.Consumer.Group.Session.Timeout = cfg.SessionTimeout
	sc.Consumer.Group.Heartbeat.Interval = cfg.HeartbeatInterval
	sc.Consumer.Group.Rebalance.Timeout = cfg.RebalanceTimeout
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{strategy}
	// sarama waits 2s before retrying a JoinGroup that met a rebalance in
	// progress; members joining together meet that often.
	sc.Consumer.Group.Rebalance.Retry.Backoff = 200 * time.Millisecond
	sc.Consumer.Group.InstanceId = cfg.InstanceID
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	// Offsets are committed only by Generation.Commit, after the runtime
	// knows every effect of a record is acknowledged.
	sc.Consumer.Offsets.AutoCommit.Enable = false
	return sc
}
