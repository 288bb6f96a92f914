package runtime

import (
	"bytes"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/runnel-io/runnel/state"
)

// localTable is one partition of a changelogged keyed store as a task holds
// it: the group table, or the group's state (windows and timers). Changes
// are made in memory first, where reads see them at once, and reach the
// store in one batch at each checkpoint, together with how far the
// changelog is acknowledged, instead of one store write per record.
//
// Every method but those on clNext is called with the task's procMu held,
// except flush, which the checkpoint calls without it between swap and
// finish.
type localTable struct {
	store state.Store
	topic string // the changelog
	// rows holds the changes since the last checkpoint (nil for a delete).
	// flushing holds the batch being written meanwhile.
	rows, flushing map[string][]byte
	// cache holds rows as the store has them (nil: known missing), so that
	// hot keys are not read from the store at every record.
	cache map[string][]byte
	// clNext is the changelog offset after the last acknowledged write:
	// the store's checkpoint may move up to it.
	clNext atomic.Int64
	// exists, if not nil, holds every key ever set, so that keys never
	// written are known missing without a store read.
	exists *keyFilter
}

func newLocalTable(st state.Store, topic string) *localTable {
	return &localTable{store: st, topic: topic, rows: map[string][]byte{}, cache: map[string][]byte{}}
}

const (
	// maxDirtyRows bounds the row changes a table holds in memory between
	// checkpoints.
	maxDirtyRows = 50_000
	// maxCachedRows bounds the rows a table keeps as the store has them.
	maxCachedRows = 100_000
)

// get returns the current value of a key: a change not yet in the store,
// else the store's.
func (l *localTable) get(key []byte) ([]byte, bool, error) {
	if v, ok := l.rows[string(key)]; ok {
		return v, v != nil, nil
	}
	if v, ok := l.flushing[string(key)]; ok {
		return v, v != nil, nil
	}
	if v, ok := l.cache[string(key)]; ok {
		return v, v != nil, nil
	}
	if l.exists != nil && !l.exists.mayContain(key) {
		return nil, false, nil
	}
	v, ok, err := l.store.Get(key)
	if err == nil {
		l.cacheRow(string(key), v)
	}
	return v, ok, err
}

// set records a change (nil deletes); the store gets it at the next
// checkpoint, or now if too many changes are waiting.
func (l *localTable) set(key, value []byte) error {
	l.rows[string(key)] = value
	if l.exists != nil && value != nil {
		l.exists.add(key)
	}
	if len(l.rows) < maxDirtyRows {
		return nil
	}
	rows := l.rows
	l.rows = map[string][]byte{}
	return l.flush(rows, l.clNext.Load())
}

// cacheRow remembers a row as the store holds it. The cache is bounded by
// dropping it whole when full: simpler than an LRU, and a hot key is back
// at its next read.
func (l *localTable) cacheRow(k string, v []byte) {
	if len(l.cache) >= maxCachedRows {
		clear(l.cache)
	}
	l.cache[k] = v
}

// swap takes the changes to checkpoint, and the changelog offset they are
// covered by: read after the swap, every write acknowledged so far belongs
// to a change taken (or already in the store).
func (l *localTable) swap() map[string][]byte {
	rows := l.rows
	l.rows, l.flushing = map[string][]byte{}, rows
	return rows
}

// finish ends a checkpoint begun by swap.
func (l *localTable) finish(rows map[string][]byte, err error) {
	l.flushing = nil
	if err == nil {
		for k, v := range rows {
			l.cacheRow(k, v)
		}
	}
}

// flush writes rows (nil values delete) and, if next > 0, the changelog
// checkpoint next, in one batch.
func (l *localTable) flush(rows map[string][]byte, next int64) error {
	if len(rows) == 0 && next <= 0 {
		return nil
	}
	var b state.Batch
	for k, v := range rows {
		if v == nil {
			b.Delete([]byte(k))
		} else {
			b.Set([]byte(k), v)
		}
	}
	if next > 0 {
		b.SetCheckpoint(next)
	}
	if err := l.store.Apply(&b); err != nil {
		return fmt.Errorf("%w: write %s: %w", errInstance, l.topic, err)
	}
	return nil
}

// scan calls fn for every key beginning with prefix, in order, with the
// changes not yet in the store applied. It stops at fn's first error.
func (l *localTable) scan(prefix []byte, fn func(key, value []byte) error) error {
	// The pending changes under prefix, latest first, sorted.
	overlay := map[string][]byte{}
	for _, m := range []map[string][]byte{l.flushing, l.rows} {
		for k, v := range m {
			if bytes.HasPrefix([]byte(k), prefix) {
				overlay[k] = v
			}
		}
	}
	pending := make([]string, 0, len(overlay))
	for k := range overlay {
		pending = append(pending, k)
	}
	slices.Sort(pending)
	drain := func(below []byte) error {
		for len(pending) > 0 && (below == nil || pending[0] < string(below)) {
			k := pending[0]
			pending = pending[1:]
			if v := overlay[k]; v != nil {
				if err := fn([]byte(k), v); err != nil {
					return err
				}
			}
		}
		return nil
	}
	it := l.store.Iterate(prefix, prefixEnd(prefix))
	defer it.Close()
	for it.Next() {
		k := it.Key()
		if err := drain(k); err != nil {
			return err
		}
		if _, changed := overlay[string(k)]; changed {
			// Still pending: the next drain passes its new value on, in
			// order, or drops it if deleted.
			continue
		}
		if err := fn(k, it.Value()); err != nil {
			return err
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%w: scan %s: %w", errInstance, l.topic, err)
	}
	return drain(nil)
}

// prefixEnd returns the first key after every key beginning with prefix,
// nil if there is none (prefix is empty or all 0xff).
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
