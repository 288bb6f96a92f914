package runtime

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/runnel-io/runnel/runtime/internal/kafka"
)

// partitionState is where a partition this instance owns is in its life.
type partitionState int32

const (
	// stateRestoring: its tables are being restored, or those of the other
	// partitions of its generation are; no record is processed yet.
	stateRestoring partitionState = iota
	// stateRunning: its records are processed.
	stateRunning
	// stateFailed: a record or its restore failed, and the group stopped.
	stateFailed
	// stateStopped: another partition of the group failed, and the group
	// stopped.
	stateStopped
)

func (s partitionState) String() string {
	switch s {
	case stateRestoring:
		return "restoring"
	case stateRunning:
		return "running"
	case stateFailed:
		return "failed"
	default:
		return "stopped"
	}
}

// partitionStatus is what the monitor and the metrics show of a partition
// this instance owns: its state, the progress of its restores, and how far
// its inputs are processed. It lives from the partition's assignment to
// its revocation, or, if the group failed, until the runtime closes, to
// show what failed.
type partitionStatus struct {
	p        int32
	state    atomic.Int32 // a partitionState
	counters *partitionCounters

	mu       sync.Mutex
	err      error            // why it failed, or stopped
	restores []*restoreStatus // in the order they ran
	inputs   []*inputPosition // one per claim, in the order they started
}

func (s *partitionStatus) setState(st partitionState) { s.state.Store(int32(st)) }

func (s *partitionStatus) getState() partitionState { return partitionState(s.state.Load()) }

// fail marks the partition failed because of err.
func (s *partitionStatus) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
	s.setState(stateFailed)
}

// stop marks the partition stopped because its group failed with err,
// unless the partition failed itself.
func (s *partitionStatus) stop(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.getState() == stateFailed {
		return
	}
	s.err = err
	s.setState(stateStopped)
}

func (s *partitionStatus) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// restoreStatus is the progress of one table partition's restore.
type restoreStatus struct {
	topic     string
	counters  *restoreCounters
	restored  atomic.Int64 // records applied in this restore
	remaining atomic.Int64
	total     atomic.Int64 // records to restore in all, known once started
}

// restoring adds a restore of topic's partition and returns its progress.
func (s *partitionStatus) restoring(topic string, counters *restoreCounters) *restoreStatus {
	r := &restoreStatus{topic: topic, counters: counters}
	s.mu.Lock()
	s.restores = append(s.restores, r)
	s.mu.Unlock()
	return r
}

// progress records that n records are applied and remaining are left.
func (r *restoreStatus) progress(n, remaining int64) {
	if prev := r.restored.Swap(n); n > prev {
		r.counters.restored.Add(n - prev)
	}
	r.remaining.Store(remaining)
	r.counters.remaining.Store(remaining)
	if t := n + remaining; t > r.total.Load() {
		r.total.Store(t)
	}
}

// end records that the restore returned: done, or given up (a rebalance,
// an error). Either way, nothing remains for this instance to restore.
func (r *restoreStatus) end() {
	r.counters.remaining.Store(0)
}

func (s *partitionStatus) restoreList() []*restoreStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*restoreStatus(nil), s.restores...)
}

// inputPosition is how far one input partition is processed.
type inputPosition struct {
	topic string
	// next is the offset of the next record to process, -1 while unknown
	// (the group has no committed offset and the log start is being
	// asked for).
	next atomic.Int64
	hw   func() int64
}

// input adds the position of a claim, starting where the claim does.
func (s *partitionStatus) input(c *kafka.Claim) *inputPosition {
	in := &inputPosition{topic: c.Topic, hw: c.HighWatermark}
	in.next.Store(c.InitialOffset())
	s.mu.Lock()
	s.inputs = append(s.inputs, in)
	s.mu.Unlock()
	return in
}

// resolveStart sets an unknown position to the partition's log start
// offset, where a claim without a committed offset begins.
func (in *inputPosition) resolveStart(ctx context.Context, partition int32, offsets func(context.Context, string, int32) (int64, int64, error)) {
	if in.next.Load() >= 0 {
		return
	}
	start, _, err := offsets(ctx, in.topic, partition)
	if err == nil {
		in.next.CompareAndSwap(-1, start)
	}
}

// lag returns the records of the partition not processed yet, -1 if not
// known.
func (in *inputPosition) lag() int64 {
	next, hw := in.next.Load(), in.hw()
	if next < 0 || hw < 0 {
		return -1
	}
	return max(hw-next, 0)
}

func (s *partitionStatus) positions() []*inputPosition {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*inputPosition(nil), s.inputs...)
}
