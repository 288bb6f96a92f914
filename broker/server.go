package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/runnel-io/runnel/broker/internal/auth"
	"github.com/runnel-io/runnel/broker/internal/group"
	"github.com/runnel-io/runnel/broker/internal/txn"
	"github.com/runnel-io/runnel/broker/storage"
)

// Broker is a running Kafka-compatible server over one storage.Log. It is
// safe for concurrent use; stop it with Close.
type Broker struct {
	cfg     Config
	logger  *slog.Logger
	log     *storage.Log
	meta    *producerIDs
	lock    *os.File     // the data directory's lock, held until Close
	ln      net.Listener // lns[0]'s, the listener at Config.Addr
	lns     []*listener  // Addr's, then TLSAddr's if it has its own
	apis    map[int16]*api
	groups  *group.Coordinator
	txns    *txn.Coordinator
	metrics *metrics // nil without Config.Metrics
	mem     *memBudget

	// advHost and advPort are what Metadata, FindCoordinator and
	// DescribeCluster tell clients of Addr's listener to connect to (each
	// listener has its own; see advertisedTo).
	advHost string
	advPort int32

	// users and acls are the security stores in the data directory; acls
	// is nil, and nothing is authorized, when no client authenticates (see
	// Config.authorizing).
	users *auth.Users
	acls  *auth.ACLs

	// ctx is cancelled by Close: long polls and durability waits end, and
	// connections stop reading.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[*conn]struct{}
	perIP  map[string]int // open connections by peer IP
	closed bool
	// maxConns is Config.MaxConnections, lowered if need be to keep
	// descriptors in reserve (see connectionCap).
	maxConns int
	// refusedLog is when a refused connection was last logged, and
	// refusedSince how many were refused since: at most a line a second.
	refusedLog   time.Time
	refusedSince int
	wg           sync.WaitGroup // the accept loop and every connection

	// adminMu serialises changes to topics (create, delete, config
	// read-modify-write), so that two IncrementalAlterConfigs of one topic
	// do not lose each other's settings.
	adminMu sync.Mutex
}

// Start opens (or creates) the data directory, listens on cfg.Addr and
// serves Kafka clients until Close. ctx bounds the start only: cancelling it
// later does not stop the broker.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start broker: %w", err)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("start broker: %w", err)
	}
	// The storage enforces the partition limits too: it is the last word
	// on what reaches the disk, whoever asks (auto-creation included).
	lg, err := storage.Open(cfg.Dir, storage.Options{Durability: cfg.Durability, Logger: cfg.Logger,
		MaxPartitions: int(cfg.MaxPartitions), MaxPartitionsPerTopic: int(cfg.MaxPartitionsPerTopic)})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("start broker: %w", err)
	}
	b := &Broker{
		cfg:    cfg,
		logger: cfg.Logger,
		log:    lg,
		lock:   lock,
		conns:  map[*conn]struct{}{},
		perIP:  map[string]int{},
		mem:    newMemBudget(cfg.MaxInflightBytes),
	}
	if err := b.startParts(ctx); err != nil {
		for _, l := range b.lns {
			l.ln.Close()
		}
		if b.txns != nil {
			b.txns.Close(context.Background())
		}
		if b.groups != nil {
			b.groups.Close(context.Background())
		}
		lg.Close()
		lock.Close()
		return nil, fmt.Errorf("start broker: %w", err)
	}
	b.maxConns = connectionCap(cfg.MaxConnections, cfg.Logger)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	for _, l := range b.lns {
		b.wg.Add(1)
		go b.accept(l)
	}
	b.logger.Info("broker started", "addr", b.Addr(), "advertised", net.JoinHostPort(b.advHost, strconv.Itoa(int(b.advPort))),
		"tls_addr", b.TLSAddr(), "sasl", cfg.SASL, "mtls", cfg.TLSClientCAFile != "", "authorization", cfg.authorizing(),
		"dir", cfg.Dir, "durability", cfg.Durability.String(), "node_id", cfg.NodeID, "cluster_id", b.meta.clusterID())
	return b, nil
}

