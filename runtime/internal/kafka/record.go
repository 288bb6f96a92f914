package kafka

import (
	"time"

	"github.com/IBM/sarama"
)

// Record is one Kafka record, as produced or as read.
//
// A nil Value is a tombstone (a null value on the wire, which compaction
// reads as a delete); an empty non-nil Value is an empty value. Likewise a
// nil Key is a null key.
type Record struct {
	Topic     string
	Partition int32
	// Offset is the record's position in its partition. It is set when the
	// record was read, and by the producer once the record is acknowledged.
	Offset  int64
	Key     []byte
	Value   []byte
	Headers []Header
	// Timestamp is the record's timestamp. When producing, the zero value
	// means the time of sending.
	Timestamp time.Time
}

// Header is a record header. Keys need not be unique.
type Header struct {
	Key   string
	Value []byte
}

// fromConsumerMessage converts a record sarama has read.
func fromConsumerMessage(m *sarama.ConsumerMessage) *Record {
	r := &Record{
		Topic:     m.Topic,
		Partition: m.Partition,
		Offset:    m.Offset,
		Key:       m.Key,
		Value:     m.Value,
		Timestamp: m.Timestamp,
	}
	if len(m.Headers) > 0 {
		r.Headers = make([]Header, len(m.Headers))
		for i, h := range m.Headers {
			r.Headers[i] = Header{Key: string(h.Key), Value: h.Value}
		}
	}
	return r
}
