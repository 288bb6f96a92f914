package txn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/runnel-io/runnel/broker/internal/clock"
)

// fakeClock is the Clock of the tests: its time moves only when a test
// advances it.
type fakeClock = clock.Fake

func newFakeClock() *fakeClock { return clock.NewFake() }

// record is one record of the state topic.
type record struct{ key, value []byte }

// memStore is an in-memory Store. failNext makes the next n appends fail before writing.
type memStore struct {
	mu       sync.Mutex
	recs     []record
	failNext int
	log      *eventLog
}

var errInjected = errors.New("injected failure")

func (s *memStore) Append(_ context.Context, key, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failNext > 0 {
		s.failNext--
		return errInjected
	}
	r := record{key: bytes.Clone(key)}
	if value != nil {
		r.value = bytes.Clone(value)
	}
	s.recs = append(s.recs, r)
	if s.log != nil {
		s.log.add(event{record: len(s.recs)})
	}
	return nil
}

func (s *memStore) records() []record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.recs)
}

func (s *memStore) fail(n int) {
	s.mu.Lock()
	s.failNext = n
	s.mu.Unlock()
}

// markerCall is one successful WriteMarkers call.
type markerCall struct {
	pid    int64
	epoch  int16
	commit bool
	parts  []TopicPartition
}

// memMarkers is an in-memory Markers. failNext makes the next n calls fail.
type memMarkers struct {
	mu       sync.Mutex
	calls    []markerCall
	failNext int
	log      *eventLog
}

func (m *memMarkers) WriteMarkers(_ context.Context, pid int64, epoch int16, commit bool, parts []TopicPartition) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failNext > 0 {
		m.failNext--
		return errInjected
	}
	m.calls = append(m.calls, markerCall{pid, epoch, commit, slices.Clone(parts)})
	if m.log != nil {
		m.log.add(event{marker: &m.calls[len(m.calls)-1]})
	}
	return nil
}

func (m *memMarkers) all() []markerCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

func (m *memMarkers) fail(n int) {
	m.mu.Lock()
	m.failNext = n
	m.mu.Unlock()
}

// eventLog orders state records and marker writes, for checking that markers follow the
// decision and precede the completion.
type eventLog struct {
	mu     sync.Mutex
	events []event
}

type event struct {
	record int // number of records in the store after this append, or 0
	marker *markerCall
}

func (l *eventLog) add(e event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

// env is a coordinator under test with its fakes.
type env struct {
	t       testing.TB
	c       *Coordinator
	clock   *fakeClock
	store   *memStore
	markers *memMarkers
	cfg     Config
}

func newEnv(t testing.TB, mod ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, clock: newFakeClock(), store: &memStore{}, markers: &memMarkers{}}
	e.cfg = Config{
		Store:                 e.store,
		Markers:               e.markers,
		Clock:                 e.clock,
		MaxTransactionTimeout: time.Minute,
		AbortTimedOutInterval: time.Second,
		PartitionExists:       func(topic string, _ int32) bool { return topic != "missing" },
		OffsetsPartition: func(group string) TopicPartition {
			return TopicPartition{Topic: "__consumer_offsets", Partition: int32(len(group) % 3)}
		},
	}
	for _, f := range mod {
		f(&e.cfg)
	}
	e.c = New(e.cfg)
	if err := e.c.Recover(context.Background()); err != nil {
		t.Fatalf("recover: %v", err)
	}
	t.Cleanup(func() { _ = e.c.Close(context.Background()) })
	return e
}

