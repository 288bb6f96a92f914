package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/IBM/sarama"
)

// ErrOffsetOutOfRange is matched by ReadPartition's error when the offset to
// read from is no longer (or not yet) in the partition: below its log start
// offset, after retention or compaction removed it, or beyond its high
// watermark. A restore meeting it clears its store and restores from the
// log start offset.
var ErrOffsetOutOfRange = errors.New("offset out of range")

// ReadPartition implements Reader.
//
// Reads share one sarama consumer, so that all partitions read from one
// broker travel in one fetch request; a second concurrent read of the same
// partition gets a consumer of its own.
func (c *Client) ReadPartition(ctx context.Context, topic string, partition int32, from, until int64, fn func(*Record) error) error {
	if from < 0 {
		return fmt.Errorf("kafka: read %s/%d from offset %d: offsets start at 0", topic, partition, from)
	}
	if until >= 0 && from >= until {
		return nil
	}
	pc, err := c.consumePartition(ctx, topic, partition, from)
	if err != nil {
		return err
	}
	// Not Close: it waits for the fetch in flight, a long poll of up to
	// Consumer.MaxWaitTime (500ms), to hand the partition back. A read of
	// the same partition meanwhile gets a consumer of its own.
	defer closeAsync(pc)
	for {
		select {
		case m, ok := <-pc.Messages():
			if !ok {
				// sarama closes the messages of a partition it gave up on,
				// after reporting why on the errors channel.
				if err := drainError(pc); err != nil {
					return readError(topic, partition, err)
				}
				return fmt.Errorf("kafka: read %s/%d: consumer stopped", topic, partition)
			}
			// Compaction leaves gaps, so until-1 itself may be gone.
			if until >= 0 && m.Offset >= until {
				return nil
			}
			if err := fn(fromConsumerMessage(m)); err != nil {
				return err
			}
			if until >= 0 && m.Offset+1 >= until {
				return nil
			}
		case err := <-pc.Errors():
			if errors.Is(err, sarama.ErrOffsetOutOfRange) {
				return readError(topic, partition, err)
			}
			// sarama retries anything else itself (leader moves, broker
			// restarts); say so, and go on.
			c.log.Warn("reading partition", "topic", topic, "partition", partition, "err", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// consumePartition starts reading topic/partition at from.
func (c *Client) consumePartition(ctx context.Context, topic string, partition int32, from int64) (sarama.PartitionConsumer, error) {
	pc, err := callOwned(ctx, func() (sarama.PartitionConsumer, error) { return c.consumer.ConsumePartition(topic, partition, from) },
		func(pc sarama.PartitionConsumer) { pc.Close() })
	var cfgErr sarama.ConfigurationError
	if errors.As(err, &cfgErr) && strings.Contains(string(cfgErr), "already being consumed") {
		// sarama allows one reader per partition per consumer; a second
		// reader gets a consumer of its own, closed with the read.
		return c.consumeAlone(ctx, topic, partition, from)
	}
	if err != nil {
		return nil, readError(topic, partition, err)
	}
	return pc, nil
}

// consumeAlone reads topic/partition from from with a consumer of its own.
func (c *Client) consumeAlone(ctx context.Context, topic string, partition int32, from int64) (sarama.PartitionConsumer, error) {
	pc, err := callOwned(ctx, func() (sarama.PartitionConsumer, error) {
		cons, err := sarama.NewConsumerFromClient(c.reader)
		if err != nil {
			return nil, err
		}
		pc, err := cons.ConsumePartition(topic, partition, from)
		if err != nil {
			cons.Close()
			return nil, err
		}
		return &ownConsumer{PartitionConsumer: pc, consumer: cons}, nil
	}, func(pc sarama.PartitionConsumer) { pc.Close() })
	if err != nil {
		return nil, readError(topic, partition, err)
	}
	return pc, nil
}

// ownConsumer is a partition consumer that closes its consumer with it.
type ownConsumer struct {
	sarama.PartitionConsumer
	consumer sarama.Consumer
}

func (o *ownConsumer) Close() error {
	err := o.PartitionConsumer.Close()
	return errors.Join(err, o.consumer.Close())
}

func (o *ownConsumer) AsyncClose() {
	go o.Close()
}

// closeAsync starts closing pc and drains its errors meanwhile, so that
// sarama does not block on reporting one.
func closeAsync(pc sarama.PartitionConsumer) {
	pc.AsyncClose()
	go func() {
		for range pc.Errors() {
		}
	}()
}

// drainError returns the error a stopped partition consumer reported, if
// any.
func drainError(pc sarama.PartitionConsumer) error {
	select {
	case err, ok := <-pc.Errors():
		if ok {
			return err
		}
	default:
	}
	return nil
}

// readError wraps err, marking an out-of-range offset with
// ErrOffsetOutOfRange.
func readError(topic string, partition int32, err error) error {
	if errors.Is(err, sarama.ErrOffsetOutOfRange) {
		return fmt.Errorf("kafka: read %s/%d: %w: %w", topic, partition, ErrOffsetOutOfRange, err)
	}
	return fmt.Errorf("kafka: read %s/%d: %w", topic, partition, err)
}
