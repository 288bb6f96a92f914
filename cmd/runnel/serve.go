package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/runnel-io/runnel/broker"
	"github.com/runnel-io/runnel/broker/storage"
)

// runServe runs a broker until ctx ends (SIGINT or SIGTERM), then closes it
// cleanly: connections are dropped and the log is flushed and closed, so the
// next start needs no recovery. With --metrics it also serves the broker's
// Prometheus metrics and a monitor page over HTTP (monitor.go).
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("runnel serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", broker.DefaultAddr, "`host:port` to listen on; port 0 picks a free port (the chosen address is logged)")
	advertised := fs.String("advertised-addr", "", "`host:port` clients are told to connect to (default: the listening address)")
	dir := fs.String("data", broker.DefaultDir, "data `directory`")
	fsync := fs.String("fsync", "interval", "flush policy: \"interval\" group-commits every few ms, \"always\" fsyncs every append")
	partitions := fs.Int("partitions", broker.DefaultPartitions, "partition `count` of auto-created topics and of topics created with -1")
	autoCreate := fs.Bool("auto-create", true, "create unknown topics that clients ask metadata for")
	maxRequest := fs.Int("max-request-bytes", broker.DefaultMaxRequestSize, "largest request accepted, in `bytes`")
	maxInflight := fs.Int64("max-inflight-bytes", broker.DefaultMaxInflightBytes, "memory `bytes` shared by all connections for requests being read (half) and record batches being decompressed (half); a request waits for room rather than being refused")
	maxFetch := fs.Int("max-fetch-bytes", broker.DefaultMaxFetchBytes, "most record `bytes` in one fetch response, whatever the client asks for (the first batch is sent whole)")
	maxConns := fs.Int("max-connections", broker.DefaultMaxConnections, "most client connections open at once; newer ones are closed at once")
	maxConnsPerIP := fs.Int("max-connections-per-ip", broker.DefaultMaxConnectionsPerIP, "most client connections open at once from one IP address")
	maxIdle := fs.Duration("connections-max-idle", broker.DefaultConnectionsMaxIdle, "close a connection idle this long (`duration`; 0 never)")
	readTimeout := fs.Duration("request-read-timeout", broker.DefaultRequestReadTimeout, "close a connection whose request has started arriving and is not complete within this `duration`")
	maxPartitions := fs.Int("max-partitions", broker.DefaultMaxPartitions, "most partitions on this broker, all topics together; creating more fails with POLICY_VIOLATION")
	maxPartitionsPerTopic := fs.Int("max-partitions-per-topic", broker.DefaultMaxPartitionsPerTopic, "most partitions of one topic; asking for more fails with INVALID_PARTITIONS")
	nodeID := fs.Int("node-id", 0, "this broker's node `id`")
	rebalanceDelay := fs.Duration("group-initial-rebalance-delay", 3*time.Second, "how long a new consumer group's first rebalance waits for more members (`duration`; 0 for none)")
	maxTxnTimeout := fs.Duration("max-transaction-timeout", broker.DefaultMaxTransactionTimeout, "longest transaction.timeout.ms a transactional producer may ask for (`duration`); an open transaction past its timeout is aborted and its producer fenced")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	tlsCert := fs.String("tls-cert", "", "PEM `file` of the broker's certificate chain; turns TLS on (with --tls-key), on --tls-addr if given, else on --addr instead of plaintext")
	tlsKey := fs.String("tls-key", "", "PEM `file` of the broker certificate's private key")
	tlsClientCA := fs.String("tls-client-ca", "", "PEM `file` of the CAs of client certificates: TLS clients must present one (mutual TLS), and without --sasl its subject is the client's principal, as User:CN=alice,O=example")
	tlsAddr := fs.String("tls-addr", "", "`host:port` of a TLS listener of its own, leaving --addr plaintext (default: --addr serves TLS when TLS is on)")
	tlsAdvertised := fs.String("tls-advertised-addr", "", "`host:port` clients of --tls-addr are told to connect to (default: the address it listens on)")
	saslOn := fs.Bool("sasl", false, "require SASL authentication (SCRAM-SHA-256, SCRAM-SHA-512; PLAIN only over TLS or loopback) against the users of the data directory (runnel users); with --sasl or --tls-client-ca every request is checked against ACLs (runnel acls), and what no ACL allows is denied")
	superUsers := fs.String("super-users", "", "comma-separated `principals` allowed everything whatever the ACLs say, as User:admin")
	insecure := fs.Bool("insecure", false, "allow listening on a non-loopback address without TLS and authentication (SASL or mutual TLS): anyone who reaches it can read, write and delete everything")
	metricsAddr := fs.String("metrics", "", "`host:port` to serve HTTP on: Prometheus metrics at /metrics, a monitor page at /, its data at /api/status (default: none)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: runnel serve [flags]")
		fmt.Fprintln(fs.Output())
		fmt.Fprintln(fs.Output(), "Serves the Kafka protocol from a local data directory. Logs go to stderr.")
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
	}
	if wantsHelp(args) {
		fs.SetOutput(stdout)
		fs.Usage()
		return flag.ErrHelp
	}
	if err := fs.Parse(args); err != nil {
		return errUsage // flag printed the problem and the usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "runnel serve: unexpected arguments %q\n", fs.Args())
		return errUsage
	}
	durability, err := storage.ParseDurability(*fsync)
	if err != nil {
		return fmt.Errorf("--fsync: %w", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	for _, c := range []struct {
		name string
		v    int64
		max  int64
	}{
		{"max-inflight-bytes", *maxInflight, 1 << 62},
		{"max-fetch-bytes", int64(*maxFetch), 1<<31 - 1},
		{"max-connections", int64(*maxConns), 1 << 31},
		{"max-connections-per-ip", int64(*maxConnsPerIP), 1 << 31},
		{"max-partitions", int64(*maxPartitions), 1<<31 - 1},
		{"max-partitions-per-topic", int64(*maxPartitionsPerTopic), 1<<31 - 1},
		{"max-request-bytes", int64(*maxRequest), 1<<31 - 1},
	} {
		if c.v < 1 || c.v > c.max {
			return fmt.Errorf("--%s %d: must be between 1 and %d", c.name, c.v, c.max)
		}
	}
	if *readTimeout <= 0 {
		return fmt.Errorf("--request-read-timeout %s: must be positive", *readTimeout)
	}
	if *partitions < 1 {
		return fmt.Errorf("--partitions %d: must be at least 1", *partitions)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	var supers []string
	for p := range strings.SplitSeq(*superUsers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			supers = append(supers, p)
		}
	}
	if err := checkExposure(listenPlan{addr: *addr, tlsAddr: *tlsAddr, tls: *tlsCert != "", sasl: *saslOn, mtls: *tlsClientCA != ""}, *insecure, logger); err != nil {
		return err
	}

	// The broker's metrics and the process's, in a registry of this run's
	// own, not the global default one.
	var reg *prometheus.Registry
	var metrics prometheus.Registerer // nil without --metrics: the broker keeps none
	if *metricsAddr != "" {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		metrics = reg
	}
	b, err := broker.Start(ctx, broker.Config{
		Addr:                  *addr,
		AdvertisedAddr:        *advertised,
		Dir:                   *dir,
		Durability:            durability,
		DisableAutoCreate:     !*autoCreate,
		DefaultPartitions:     int32(*partitions),
		MaxRequestSize:        int32(*maxRequest),
		NodeID:                int32(*nodeID),
		MaxInflightBytes:      *maxInflight,
		MaxFetchBytes:         int32(*maxFetch),
		MaxConnections:        *maxConns,
		MaxConnectionsPerIP:   *maxConnsPerIP,
		ConnectionsMaxIdle:    noDelayIsNegative(*maxIdle),
		RequestReadTimeout:    *readTimeout,
		MaxPartitions:         int32(*maxPartitions),
		MaxPartitionsPerTopic: int32(*maxPartitionsPerTopic),
		// The broker's zero value means Kafka's default; the flag's 0 means
		// no delay, as a person typing 0 expects.
		GroupInitialRebalanceDelay: noDelayIsNegative(*rebalanceDelay),
		MaxTransactionTimeout:      *maxTxnTimeout,
		TLSCertFile:                *tlsCert,
		TLSKeyFile:                 *tlsKey,
		TLSClientCAFile:            *tlsClientCA,
		TLSAddr:                    *tlsAddr,
		TLSAdvertisedAddr:          *tlsAdvertised,
		SASL:                       *saslOn,
		SuperUsers:                 supers,
		Logger:                     logger,
		Metrics:                    metrics,
	})
	if err != nil {
		return err
	}
	var mon *monitor
	var monDone <-chan struct{} // stays nil, never ready, without --metrics
	if *metricsAddr != "" {
		if mon, err = startMonitor(ctx, *metricsAddr, monitorHandler(b, reg, logger), logger); err != nil {
			return errors.Join(err, b.Close())
		}
		monDone = mon.Done()
		logger.Info("runnel serve monitor listening", "addr", mon.Addr(), "metrics", "http://"+mon.Addr()+"/metrics")
	}
	if tlsAt := b.TLSAddr(); tlsAt != "" && tlsAt != b.Addr() {
		// Logged before the main address, which tools take from the last
		// addr= of this line.
		logger.Info("runnel serve TLS listener", "tls_addr", tlsAt)
	}
	logger.Info("runnel serve listening", "addr", b.Addr(), "tls", b.TLSAddr() == b.Addr())
	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("runnel serve stopping", "reason", context.Cause(ctx))
	case <-monDone:
		runErr = mon.Err()
		logger.Error("runnel serve stopping", "reason", runErr)
	}
	// The monitor stops first, so that no request reads a closing broker.
	if mon != nil {
		runErr = errors.Join(runErr, mon.shutdown())
	}
	if err := b.Close(); err != nil {
		return errors.Join(runErr, err)
	}
	if runErr != nil {
		return runErr
	}
	logger.Info("runnel serve stopped")
	return nil
}