// startParts loads the broker's own state and the groups, listens, builds
// the dispatch table and registers the metrics.
func (b *Broker) startParts(ctx context.Context) error {
	var err error
	if b.meta, err = loadMeta(b.cfg.Dir); err != nil {
		return err
	}
	if err := b.startGroups(); err != nil {
		return err
	}
	if err := b.startTxns(ctx); err != nil {
		return err
	}
	if err := b.openSecurity(); err != nil {
		return err
	}
	if err := b.listen(ctx); err != nil {
		return err
	}
	b.apis = b.apiTable()
	if b.cfg.hooks.apis != nil {
		b.cfg.hooks.apis(b.apis)
	}
	// Last, so that nothing fails after the metrics are registered: a
	// failed Start leaves the Registerer as it found it.
	if b.cfg.Metrics != nil {
		if b.metrics, err = newMetrics(b, b.cfg.Metrics); err != nil {
			return err
		}
	}
	return nil
}

// openSecurity opens the SCRAM users of the data directory (locked by
// now), and its ACLs when clients authenticate. Users are kept either way,
// so that they can be made before a restart turns SASL on.
func (b *Broker) openSecurity() error {
	var err error
	if b.users, err = auth.OpenUsers(b.cfg.Dir); err != nil {
		return err
	}
	if !b.cfg.authorizing() {
		return nil
	}
	if b.acls, err = auth.OpenACLs(b.cfg.Dir, b.cfg.SuperUsers); err != nil {
		return err
	}
	if b.cfg.SASL && b.users.Len() == 0 {
		b.logger.Warn("SASL is on and no user exists yet: no client can authenticate until one is created (runnel users create, offline, before the broker starts, or by a super user through AlterUserScramCredentials)")
	}
	return nil
}

// A listener is one of the broker's listening sockets.
type listener struct {
	ln  net.Listener
	tls *tls.Config // nil: plaintext
	// advHost and advPort are what clients of this listener are told to
	// connect to.
	advHost string
	advPort int32
}

// listen opens Addr's listener, TLS or not, and TLSAddr's if set.
func (b *Broker) listen(ctx context.Context) error {
	var tlsCfg *tls.Config
	if b.cfg.tlsOn() {
		var err error
		if tlsCfg, err = auth.ServerTLSConfig(b.cfg.TLSCertFile, b.cfg.TLSKeyFile, b.cfg.TLSClientCAFile); err != nil {
			return err
		}
	}
	open := func(addr, adv string, tc *tls.Config) error {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		l := &listener{ln: ln, tls: tc}
		b.lns = append(b.lns, l)
		l.advHost, l.advPort, err = advertised(adv, ln.Addr().String())
		return err
	}
	mainTLS := tlsCfg
	if b.cfg.TLSAddr != "" {
		mainTLS = nil
	}
	if err := open(b.cfg.Addr, b.cfg.AdvertisedAddr, mainTLS); err != nil {
		return err
	}
	b.ln, b.advHost, b.advPort = b.lns[0].ln, b.lns[0].advHost, b.lns[0].advPort
	if b.cfg.TLSAddr != "" {
		return open(b.cfg.TLSAddr, b.cfg.TLSAdvertisedAddr, tlsCfg)
	}
	return nil
}

// advertisedTo returns the host and port to tell the client of the request
// handled in ctx: its listener's.
func (b *Broker) advertisedTo(ctx context.Context) (string, int32) {
	if c := connOf(ctx); c != nil && c.lst != nil {
		return c.lst.advHost, c.lst.advPort
	}
	return b.advHost, b.advPort
}

// advertised picks the host and port to tell clients: adv if set, else the
// listener's address with an unspecified host replaced by the hostname.
func advertised(adv, listen string) (string, int32, error) {
	addr := adv
	if addr == "" {
		addr = listen
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("advertised address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("advertised address %q: bad port", addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if adv != "" {
			return "", 0, fmt.Errorf("advertised address %q: needs a host clients can reach", adv)
		}
		if host, err = os.Hostname(); err != nil || host == "" {
			host = "localhost"
		}
	}
	return host, int32(port), nil
}

// Addr returns the address the broker listens on, with the port chosen if
// Config.Addr asked for port 0. It serves TLS if TLS is on and
// Config.TLSAddr is empty.
func (b *Broker) Addr() string { return b.ln.Addr().String() }

// TLSAddr returns the address of the listener that serves TLS (Addr's own
// if TLS is on without Config.TLSAddr), or "" if TLS is off.
func (b *Broker) TLSAddr() string {
	for _, l := range b.lns {
		if l.tls != nil {
			return l.ln.Addr().String()
		}
	}
	return ""
}

// Log returns the storage the broker serves, for embedders that read or
// write it directly.
func (b *Broker) Log() *storage.Log { return b.log }

