package state

import (
	"bytes"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Memory is a Store held in memory. Nothing survives Close. The zero value is
// an empty store ready to use.
//
// Rows live in a treap (a binary search tree kept balanced by random node
// priorities) that is copied on write once a snapshot shares it: Iterate
// freezes the current tree by advancing a generation number, and a write
// copies each frozen node on its path instead of changing it. Snapshots thus
// cost O(1) to take, iterators need no lock, and a store nobody iterates is
// updated in place.
type Memory struct {
	mu            sync.RWMutex
	seed          maphash.Seed // makes priorities, hence tree shapes, unpredictable
	seeded        bool
	root          *memNode
	gen           uint64 // nodes of an older generation may be shared with iterators
	frozen        bool   // no node of generation gen is reachable from root
	checkpoint    int64
	hasCheckpoint bool
	closed        atomic.Bool // also read by iterators, which hold no lock
}

type memNode struct {
	key, value  []byte
	prio        uint64
	left, right *memNode
	gen         uint64
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return new(Memory) }

// Get implements Store.
func (m *Memory) Get(key []byte) ([]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed.Load() {
		return nil, false, ErrClosed
	}
	for n := m.root; n != nil; {
		switch c := bytes.Compare(key, n.key); {
		case c < 0:
			n = n.left
		case c > 0:
			n = n.right
		default:
			return append([]byte{}, n.value...), true, nil
		}
	}
	return nil, false, nil
}

// Apply implements Store. Validation happens before the first change, and
// nothing after it can fail, so a batch is applied whole or not at all.
func (m *Memory) Apply(b *Batch) error {
	if err := b.validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	if !m.seeded {
		m.seed, m.seeded = maphash.MakeSeed(), true
	}
	for i := range b.Len() {
		key, value, del := b.op(i)
		if del {
			m.root, _ = m.delete(m.root, key)
		} else {
			m.root = m.insert(m.root, key, value)
		}
		m.frozen = false
	}
	if b.hasCheckpoint {
		m.checkpoint, m.hasCheckpoint = b.checkpoint, true
	}
	return nil
}

// Checkpoint implements Store.
func (m *Memory) Checkpoint() (int64, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed.Load() {
		return 0, false, ErrClosed
	}
	return m.checkpoint, m.hasCheckpoint, nil
}

// Iterate implements Store.
func (m *Memory) Iterate(start, end []byte) Iterator {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return &memIter{err: ErrClosed, done: true}
	}
	if !m.frozen {
		m.gen++
		m.frozen = true
	}
	it := &memIter{m: m}
	if end != nil {
		it.end = append([]byte{}, end...)
	}
	// Push the path to the first key >= start: every node on it where the
	// walk goes left is a key still to visit, in order from the top of the
	// stack.
	for n := m.root; n != nil; {
		if start == nil || bytes.Compare(n.key, start) >= 0 {
			it.stack = append(it.stack, n)
			n = n.left
		} else {
			n = n.right
		}
	}
	return it
}

// Clear implements Store. Iterators keep the snapshot they were opened on.
func (m *Memory) Clear() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	m.root = nil
	m.checkpoint, m.hasCheckpoint = 0, false
	return nil
}

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed.Store(true)
	m.root = nil
	return nil
}

// mutable returns n itself if it belongs to the current generation, else a
// copy that does: a node of an older generation may be part of a snapshot.
func (m *Memory) mutable(n *memNode) *memNode {
	if n.gen == m.gen {
		return n
	}
	c := *n
	c.gen = m.gen
	return &c
}

// insert sets key to a copy of value in the subtree rooted at n and returns
// the subtree's new root, which is always mutable.
func (m *Memory) insert(n *memNode, key, value []byte) *memNode {
	if n == nil {
		// One allocation for key and value; capacities are clipped so that
		// nothing can append from one into the other.
		buf := make([]byte, len(key)+len(value))
		copy(buf, key)
		copy(buf[len(key):], value)
		return &memNode{
			key:   buf[:len(key):len(key)],
			value: buf[len(key):],
			prio:  maphash.Bytes(m.seed, key),
			gen:   m.gen,
		}
	}
	c := bytes.Compare(key, n.key)
	n = m.mutable(n)
	switch {
	case c == 0:
		n.value = append([]byte{}, value...)
	case c < 0:
		n.left = m.insert(n.left, key, value)
		if n.left.prio > n.prio {
			n = rotateRight(n)
		}
	default:
		n.right = m.insert(n.right, key, value)
		if n.right.prio > n.prio {
			n = rotateLeft(n)
		}
	}
	return n
}

// rotateRight lifts n's left child above n. Both must be mutable.
func rotateRight(n *memNode) *memNode {
	l := n.left
	n.left, l.right = l.right, n
	return l
}

// rotateLeft lifts n's right child above n. Both must be mutable.
func rotateLeft(n *memNode) *memNode {
	r := n.right
	n.right, r.left = r.left, n
	return r
}

// delete removes key from the subtree rooted at n and returns the subtree's
// new root. When key is missing nothing is copied and n is returned.
func (m *Memory) delete(n *memNode, key []byte) (*memNode, bool) {
	if n == nil {
		return nil, false
	}
	switch c := bytes.Compare(key, n.key); {
	case c == 0:
		return m.merge(n.left, n.right), true
	case c < 0:
		l, found := m.delete(n.left, key)
		if !found {
			return n, false
		}
		n = m.mutable(n)
		n.left = l
	default:
		r, found := m.delete(n.right, key)
		if !found {
			return n, false
		}
		n = m.mutable(n)
		n.right = r
	}
	return n, true
}

// merge joins two treaps where every key of a is less than every key of b.
func (m *Memory) merge(a, b *memNode) *memNode {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		a = m.mutable(a)
		a.right = m.merge(a.right, b)
		return a
	default:
		b = m.mutable(b)
		b.left = m.merge(a, b.left)
		return b
	}
}

// memIter walks a frozen tree, which no writer changes, without locking.
type memIter struct {
	m          *Memory
	stack      []*memNode
	end        []byte
	key, value []byte
	err        error
	done       bool
}

func (it *memIter) Next() bool {
	if it.done {
		return false
	}
	if it.m.closed.Load() {
		it.stop(ErrClosed)
		return false
	}
	if len(it.stack) == 0 {
		it.stop(nil)
		return false
	}
	n := it.stack[len(it.stack)-1]
	it.stack = it.stack[:len(it.stack)-1]
	if it.end != nil && bytes.Compare(n.key, it.end) >= 0 {
		it.stop(nil)
		return false
	}
	for c := n.right; c != nil; c = c.left {
		it.stack = append(it.stack, c)
	}
	it.key, it.value = n.key, n.value
	return true
}

func (it *memIter) stop(err error) {
	it.done, it.err = true, err
	it.stack, it.key, it.value = nil, nil, nil
}

func (it *memIter) Key() []byte   { return it.key }
func (it *memIter) Value() []byte { return it.value }
func (it *memIter) Err() error    { return it.err }

func (it *memIter) Close() error {
	if !it.done {
		it.stop(nil)
	}
	return nil
}