func noDelayIsNegative(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// listenPlan is what runnel serve is about to listen on, and how.
type listenPlan struct {
	addr, tlsAddr string
	tls           bool // TLS on: on tlsAddr if set, else on addr
	sasl, mtls    bool
}

// checkExposure refuses to listen beyond loopback without TLS and
// authentication (SASL or mutual TLS), unless insecure says so, in which
// case it logs what is exposed and why it is allowed.
func checkExposure(p listenPlan, insecure bool, logger *slog.Logger) error {
	type lst struct {
		flag, addr string
		tls        bool
	}
	ls := []lst{{"--addr", p.addr, p.tls && p.tlsAddr == ""}}
	if p.tlsAddr != "" {
		ls = append(ls, lst{"--tls-addr", p.tlsAddr, p.tls})
	}
	authn := p.sasl || p.mtls
	for _, l := range ls {
		if isLoopback(l.addr) || (l.tls && authn) {
			continue
		}
		var missing []string
		if !l.tls {
			missing = append(missing, "TLS")
		}
		if !authn {
			missing = append(missing, "authentication (--sasl or --tls-client-ca)")
		}
		why := fmt.Sprintf("%s %s is not a loopback address and its listener has no %s", l.flag, l.addr, strings.Join(missing, " and "))
		if !insecure {
			return fmt.Errorf("%s: anyone who reaches it could read, write and delete everything; listen on 127.0.0.1, configure --tls-cert/--tls-key with --sasl or --tls-client-ca, or pass --insecure to accept the risk", why)
		}
		logger.Warn("listening insecurely because --insecure was given", "reason", why)
	}
	return nil
}

// isLoopback reports whether a host:port listens on loopback only. An
// empty or unspecified host (":9092", "0.0.0.0:9092") listens everywhere; a
// host name other than localhost may resolve anywhere.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
