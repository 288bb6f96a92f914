package core

import (
	"bytes"
	"cmp"
	"container/heap"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/runnel-io/runnel/processor"
)

// CompareTimers orders timers as they fire: by time, then name, then key.
// Kind comes last only to make the order total; the two kinds fire at
// different moments.
func CompareTimers(a, b processor.RawTimer) int {
	return cmp.Or(a.At.Compare(b.At), strings.Compare(a.Name, b.Name), bytes.Compare(a.Key, b.Key), cmp.Compare(a.Kind, b.Kind))
}

// timerID identifies a timer by all four of its fields, its time as an
// instant: equal instants in other locations, or with a monotonic reading,
// make one timer.
func timerID(t processor.RawTimer) string {
	b := make([]byte, 0, 1+8+2+len(t.Name)+len(t.Key))
	b = append(b, byte(t.Kind))
	b = binary.BigEndian.AppendUint64(b, processor.OrderedTime(t.At))
	b = binary.BigEndian.AppendUint16(b, uint16(len(t.Name)))
	b = append(b, t.Name...)
	return string(append(b, t.Key...))
}

// timerQueue holds a partition's pending timers, in firing order per
// clock. Removed timers stay in the heaps until they reach the top.
type timerQueue struct {
	set   map[string]processor.RawTimer // by timerID
	heaps [2]timerHeap                  // by kind
}

func newTimerQueue() *timerQueue {
	return &timerQueue{set: map[string]processor.RawTimer{}}
}

// add adds t (a copy of its key) and reports whether it is new.
func (q *timerQueue) add(t processor.RawTimer) bool {
	id := timerID(t)
	if _, ok := q.set[id]; ok {
		return false
	}
	t.Key = bytes.Clone(t.Key)
	q.set[id] = t
	heap.Push(&q.heaps[t.Kind], entry{id: id, t: t})
	return true
}

// remove removes t and reports whether it was there.
func (q *timerQueue) remove(t processor.RawTimer) bool {
	id := timerID(t)
	if _, ok := q.set[id]; !ok {
		return false
	}
	delete(q.set, id)
	return true
}

// peek returns the first pending timer of kind.
func (q *timerQueue) peek(kind processor.TimeKind) (processor.RawTimer, bool) {
	h := &q.heaps[kind]
	for h.Len() > 0 {
		e := (*h)[0]
		if _, ok := q.set[e.id]; ok {
			return e.t, true
		}
		heap.Pop(h) // removed earlier
	}
	return processor.RawTimer{}, false
}

// all returns copies of the pending timers, in firing order.
func (q *timerQueue) all() []processor.RawTimer {
	out := make([]processor.RawTimer, 0, len(q.set))
	for _, t := range q.set {
		t.Key = bytes.Clone(t.Key)
		out = append(out, t)
	}
	slices.SortFunc(out, CompareTimers)
	return out
}

type entry struct {
	id string
	t  processor.RawTimer
}

// timerHeap is a min-heap of timers in firing order.
type timerHeap []entry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return CompareTimers(h[i].t, h[j].t) < 0 }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(entry)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// checkTimer rejects timers the group could never fire.
func (g *Group) checkTimer(t processor.RawTimer) error {
	if t.Kind != processor.StreamTime && t.Kind != processor.WallClock {
		return fmt.Errorf("timer %q: unknown kind %d", t.Name, t.Kind)
	}
	if _, ok := g.Timers[t.Name]; !ok {
		return fmt.Errorf("group %q has no timer callback %q", g.Name, t.Name)
	}
	return nil
}
