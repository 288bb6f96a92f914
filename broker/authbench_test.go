package broker

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/runnel-io/runnel/broker/internal/auth"
)

// The cost of authentication and ACL checks, in one run: each benchmark
// has a sub-benchmark per mode, against a broker of its own started the
// same way but for security:
//
//	auth=off    no SASL, no authorization
//	auth=super  SASL/SCRAM-SHA-256 (plaintext, loopback), a super user
//	auth=acl    SASL/SCRAM-SHA-256, a user allowed by literal ACLs on the
//	            topic (and a prefixed deny on another prefix, so that the
//	            prefix index is consulted too)
//
//	go test ./broker -run '^$' -bench 'Auth' -count 6
var authModes = []string{"off", "super", "acl"}

// authBroker starts a broker for mode with topic "bench" and returns it with
// the client options of its user.
func authBroker(b *testing.B, mode string) (*Broker, []kgo.Opt) {
	b.Helper()
	dir := b.TempDir()
	cfg := Config{Addr: "127.0.0.1:0", Dir: dir}
	var opts []kgo.Opt
	if mode != "off" {
		u, err := auth.OpenUsers(dir)
		if err != nil {
			b.Fatal(err)
		}
		if err := u.SetPassword("bench", auth.ScramSHA256, "bench-secret", 4096); err != nil {
			b.Fatal(err)
		}
		cfg.SASL = true
		if mode == "super" {
			cfg.SuperUsers = []string{"User:bench"}
		}
		opts = append(opts, kgo.SASL(scram.Auth{User: "bench", Pass: "bench-secret"}.AsSha256Mechanism()))
	}
	br, err := Start(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { br.Close() })
	if _, err := br.Log().CreateTopic("bench", 1, nil); err != nil {
		b.Fatal(err)
	}
	if mode == "acl" {
		acl := func(name string, pt kmsg.ACLResourcePatternType, op kmsg.ACLOperation, perm kmsg.ACLPermissionType) auth.ACL {
			return auth.ACL{ResourceType: kmsg.ACLResourceTypeTopic, ResourceName: name, PatternType: pt,
				Principal: "User:bench", Host: "*", Operation: op, Permission: perm}
		}
		if err := br.acls.Add(
			acl("bench", kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLOperationWrite, kmsg.ACLPermissionTypeAllow),
			acl("bench", kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow),
			acl("secret-", kmsg.ACLResourcePatternTypePrefixed, kmsg.ACLOperationAll, kmsg.ACLPermissionTypeDeny),
		); err != nil {
			b.Fatal(err)
		}
	}
	return br, opts
}

// BenchmarkAuthProduce: one acks=1 Produce of a 100-record batch per
// iteration, as BenchmarkProduce.
func BenchmarkAuthProduce(b *testing.B) {
	for _, mode := range authModes {
		b.Run("auth="+mode, func(b *testing.B) {
			br, opts := authBroker(b, mode)
			cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(br.Addr()), kgo.DefaultProduceTopic("bench"),
				kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.ProducerLinger(0))...)
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			ctx := context.Background()
			if err := cl.Ping(ctx); err != nil { // authenticate outside the loop
				b.Fatal(err)
			}
			const perBatch = 100
			recs := make([]*kgo.Record, perBatch)
			value := make([]byte, 100)
			b.SetBytes(perBatch * int64(len(value)))
			b.ReportAllocs()
			for b.Loop() {
				for i := range recs {
					recs[i] = &kgo.Record{Value: value}
				}
				if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAuthConsume: each iteration reads 20,000 100-byte records (200
// batches) from the start of the topic with one client, so that Fetch
// requests, each authorized, dominate.
func BenchmarkAuthConsume(b *testing.B) {
	const batches, perBatch = 200, 100
	for _, mode := range authModes {
		b.Run("auth="+mode, func(b *testing.B) {
			br, opts := authBroker(b, mode)
			ctx := context.Background()
			pr, err := kgo.NewClient(append(opts, kgo.SeedBrokers(br.Addr()), kgo.DefaultProduceTopic("bench"),
				kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.ProducerLinger(0))...)
			if err != nil {
				b.Fatal(err)
			}
			value := make([]byte, 100)
			for range batches {
				recs := make([]*kgo.Record, perBatch)
				for i := range recs {
					recs[i] = &kgo.Record{Value: value}
				}
				if err := pr.ProduceSync(ctx, recs...).FirstErr(); err != nil {
					b.Fatal(err)
				}
			}
			pr.Close()
			cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(br.Addr()),
				// Small fetches: many requests per iteration.
				kgo.FetchMaxPartitionBytes(16<<10), kgo.FetchMaxBytes(16<<10))...)
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			if err := cl.Ping(ctx); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(batches * perBatch * int64(len(value)))
			b.ReportAllocs()
			for b.Loop() {
				cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{"bench": {0: kgo.NewOffset().AtStart()}})
				n := 0
				for n < batches*perBatch {
					fs := cl.PollFetches(ctx)
					if err := fs.Err0(); err != nil {
						b.Fatal(err)
					}
					n += fs.NumRecords()
				}
				cl.RemoveConsumePartitions(map[string][]int32{"bench": {0}})
			}
		})
	}
}
