package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
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

// fromKgo converts the records of one fetch, appending them to out. The
// records share one allocation: a fetch costs one, not one per record.
func fromKgo(krs []*kgo.Record, out []*Record) []*Record {
	recs := make([]Record, len(krs))
	for i, kr := range krs {
		r := &recs[i]
		*r = Record{
			Topic:     kr.Topic,
			Partition: kr.Partition,
			Offset:    kr.Offset,
			Key:       kr.Key,
			Value:     kr.Value,
			Timestamp: kr.Timestamp,
		}
		if len(kr.Headers) > 0 {
			r.Headers = make([]Header, len(kr.Headers))
			for j, h := range kr.Headers {
				r.Headers[j] = Header{Key: h.Key, Value: h.Value}
			}
		}
		out = append(out, r)
	}
	return out
}
