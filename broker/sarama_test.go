package broker

import (
	"fmt"
	"testing"

	"github.com/IBM/sarama"
)

func saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = "runnel-test"
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Consumer.Return.Errors = true
	return cfg
}

// TestSaramaSyncProducerAndPartitionConsumer produces with sarama's
// SyncProducer (acks=-1) and reads everything back with a partition
// consumer.
func TestSaramaSyncProducerAndPartitionConsumer(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "sarama", 2)
	producer, err := sarama.NewSyncProducer([]string{b.Addr()}, saramaConfig())
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	defer producer.Close()
	const n = 50
	for i := range n {
		msg := &sarama.ProducerMessage{Topic: "sarama", Partition: 1, Key: sarama.StringEncoder(fmt.Sprint(i)), Value: sarama.StringEncoder(fmt.Sprintf("v%d", i))}
		p, off, err := producer.SendMessage(msg)
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if p != 1 || off != int64(i) {
			t.Fatalf("message %d went to partition %d offset %d, want 1 and %d", i, p, off, i)
		}
	}
	batch := make([]*sarama.ProducerMessage, 10)
	for i := range batch {
		batch[i] = &sarama.ProducerMessage{Topic: "sarama", Partition: 1, Value: sarama.StringEncoder(fmt.Sprintf("v%d", n+i))}
	}
	if err := producer.SendMessages(batch); err != nil {
		t.Fatalf("send batch: %v", err)
	}

	consumer, err := sarama.NewConsumer([]string{b.Addr()}, saramaConfig())
	if err != nil {
		t.Fatalf("new consumer: %v", err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition("sarama", 1, sarama.OffsetOldest)
	if err != nil {
		t.Fatalf("consume partition: %v", err)
	}
	defer pc.Close()
	ctx := ctxFor(t)
	for i := range n + len(batch) {
		select {
		case m := <-pc.Messages():
			if m.Offset != int64(i) || string(m.Value) != fmt.Sprintf("v%d", i) {
				t.Fatalf("message %d: offset %d value %q", i, m.Offset, m.Value)
			}
		case err := <-pc.Errors():
			t.Fatalf("consume: %v", err)
		case <-ctx.Done():
			t.Fatalf("consumed %d of %d messages: %v", i, n+len(batch), ctx.Err())
		}
	}
	if hw := pc.HighWaterMarkOffset(); hw != n+int64(len(batch)) {
		t.Fatalf("high watermark %d, want %d", hw, n+len(batch))
	}
}

// TestSaramaAutoCreatesTopic asks for metadata of an unknown topic with
// sarama, which allows auto-creation, and finds the topic created.
func TestSaramaAutoCreatesTopic(t *testing.T) {
	b := startBroker(t, "", func(c *Config) { c.DefaultPartitions = 3 })
	client, err := sarama.NewClient([]string{b.Addr()}, saramaConfig())
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	defer client.Close()
	parts, err := client.Partitions("created-by-sarama")
	if err != nil {
		t.Fatalf("partitions: %v", err)
	}
	if len(parts) != 3 {
		t.Fatalf("sarama sees %d partitions, want 3", len(parts))
	}
	if tp := b.Log().Topic("created-by-sarama"); tp == nil || tp.NumPartitions() != 3 {
		t.Fatal("the topic sarama asked about was not created with 3 partitions")
	}
	leader, err := client.Leader("created-by-sarama", 2)
	if err != nil || leader.Addr() != b.Addr() {
		t.Fatalf("leader of partition 2: %v, %v; want this broker", leader, err)
	}
}
