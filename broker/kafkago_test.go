package broker

import (
	"fmt"
	"testing"
	"time"

	kafka "github.com/segmentio/kafka-go"
)

// TestKafkaGoWriterReader writes with segmentio/kafka-go's Writer (acks
// all) and reads one partition back with its Reader.
func TestKafkaGoWriterReader(t *testing.T) {
	b := startBroker(t, "")
	createTopic(t, b, "kafka-go", 1)
	w := &kafka.Writer{
		Addr:         kafka.TCP(b.Addr()),
		Topic:        "kafka-go",
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
	}
	defer w.Close()
	const n = 40
	ctx := ctxFor(t)
	var msgs []kafka.Message
	for i := range n {
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	if err := w.WriteMessages(ctx, msgs[:n/2]...); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := w.WriteMessages(ctx, msgs[n/2:]...); err != nil {
		t.Fatalf("write: %v", err)
	}

	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   []string{b.Addr()},
		Topic:     "kafka-go",
		Partition: 0,
		MinBytes:  1,
		MaxBytes:  1 << 20,
		MaxWait:   100 * time.Millisecond,
	})
	defer r.Close()
	for i := range n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read message %d: %v", i, err)
		}
		if m.Offset != int64(i) || string(m.Key) != fmt.Sprintf("k%d", i) || string(m.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("message %d: offset %d %s=%s", i, m.Offset, m.Key, m.Value)
		}
	}
}
