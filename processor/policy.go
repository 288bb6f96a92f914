package processor

import (
	"strconv"
	"strings"
)

// Policy says what happens to a record that fails: whose handler returns an
// error or panics, or that cannot be decoded. A group has one; the zero
// value is [Stop].
//
// The policy is for bad records and handler bugs. Failures of the runtime
// itself (a store or a produce that fails, a cancelled context) always stop
// the instance; see [RawContext].
type Policy struct {
	kind  PolicyKind
	topic string
}

// PolicyKind is what a Policy does.
type PolicyKind uint8

const (
	// PolicyStop stops the instance with the record's error; its offset is
	// not committed, so the record is processed again on restart.
	PolicyStop PolicyKind = iota
	// PolicySkip counts the record as skipped and goes on.
	PolicySkip
	// PolicyDeadLetter produces the record, unchanged but for headers
	// describing the failure (see [RecordError.DeadLetterHeaders]), to the
	// policy's topic, and goes on once that produce is acknowledged.
	PolicyDeadLetter
)

// Stop returns the policy that stops the instance: the default.
func Stop() Policy { return Policy{} }

// Skip returns the policy that skips failed records, counting them.
func Skip() Policy { return Policy{kind: PolicySkip} }

// DeadLetter returns the policy that sends failed records to topic.
func DeadLetter(topic string) Policy { return Policy{kind: PolicyDeadLetter, topic: topic} }

// Kind returns what the policy does.
func (p Policy) Kind() PolicyKind { return p.kind }

// Topic returns the dead-letter topic, or "" for other kinds.
func (p Policy) Topic() string { return p.topic }

// String returns "stop", "skip" or "dead-letter(topic)".
func (p Policy) String() string {
	switch p.kind {
	case PolicyStop:
		return "stop"
	case PolicySkip:
		return "skip"
	case PolicyDeadLetter:
		return "dead-letter(" + p.topic + ")"
	}
	return "policy(" + strconv.Itoa(int(p.kind)) + ")"
}

// Headers a dead-letter record carries, besides the original ones.
const (
	HeaderError     = "runnel.error"     // the error's text
	HeaderGroup     = "runnel.group"     // the group whose handler failed
	HeaderTopic     = "runnel.topic"     // the record's original topic
	HeaderPartition = "runnel.partition" // its partition, in decimal
	HeaderOffset    = "runnel.offset"    // its offset, in decimal
)

// DeadLetterHeaders returns the headers of the dead-letter record for the
// failed record with the given original headers: the original ones, then the
// runnel.* headers describing e. Original runnel.* headers are dropped, so a
// record that fails again after being replayed from a dead-letter topic
// carries only its latest failure.
func (e *RecordError) DeadLetterHeaders(original []Header) []Header {
	hs := make([]Header, 0, len(original)+5)
	for _, h := range original {
		if !strings.HasPrefix(h.Key, "runnel.") {
			hs = append(hs, h)
		}
	}
	errText := "<nil>"
	if e.Err != nil {
		errText = e.Err.Error()
	}
	return append(hs,
		Header{Key: HeaderError, Value: []byte(errText)},
		Header{Key: HeaderGroup, Value: []byte(e.Group)},
		Header{Key: HeaderTopic, Value: []byte(e.Topic)},
		Header{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(e.Partition), 10)},
		Header{Key: HeaderOffset, Value: strconv.AppendInt(nil, e.Offset, 10)},
	)
}
