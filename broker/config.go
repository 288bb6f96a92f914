package broker

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runnel-io/runnel/broker/storage"
)

// Defaults of the Config fields.
const (
	DefaultAddr                  = "127.0.0.1:9092"
	DefaultDir                   = "./runnel-data"
	DefaultPartitions            = 1
	DefaultMaxRequestSize        = 100 << 20 // Kafka's socket.request.max.bytes
	DefaultMaxInflightBytes      = 512 << 20
	DefaultMaxFetchBytes         = 55 << 20 // Kafka's fetch.max.bytes
	DefaultMaxConnections        = 1000
	DefaultMaxConnectionsPerIP   = 1000
	DefaultConnectionsMaxIdle    = 10 * time.Minute // Kafka's connections.max.idle.ms
	DefaultRequestReadTimeout    = 30 * time.Second
	DefaultMaxPartitions         = 10000
	DefaultMaxPartitionsPerTopic = 10000
)

// Config configures a Broker. The zero value is usable: it serves
// 127.0.0.1:9092 from ./runnel-data.
type Config struct {
	// Addr is the TCP address to listen on. A port of 0 picks a free port;
	// Broker.Addr reports the one chosen. Default "127.0.0.1:9092".
	Addr string

	// AdvertisedAddr is the host:port clients are told to connect to, in
	// Metadata, FindCoordinator and DescribeCluster responses. Set it when
	// clients reach the broker by another name than the one it listens on
	// (a container, a NAT). Default: the address actually listened on, with
	// an unspecified host (":9092", "0.0.0.0:9092") replaced by the
	// machine's hostname.
	AdvertisedAddr string

	// Dir is the data directory, created if missing. Default "./runnel-data".
	Dir string

	// Durability is the flush policy: DurabilityInterval group-commits
	// appends every few milliseconds, DurabilityAlways fsyncs each append
	// before answering it. Produce requests with acks=-1 are answered once
	// their batch is durable under this policy. Default DurabilityInterval.
	Durability storage.Durability

	// DisableAutoCreate turns off creating topics that a Metadata request
	// names and that do not exist (Kafka's auto.create.topics.enable=false).
	// Default false: topics are created, with DefaultPartitions partitions,
	// when the request allows it.
	DisableAutoCreate bool

	// DefaultPartitions is the partition count of auto-created topics and of
	// CreateTopics requests that ask for -1 (Kafka's num.partitions).
	// Default 1.
	DefaultPartitions int32

	// MaxRequestSize is the largest request frame accepted, in bytes; a
	// client sending a larger one is disconnected (Kafka's
	// socket.request.max.bytes). Default 100 MiB.
	MaxRequestSize int32

	// MaxInflightBytes is a budget, shared by all connections, for the
	// bytes of requests being read and of record batches being
	// decompressed for validation (Kafka's queued.max.request.bytes in
	// spirit). Half of it is for request frames, half for decompression.
	// A request that finds its half spent waits until enough is released;
	// it is not refused. A request larger than the half takes all of it; a
	// batch whose decompressor needs more than the half (a zstd window
	// larger than it) is refused with INVALID_RECORD. Default 512 MiB:
	// room for a request of the default MaxRequestSize and for the largest
	// zstd window Kafka clients read (128 MiB).
	MaxInflightBytes int64

	// MaxFetchBytes caps the record bytes of one Fetch response, whatever
	// the request's MaxBytes; as in Kafka, the first batch is returned
	// whole even if larger, so that a consumer always progresses (Kafka's
	// fetch.max.bytes). A connection serves one fetch at a time. Default
	// 55 MiB.
	MaxFetchBytes int32

	// MaxConnections bounds the client connections open at once; a
	// connection over it is closed as soon as it is accepted, and a Warn
	// log line says so at most once a second (Kafka's max.connections).
	// Default 1000.
	MaxConnections int

	// MaxConnectionsPerIP bounds the connections open at once from one IP
	// address, refused as over MaxConnections (Kafka's
	// max.connections.per.ip). Default 1000.
	MaxConnectionsPerIP int

	// ConnectionsMaxIdle closes a connection that has no request in
	// progress and has sent nothing for this long (Kafka's
	// connections.max.idle.ms). Default 10 minutes; negative disables it.
	ConnectionsMaxIdle time.Duration

	// RequestReadTimeout bounds how long a request may take to arrive once
	// its first byte has: a client that sends part of a frame and stalls
	// (a slowloris) is disconnected after it. Default 30s.
	RequestReadTimeout time.Duration

	// MaxPartitions bounds the partitions of all topics together, internal
	// topics included. CreateTopics, CreatePartitions and auto-creation
	// that would exceed it fail with POLICY_VIOLATION before anything is
	// written. Default 10000.
	MaxPartitions int32

	// MaxPartitionsPerTopic bounds one topic's partition count; a
	// CreateTopics or CreatePartitions asking for more fails with
	// INVALID_PARTITIONS before anything is written. Default 10000.
	MaxPartitionsPerTopic int32

	// TLSCertFile and TLSKeyFile, PEM files of the broker's certificate
	// chain and private key, turn TLS on: on a listener of its own at
	// TLSAddr if that is set, else on Addr instead of plaintext. Both or
	// neither. Default: no TLS.
	TLSCertFile string
	TLSKeyFile  string

	// TLSClientCAFile, a PEM file of CA certificates, makes TLS mutual:
	// every TLS client must present a certificate signed by one of them.
	// Without SASL, a TLS connection's principal is then its certificate's
	// subject, "User:CN=alice,O=example" (Kafka's default SSL principal).
	// It needs TLSCertFile. Default: clients present no certificate.
	TLSClientCAFile string

	// TLSAddr, with TLS on, is a second listener, for TLS, while Addr stays
	// plaintext. Default "": Addr itself serves TLS.
	TLSAddr string

	// TLSAdvertisedAddr is what clients of the TLS listener at TLSAddr
	// are told to connect to, as AdvertisedAddr is for Addr. Default: the
	// address that listener actually listens on.
	TLSAdvertisedAddr string

	// SASL requires every client to authenticate with SASL before any
	// request but ApiVersions, SaslHandshake and SaslAuthenticate: with
	// SCRAM-SHA-256 or SCRAM-SHA-512 against the users kept in Dir (see
	// AlterUserScramCredentials, `runnel users`), and with PLAIN on a TLS
	// or loopback connection, where the password does not cross a network
	// in the clear. Default false.
	SASL bool

	// SuperUsers are principals ("User:admin") allowed everything,
	// whatever the ACLs say (Kafka's super.users).
	//
	// Authorization is on whenever clients authenticate (SASL, or TLS with
	// TLSClientCAFile): every request is then checked against the ACLs
	// kept in Dir as Kafka's authorizer checks it, and a resource no ACL
	// names is denied to everyone but SuperUsers
	// (allow.everyone.if.no.acl.found=false). Connections that did not
	// authenticate (plaintext next to an mTLS listener) are User:ANONYMOUS.
	// ACLs are managed with CreateAcls and DeleteAcls (`runnel acls`).
	SuperUsers []string

	// NodeID is this broker's node id, reported as the leader of every
	// partition, the controller and every coordinator. Default 0.
	NodeID int32

	// GroupInitialRebalanceDelay is how long the first rebalance of an empty
	// consumer group waits for more members to join; each member that joins
	// meanwhile extends the wait, up to the group's rebalance timeout
	// (Kafka's group.initial.rebalance.delay.ms). Default 3s; a negative
	// value means no delay, which suits tests.
	GroupInitialRebalanceDelay time.Duration

	// MaxTransactionTimeout is the longest transaction.timeout.ms a
	// transactional producer may ask for; InitProducerId asking for more gets
	// INVALID_TRANSACTION_TIMEOUT. An open transaction older than its timeout
	// is aborted by the broker and its producer fenced (Kafka's
	// transaction.max.timeout.ms). Default 15 minutes.
	MaxTransactionTimeout time.Duration

	// Logger receives the broker's logs: connections refused or dropped for
	// bad input at Warn, recovered panics at Error, start and stop at Info.
	// It is also handed to the storage engine. Default: discard.
	Logger *slog.Logger

	// Metrics, if set, is where the broker registers its Prometheus
	// metrics:
	//
	//	runnel_broker_requests_total{api,error}   requests answered, by API name and by the
	//	                                          response's Kafka error ("none", a name such as
	//	                                          UNKNOWN_TOPIC_OR_PARTITION, or "closed")
	//	runnel_broker_request_bytes_total{api}    request bytes read
	//	runnel_broker_response_bytes_total{api}   response bytes written
	//	runnel_broker_produce_duration_seconds    Produce latency, durability wait included
	//	runnel_broker_fetch_duration_seconds      Fetch latency, long-poll wait included
	//	runnel_broker_topic_partitions{topic}     partitions per topic
	//	runnel_broker_log_size_bytes{topic}       segment bytes per topic
	//	runnel_broker_groups{state}               consumer groups per state
	//	runnel_broker_connections                 open client connections
	//	runnel_broker_transactions_total{outcome} transactions ended: commit, abort, timeout, fenced
	//	runnel_broker_open_transactions           transactions open now
	//	runnel_broker_offline_partitions          partitions offline after a failed write or fsync
	//
	// A response with an error code per topic, partition, group or resource
	// is counted once, under its first non-zero code. The gauges are read
	// when scraped. Start fails if the metrics cannot be registered; Close
	// unregisters them, so that a broker started again may use the same
	// Registerer. Two brokers running at once need Registerers that tell
	// them apart (prometheus.WrapRegistererWith). Default nil: no metrics
	// are kept, at no cost.
	Metrics prometheus.Registerer

	// hooks are for this package's tests only.
	hooks testHooks
}

