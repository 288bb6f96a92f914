package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Producer sends records to the partitions they name.
type Producer interface {
	// Send queues r for sending to r.Topic, partition r.Partition, and
	// returns; it blocks only while the send buffer is full. done is called
	// exactly once, with r (its Offset set) and nil once every in-sync
	// replica has it, or with r and the error that made the send fail.
	// Records sent to one partition are written, and acknowledged, in the
	// order of their Send calls. r must not be changed until done is called.
	//
	// Sends are retried through a broker outage. A record not acknowledged
	// within Config.DeliveryTimeout fails with an error matching
	// ErrDeliveryTimeout, unless its request reached the broker and the
	// answer was lost: that one waits for the broker's answer. A record
	// reported failed is not in the log (for the exceptions, see
	// producer.go); the records of its partition still waiting fail with
	// it, and records sent after them may succeed, leaving a gap.
	//
	// done runs on the producer's delivery goroutine, which every
	// acknowledgement waits for: it must be quick, must not call Send or
	// Flush, and must not wait for anything a Send caller may hold. On a
	// closed client, done is called with ErrClosed before Send returns.
	Send(r *Record, done func(r *Record, err error))
	// Flush returns once every record sent before the call has had its
	// done called, or with ctx's error.
	Flush(ctx context.Context) error
}

// Admin reads and creates topics and reads offsets. Its calls retry
// through a broker outage until ctx ends or they have failed for
// Config.DeliveryTimeout, and then return an error matching
// ErrDeliveryTimeout.
type Admin interface {
	// EnsureTopic creates topic name with the given partition count and
	// configs if it does not exist. If it exists, it returns a
	// *TopicMismatchError when its partition count differs or, if configs
	// names a cleanup.policy, when its cleanup.policy differs.
	EnsureTopic(ctx context.Context, name string, partitions int32, configs map[string]string) error
	// Partitions returns the partition count of topic, or an error matching
	// ErrUnknownTopic.
	Partitions(ctx context.Context, topic string) (int32, error)
	// Offsets returns the log start offset (the first offset still stored)
	// and the high watermark (the offset the next record will get) of a
	// partition.
	Offsets(ctx context.Context, topic string, partition int32) (logStart, highWatermark int64, err error)
	// CommittedOffsets returns the offsets group has committed for the
	// partitions of topic, by partition; partitions without a commit are
	// missing from the map.
	CommittedOffsets(ctx context.Context, group, topic string) (map[int32]int64, error)
}

// Reader reads one partition directly, outside any group.
type Reader interface {
	// ReadPartition calls fn for each record of a partition from offset
	// from on, in offset order. With until >= 0 it returns nil once the
	// records before until are done (until is typically the high watermark
	// when the read starts); with until = -1 it follows the partition until
	// ctx ends, and returns ctx's error. A start below the log start offset
	// or beyond the high watermark returns an error matching
	// ErrOffsetOutOfRange. An error from fn stops the read and is returned
	// as it is. A broker outage pauses the read, which resumes where it
	// was. The Record is fn's until it returns (its Key, Value and Headers
	// stay valid after).
	//
	// A read ends at until by its fetch position, not by the offsets of
	// the records it sees: a range whose last offsets hold transaction
	// markers, or records compaction removed, ends all the same.
	ReadPartition(ctx context.Context, topic string, partition int32, from, until int64, fn func(*Record) error) error
	// ReadBatches is ReadPartition by record batches: fn gets the records
	// of a fetch's next whole record batches, about a thousand records at
	// a time (none, for batches that held only transaction markers or
	// what compaction left of a batch), and next, the read's position
	// after them: every offset below next has been read. With until >= 0
	// the records are those below until, and next is at most until. recs
	// and the Records are fn's until it returns (the next call reuses
	// them); their Keys, Values and Headers stay valid after.
	ReadBatches(ctx context.Context, topic string, partition int32, from, until int64, fn func(recs []*Record, next int64) error) error
}

// Group is consumer group membership.
type Group interface {
	// Join makes this process a member of group, consuming topics, all of
	// which must have the same partition count: partition p of every topic
	// is assigned to the same member. It drives h through each generation
	// of the group (see GroupHandler) until ctx ends or h returns an error,
	// then leaves the group and returns ctx's error or h's. Topics that are
	// not co-partitioned, or members subscribing to different topics, end
	// it with an error matching ErrNotCopartitioned. Through a broker
	// outage it rejoins (the generation in progress ends); joins failing
	// for Config.DeliveryTimeout with no generation between end it with an
	// error matching ErrDeliveryTimeout.
	Join(ctx context.Context, group string, topics []string, h GroupHandler) error
}

// Client is a connection to a Kafka cluster. It implements Producer,
// Admin, Reader and Group.
//
// It is made of franz-go clients: one for admin calls, one for producing,
// one per read (ReadPartition) and one per group membership (Join). A read
// and a membership each have connections of their own because a broker
// answers a connection's requests in order: a fetch long poll on a shared
// connection would hold back every other request behind it.
type Client struct {
	cfg Config
	log *slog.Logger

	admin *kgo.Client // admin requests, metadata and offset commits
	adm   *kadm.Client
	prod  *producer

	// records holds chunks of Records that reads decode into, reused from
	// one read to the next (see recordAlloc).
	records sync.Pool
}

var (
	_ Producer = (*Client)(nil)
	_ Admin    = (*Client)(nil)
	_ Reader   = (*Client)(nil)
	_ Group    = (*Client)(nil)
)

// ErrClosed is returned, and given to done callbacks, for calls on a closed
// Client.
var ErrClosed = errors.New("kafka: client closed")

// New returns a Client of the cluster cfg names, which must be closed. It
// checks that the cluster answers, retrying through an outage until ctx
// ends or for Config.DeliveryTimeout.
func New(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, log: cfg.Logger}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	// An admin call's own retries end where the delivery timeout does;
	// the callers' retry loops (retry.go) carry on from there or give up.
	if c.admin, err = kgo.NewClient(append(cfg.kgoBase("admin"), kgo.RetryTimeout(cfg.DeliveryTimeout))...); err != nil {
		return nil, fmt.Errorf("kafka: admin client: %w", err)
	}
	c.adm = kadm.NewClient(c.admin)
	if err := c.retry(ctx, func(ctx context.Context) error {
		if _, err := c.adm.BrokerMetadata(ctx); err != nil {
			return fmt.Errorf("kafka: connect to %v: %w", cfg.Brokers, err)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if c.prod, err = newProducer(cfg); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// Close closes the producer, after it has delivered (or failed) every
// record sent, waiting for that up to Config.DeliveryTimeout (records still
// unacknowledged then fail with ErrClosed), and then the admin connections.
// Joins and reads in progress are not ended by Close: end them through
// their contexts first. No goroutine of the client outlives Close, nor one
// of a Join or a read after it returned.
func (c *Client) Close() error {
	var errs []error
	if c.prod != nil {
		errs = append(errs, c.prod.close())
	}
	if c.admin != nil {
		c.admin.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("kafka: close: %w", err)
	}
	return nil
}

// retry is retry with the client's config and logger.
func (c *Client) retry(ctx context.Context, fn func(ctx context.Context) error) error {
	return retry(ctx, c.cfg, c.log, fn)
}