// reopen replays the store into a new coordinator and recovers it, as a restarted broker does.
func (e *env) reopen() *Coordinator {
	e.t.Helper()
	_ = e.c.Close(context.Background())
	c := New(e.cfg)
	for _, r := range e.store.records() {
		if err := c.Load(r.key, r.value); err != nil {
			e.t.Fatalf("load: %v", err)
		}
	}
	if err := c.Recover(context.Background()); err != nil {
		e.t.Fatalf("recover: %v", err)
	}
	e.c = c
	e.t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func ctxb() context.Context { return context.Background() }

func (e *env) init(id string, version int16, timeoutMs int32, expected ...int64) *kmsg.InitProducerIDResponse {
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version = version
	req.TransactionalID = &id
	req.TransactionTimeoutMillis = timeoutMs
	if len(expected) == 2 {
		req.ProducerID, req.ProducerEpoch = expected[0], int16(expected[1])
	}
	return e.c.InitProducerID(ctxb(), req)
}

// mustInit initialises id and returns its producer id and epoch.
func (e *env) mustInit(id string) (int64, int16) {
	e.t.Helper()
	resp := e.init(id, 5, 10000)
	if resp.ErrorCode != 0 {
		e.t.Fatalf("init %s: %v", id, kerr.ErrorForCode(resp.ErrorCode))
	}
	return resp.ProducerID, resp.ProducerEpoch
}

// add sends AddPartitionsToTxn v3 and returns the codes per "topic/partition".
func (e *env) add(version int16, id string, pid int64, epoch int16, parts ...TopicPartition) map[string]int16 {
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = version
	req.TransactionalID, req.ProducerID, req.ProducerEpoch = id, pid, epoch
	for _, tp := range parts {
		i := slices.IndexFunc(req.Topics, func(t kmsg.AddPartitionsToTxnRequestTopic) bool { return t.Topic == tp.Topic })
		if i < 0 {
			req.Topics = append(req.Topics, kmsg.AddPartitionsToTxnRequestTopic{Topic: tp.Topic})
			i = len(req.Topics) - 1
		}
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, tp.Partition)
	}
	resp := e.c.AddPartitionsToTxn(ctxb(), req)
	out := make(map[string]int16)
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			out[fmt.Sprintf("%s/%d", t.Topic, p.Partition)] = p.ErrorCode
		}
	}
	return out
}

// mustAdd adds parts with v3 and fails the test on any error.
func (e *env) mustAdd(id string, pid int64, epoch int16, parts ...TopicPartition) {
	e.t.Helper()
	for k, code := range e.add(3, id, pid, epoch, parts...) {
		if code != 0 {
			e.t.Fatalf("add %s to %s: %v", k, id, kerr.ErrorForCode(code))
		}
	}
}

func (e *env) end(version int16, id string, pid int64, epoch int16, commit bool) *kmsg.EndTxnResponse {
	req := kmsg.NewPtrEndTxnRequest()
	req.Version = version
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = id, pid, epoch, commit
	return e.c.EndTxn(ctxb(), req)
}

func (e *env) addOffsets(version int16, id string, pid int64, epoch int16, group string) int16 {
	req := kmsg.NewPtrAddOffsetsToTxnRequest()
	req.Version = version
	req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = id, pid, epoch, group
	return e.c.AddOffsetsToTxn(ctxb(), req).ErrorCode
}

// describe returns the coordinator's view of id.
func (e *env) describe(id string) kmsg.DescribeTransactionsResponseTransactionState {
	req := kmsg.NewPtrDescribeTransactionsRequest()
	req.TransactionalIDs = []string{id}
	return e.c.DescribeTransactions(ctxb(), req).TransactionStates[0]
}

func (e *env) state(id string) string { return e.describe(id).State }

// waitIdle waits until no completion is in progress in c.
func waitIdle(t testing.TB, c *Coordinator) {
	t.Helper()
	for _, x := range c.snapshot() {
		x.mu.Lock()
		comp := x.comp
		x.mu.Unlock()
		if comp != nil {
			select {
			case <-comp.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("completion of %s did not finish", x.id)
			}
		}
	}
}

// durable returns the durable state of every transactional id of c.
func durable(c *Coordinator) map[string]meta {
	out := make(map[string]meta)
	for _, t := range c.snapshot() {
		t.mu.Lock()
		if !t.removed && t.m.epoch >= 0 {
			m := t.m
			if len(m.parts) == 0 {
				m.parts = nil
			}
			out[t.id] = m
		}
		t.mu.Unlock()
	}
	return out
}

// replay loads recs into a new coordinator (without Recover) and returns it.
func replay(t testing.TB, recs []record) *Coordinator {
	t.Helper()
	c := New(Config{})
	for _, r := range recs {
		if err := c.Load(r.key, r.value); err != nil {
			t.Fatalf("load: %v", err)
		}
	}
	return c
}

// checkReplays checks that the store replays to c's durable state.
func checkReplays(t testing.TB, c *Coordinator, recs []record) {
	t.Helper()
	got := durable(replay(t, recs))
	want := durable(c)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("state log replays to\n%+v\nwant\n%+v", got, want)
	}
}

func tp(topic string, p int32) TopicPartition { return TopicPartition{Topic: topic, Partition: p} }

func codeName(code int16) string {
	if code == 0 {
		return "NONE"
	}
	return kerr.ErrorForCode(code).Error()
}

func wantCode(t testing.TB, what string, got, want int16) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %s, want %s", what, codeName(got), codeName(want))
	}
}

// waitFor waits for cond, which another goroutine makes true.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// advanceUntil advances the fake clock in steps until cond holds, for retries that wait on it.
func advanceUntil(t testing.TB, clock *fakeClock, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		clock.Advance(100 * time.Millisecond)
		time.Sleep(time.Millisecond)
	}
}