// testHooks let tests observe and alter the broker. They are set in the
// Config before Start, so that every goroutine sees them.
type testHooks struct {
	// fetchWait is called when a fetch starts waiting for data, so that a
	// test can produce once a long poll is parked.
	fetchWait func()
	// apis may change the dispatch table before the broker serves.
	apis func(map[int16]*api)
	// txnAbortInterval, if set, is how often open transactions are checked
	// against their timeouts (10s otherwise, as Kafka's
	// transaction.abort.timed.out.transaction.cleanup.interval.ms).
	txnAbortInterval time.Duration
}

// tlsOn reports whether a listener serves TLS.
func (cfg Config) tlsOn() bool { return cfg.TLSCertFile != "" }

// authorizing reports whether clients authenticate, and so whether every
// request is checked against the ACLs.
func (cfg Config) authorizing() bool { return cfg.SASL || cfg.TLSClientCAFile != "" }

// positive sets *v to def if it is zero (the field was left out) and
// refuses a negative one.
func positive[T int | int32 | int64 | time.Duration](v *T, def T, name string) error {
	switch {
	case *v == 0:
		*v = def
	case *v < 0:
		return fmt.Errorf("broker config: %s %v: must be positive", name, *v)
	}
	return nil
}

// withDefaults returns cfg with its zero fields replaced by their defaults.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Dir == "" {
		cfg.Dir = DefaultDir
	}
	if err := positive(&cfg.DefaultPartitions, DefaultPartitions, "DefaultPartitions"); err != nil {
		return cfg, err
	}
	if err := positive(&cfg.MaxRequestSize, DefaultMaxRequestSize, "MaxRequestSize"); err != nil {
		return cfg, err
	}
	if cfg.MaxInflightBytes == 0 {
		cfg.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if cfg.MaxInflightBytes < 2 {
		return cfg, fmt.Errorf("broker config: MaxInflightBytes %d: must be at least 2", cfg.MaxInflightBytes)
	}
	if err := positive(&cfg.MaxFetchBytes, DefaultMaxFetchBytes, "MaxFetchBytes"); err != nil {
		return cfg, err
	}
	if err := positive(&cfg.MaxConnections, DefaultMaxConnections, "MaxConnections"); err != nil {
		return cfg, err
	}
	if err := positive(&cfg.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP, "MaxConnectionsPerIP"); err != nil {
		return cfg, err
	}
	if cfg.ConnectionsMaxIdle == 0 {
		cfg.ConnectionsMaxIdle = DefaultConnectionsMaxIdle
	}
	if err := positive(&cfg.RequestReadTimeout, DefaultRequestReadTimeout, "RequestReadTimeout"); err != nil {
		return cfg, err
	}
	if err := positive(&cfg.MaxPartitions, DefaultMaxPartitions, "MaxPartitions"); err != nil {
		return cfg, err
	}
	if err := positive(&cfg.MaxPartitionsPerTopic, DefaultMaxPartitionsPerTopic, "MaxPartitionsPerTopic"); err != nil {
		return cfg, err
	}
	if cfg.NodeID < 0 {
		return cfg, fmt.Errorf("broker config: NodeID %d: must not be negative", cfg.NodeID)
	}
	if err := positive(&cfg.MaxTransactionTimeout, DefaultMaxTransactionTimeout, "MaxTransactionTimeout"); err != nil {
		return cfg, err
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return cfg, fmt.Errorf("broker config: TLSCertFile and TLSKeyFile go together")
	}
	if cfg.TLSCertFile == "" && (cfg.TLSClientCAFile != "" || cfg.TLSAddr != "" || cfg.TLSAdvertisedAddr != "") {
		return cfg, fmt.Errorf("broker config: TLSClientCAFile, TLSAddr and TLSAdvertisedAddr need TLSCertFile and TLSKeyFile")
	}
	if cfg.TLSAdvertisedAddr != "" && cfg.TLSAddr == "" {
		return cfg, fmt.Errorf("broker config: TLSAdvertisedAddr is for TLSAddr's listener; with TLS on Addr, use AdvertisedAddr")
	}
	for _, p := range cfg.SuperUsers {
		if typ, name, ok := strings.Cut(p, ":"); !ok || typ == "" || name == "" {
			return cfg, fmt.Errorf("broker config: super user %q: want Type:Name, as User:admin", p)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}
