package runtime

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime/internal/kafka"
	"github.com/runnel-io/runnel/topology"
)

// scriptedProducer keeps every record sent, for the test to settle as it
// likes.
type scriptedProducer struct {
	sent []func(error)
}

func (p *scriptedProducer) Send(r *kafka.Record, done func(*kafka.Record, error)) {
	p.sent = append(p.sent, func(err error) { done(r, err) })
}

func (p *scriptedProducer) Flush(context.Context) error { return nil }

// The emitter's bookkeeping of one partition: a failure fails the records
// emitted after it is known, until Resume; a record that was already on
// its way and is written after the gap is counted and reported by Flush.
func TestEmitterCountsRecordsWrittenAfterAGap(t *testing.T) {
	prod := &scriptedProducer{}
	em := newEmitter(prod, topology.NewTopic("t", processor.String, processor.String), 1)
	outcome := make([]error, 6)
	emit := func(i int) { em.EmitAsync("k", "v", func(err error) { outcome[i] = err }) }

	emit(0)
	emit(1)
	emit(2) // on its way before record 1's failure is known
	prod.sent[0](nil)
	prod.sent[1](errors.New("delivery timeout"))
	prod.sent[2](nil) // written after the gap
	emit(3)
	if !errors.Is(outcome[3], ErrPartitionFailed) || len(prod.sent) != 3 {
		t.Fatalf("record emitted after the failure: %v (%d sent), want ErrPartitionFailed and not sent", outcome[3], len(prod.sent))
	}
	err := em.Flush(t.Context())
	if err == nil || !strings.Contains(err.Error(), "2 records failed") || !strings.Contains(err.Error(), "1 records were written after") {
		t.Fatalf("flush: %v; want 2 failed (1 and 3) and 1 written after the gap", err)
	}
	if err := em.Flush(t.Context()); err != nil {
		t.Fatalf("second flush: %v, want nothing new", err)
	}
	if err := em.Resume("k"); err != nil {
		t.Fatal(err)
	}
	emit(4)
	prod.sent[3](nil)
	if outcome[4] != nil || len(prod.sent) != 4 {
		t.Fatalf("record after Resume: %v (%d sent), want sent and acknowledged", outcome[4], len(prod.sent))
	}
	if err := em.Flush(t.Context()); err != nil {
		t.Fatalf("flush after resume: %v", err)
	}
}
