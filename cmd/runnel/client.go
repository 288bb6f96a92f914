package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// defaultBrokers is where runnel serve listens by default.
const defaultBrokers = "127.0.0.1:9092"

// clientID names the CLI's connections in the broker's group descriptions.
const clientID = "runnel-cli"

// connFlags are the flags of every command that talks to a cluster.
type connFlags struct {
	brokers string
	timeout time.Duration

	tls         bool
	tlsCA       string
	tlsCert     string
	tlsKey      string
	saslMech    string
	saslUser    string
	saslPassEnv string
}

// saslPasswordEnv is where the SASL password is read from by default: a
// password on the command line would show in ps and shell histories.
const saslPasswordEnv = "RUNNEL_SASL_PASSWORD"

// addConnFlags declares --brokers, the TLS and SASL flags and, if timeout >
// 0, --timeout with that default: commands that follow a topic until
// interrupted have none.
func addConnFlags(fs *flag.FlagSet, timeout time.Duration) *connFlags {
	c := &connFlags{}
	fs.StringVar(&c.brokers, "brokers", defaultBrokers, "comma-separated `host:port` list of runnel serve or Kafka brokers to bootstrap from")
	if timeout > 0 {
		fs.DurationVar(&c.timeout, "timeout", timeout, "give up after this `duration`")
	}
	fs.BoolVar(&c.tls, "tls", false, "connect with TLS (implied by --tls-ca and --tls-cert)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "PEM `file` of the CAs that sign the brokers' certificates (default: the system's)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM `file` of a client certificate, for brokers that require one (mutual TLS); with --tls-key")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM `file` of the client certificate's private key")
	fs.StringVar(&c.saslMech, "sasl-mechanism", "", "authenticate with SASL `mechanism` PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default: none)")
	fs.StringVar(&c.saslUser, "sasl-user", "", "SASL user `name`")
	fs.StringVar(&c.saslPassEnv, "sasl-password-env", saslPasswordEnv, "environment `variable` holding the SASL password")
	return c
}

// security returns the client options of the TLS and SASL flags.
func (c *connFlags) security() ([]kgo.Opt, error) {
	tc, err := clientTLS(c.tls, c.tlsCA, c.tlsCert, c.tlsKey)
	if err != nil {
		return nil, err
	}
	var opts []kgo.Opt
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if c.saslMech == "" {
		if c.saslUser != "" {
			return nil, errors.New("--sasl-user needs --sasl-mechanism")
		}
		return opts, nil
	}
	pass, ok := os.LookupEnv(c.saslPassEnv)
	if !ok {
		return nil, fmt.Errorf("--sasl-mechanism %s: the password is read from $%s, which is not set", c.saslMech, c.saslPassEnv)
	}
	m, err := saslMechanism(c.saslMech, c.saslUser, pass)
	if err != nil {
		return nil, err
	}
	return append(opts, kgo.SASL(m)), nil
}

// clientTLS builds a client TLS configuration: nil without TLS.
func clientTLS(on bool, caFile, certFile, keyFile string) (*tls.Config, error) {
	if !on && caFile == "" && certFile == "" {
		if keyFile != "" {
			return nil, errors.New("--tls-key needs --tls-cert")
		}
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// saslMechanism returns franz-go's client side of a SASL mechanism.
func saslMechanism(name, user, pass string) (sasl.Mechanism, error) {
	if user == "" {
		return nil, fmt.Errorf("--sasl-mechanism %s needs --sasl-user", name)
	}
	switch strings.ToUpper(name) {
	case "PLAIN":
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("--sasl-mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", name)
}

// adminTimeout is the default --timeout of commands that ask the cluster
// something and are done.
const adminTimeout = 30 * time.Second

// seeds returns the bootstrap addresses.
func (c *connFlags) seeds() ([]string, error) {
	var seeds []string
	for s := range strings.SplitSeq(c.brokers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return nil, errors.New("--brokers: no broker address")
	}
	return seeds, nil
}

// withTimeout bounds ctx by --timeout, if the command has one.
func (c *connFlags) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, c.timeout, fmt.Errorf("timed out after %v (--timeout)", c.timeout))
}

// connect returns a client of the cluster, once a broker has answered: a
// wrong address is then one clear error rather than requests retried until
// a timeout.
func (c *connFlags) connect(ctx context.Context, opts ...kgo.Opt) (*kgo.Client, error) {
	seeds, err := c.seeds()
	if err != nil {
		return nil, err
	}
	sec, err := c.security()
	if err != nil {
		return nil, err
	}
	base := append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ClientID(clientID)}, sec...)
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("client of %s: %w", c.brokers, err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("cannot reach brokers %s: %w", c.brokers, contextErr(ctx, err))
	}
	return cl, nil
}

// contextErr prefers the cause of ctx's end, which says which deadline
// passed, to the bare context error a request returns.
func contextErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return context.Cause(ctx)
	}
	return err
}

// topicDetails returns the metadata of topics, each of which must exist.
func topicDetails(ctx context.Context, adm *kadm.Client, topics ...string) (kadm.TopicDetails, error) {
	tds, err := adm.ListTopicsWithInternal(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", contextErr(ctx, err))
	}
	var errs []error
	for _, t := range topics {
		td, ok := tds[t]
		switch {
		case !ok, errors.Is(td.Err, kerr.UnknownTopicOrPartition):
			errs = append(errs, fmt.Errorf("topic %q does not exist", t))
		case td.Err != nil:
			errs = append(errs, fmt.Errorf("topic %q: %w", t, td.Err))
		}
	}
	return tds, errors.Join(errs...)
}

// partitionsOf returns a topic's partition numbers in order.
func partitionsOf(td kadm.TopicDetail) []int32 {
	ps := make([]int32, 0, len(td.Partitions))
	for p := range td.Partitions {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}