// ClusterID returns the cluster id, made on the data directory's first start
// and kept across restarts.
func (b *Broker) ClusterID() string { return b.meta.clusterID() }

// Close unregisters the metrics, stops accepting connections, closes the
// open ones (requests in progress are abandoned; appends already made
// stay), stops the group coordinator, waits for every connection's
// goroutines and closes the log cleanly. It is idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	conns := make([]*conn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	b.mu.Unlock()

	b.metrics.unregister()
	b.cancel()
	var lnErr error
	for _, l := range b.lns {
		if err := l.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			lnErr = errors.Join(lnErr, err)
		}
	}
	for _, c := range conns {
		c.abort()
	}
	// The coordinator answers the group calls still waiting and waits for
	// its writes to __consumer_offsets, which must finish before the log
	// closes.
	// The transaction coordinator goes first: finishing a transaction
	// completes offsets in the group coordinator.
	gctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	txnsErr := b.txns.Close(gctx)
	groupsErr := b.groups.Close(gctx)
	cancel()
	b.wg.Wait()
	logErr := b.log.Close()
	b.lock.Close() // releases the directory only once the log is closed
	b.logger.Info("broker stopped", "addr", b.Addr())
	if err := errors.Join(lnErr, txnsErr, groupsErr, logErr); err != nil {
		return fmt.Errorf("close broker: %w", err)
	}
	return nil
}

// accept runs until the listener l closes, starting a conn per connection.
func (b *Broker) accept(l *listener) {
	defer b.wg.Done()
	var backoff time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || b.ctx.Err() != nil {
				return
			}
			// Out of file descriptors and the like: wait, as net/http does,
			// rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			b.logger.Warn("accept failed; retrying", "err", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-b.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		ip := peerIP(nc)
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			nc.Close()
			return
		}
		if reason := b.overCap(ip); reason != "" {
			b.mu.Unlock()
			nc.Close()
			continue
		}
		c := newConn(b, nc, l)
		b.conns[c] = struct{}{}
		b.perIP[ip]++
		b.wg.Add(1)
		b.mu.Unlock()
		go func() {
			defer b.wg.Done()
			c.serve()
			b.mu.Lock()
			delete(b.conns, c)
			if b.perIP[ip]--; b.perIP[ip] <= 0 {
				delete(b.perIP, ip)
			}
			b.mu.Unlock()
		}()
	}
}

// reserveFDs is how many file descriptors connections leave to everything
// else: the listener's accept (which needs one to refuse a connection), the
// metrics endpoint, partition files and the data directory.
const reserveFDs = 256

// connectionCap returns max, lowered so that reserveFDs descriptors stay
// free of the process's limit, with a warning when it must be.
func connectionCap(max int, logger *slog.Logger) int {
	limit, ok := openFileLimit()
	if !ok || int64(max) <= limit-reserveFDs {
		return max
	}
	lowered := int(limit - reserveFDs)
	if lowered < 1 {
		lowered = 1
	}
	logger.Warn("lowering the connection limit to keep file descriptors in reserve",
		"max_connections", max, "lowered_to", lowered, "open_file_limit", limit, "reserve", reserveFDs)
	return lowered
}

// peerIP returns the IP address of a connection's peer.
func peerIP(nc net.Conn) string {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(nc.RemoteAddr().String())
	if err != nil {
		return nc.RemoteAddr().String()
	}
	return host
}

// overCap reports why a new connection from ip must be refused, or "" if
// it may be served; a refusal is logged at most once a second, with the
// count refused since the last line. b.mu is held.
func (b *Broker) overCap(ip string) string {
	var reason string
	switch {
	case len(b.conns) >= b.maxConns:
		reason = "max-connections"
	case b.perIP[ip] >= b.cfg.MaxConnectionsPerIP:
		reason = "max-connections-per-ip"
	default:
		return ""
	}
	b.refusedSince++
	if now := time.Now(); now.Sub(b.refusedLog) >= time.Second {
		b.logger.Warn("refusing connections over the limit", "limit", reason, "peer_ip", ip,
			"open", len(b.conns), "from_ip", b.perIP[ip], "max_connections", b.maxConns,
			"max_connections_per_ip", b.cfg.MaxConnectionsPerIP, "refused", b.refusedSince)
		b.refusedLog, b.refusedSince = now, 0
	}
	return reason
}
