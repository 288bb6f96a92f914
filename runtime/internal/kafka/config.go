package kafka

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
)

// Defaults of the Config fields.
const (
	DefaultClientID          = "runnel"
	DefaultSessionTimeout    = 10 * time.Second
	DefaultHeartbeatInterval = 3 * time.Second
	DefaultRebalanceTimeout  = 60 * time.Second
	DefaultDeliveryTimeout   = 2 * time.Minute
	// DefaultProduceLinger is the default of Config.ProduceLinger.
	DefaultProduceLinger = time.Millisecond
)

// Config configures a Client. Brokers is required; every other field has a
// usable zero value. The client needs Kafka 2.8 or later, the bundled log
// or any broker that speaks the same protocol versions.
type Config struct {
	// Brokers are the bootstrap addresses (host:port) of the cluster: the
	// bundled log, `runnel serve` or Kafka. Required.
	Brokers []string

	// TLS, if set, encrypts every connection to the brokers with this
	// configuration. Default nil: plaintext.
	TLS *tls.Config

	// SASL, if set, authenticates every connection to the brokers
	// (franz-go's sasl/plain or sasl/scram mechanisms). Default nil.
	SASL sasl.Mechanism

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
	// (see Admin and Member.Commit). It is Kafka's delivery.timeout.ms.
	// With idempotence, a record whose request may have reached the broker
	// but got no answer is not failed for time, since it may be in the log:
	// it, and the records of its partition behind it, wait for the broker's
	// answer (see producer.go).
	// Default 2 minutes.
	DeliveryTimeout time.Duration

	// ProduceLinger bounds how long a partition's records wait for more
	// records to share their batch before a produce request is built
	// (kgo's linger). Records sent while a request is in flight wait for
	// it anyway and make the next batch together. It is added to every
	// acknowledgement the runtime waits for, so it is kept short.
	// Default 1ms; negative means none.
	ProduceLinger time.Duration

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
	if cfg.ProduceLinger == 0 {
		cfg.ProduceLinger = DefaultProduceLinger
	}
	if cfg.ReplicationFactor == 0 {
		cfg.ReplicationFactor = -1
	}
	return cfg, nil
}

// kgoBase is what every franz-go client of the Client starts from: the
// producer's, the admin client, each read's and each group membership's.
func (cfg Config) kgoBase(role string) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.WithLogger(kgoLogger{log: cfg.Logger, prefix: "kafka " + role + ": "}),
		// kgo's default backoff grows to 5s: after an outage, requests
		// would wait that long for a broker that is back. A broker is
		// local or near, and a reconnect is cheap.
		kgo.RetryBackoffFn(backoff),
		// Likewise kgo spaces metadata queries at least 5s apart by
		// default, and after an outage a partition waits for one.
		kgo.MetadataMinAge(250 * time.Millisecond),
		// kgo takes a connection that the broker closes before its first
		// answer for a TLS or SASL mismatch, and fails at once. A broker
		// that is stopping or starting (or a proxy before it) does just
		// that: it is an outage, to be retried through. A real SASL
		// refusal is an answer (SASL_AUTHENTICATION_FAILED), not an EOF,
		// and still fails.
		kgo.AlwaysRetryEOF(),
	}
	if cfg.TLS != nil {
		// A clone: kgo sets the server name per broker on its copy.
		opts = append(opts, kgo.DialTLSConfig(cfg.TLS.Clone()))
	}
	if cfg.SASL != nil {
		opts = append(opts, kgo.SASL(cfg.SASL))
	}
	return opts
}
