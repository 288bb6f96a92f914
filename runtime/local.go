package runtime

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/runnel-io/runnel/state"
)

// localTable is one partition of a changelogged keyed store as a task holds
// it: the group table, or the group's state (windows and timers). Changes
// are made in memory first, where reads see them at once, and reach the
// store in batches at checkpoints instead of one store write per record.
//
// The invariant (DESIGN.md §4): the store is never ahead of its changelog.
// A change reaches the store only in the same batch as a checkpoint offset
// past its changelog record, and only once that record, and every one
// before it, is acknowledged. So changes are kept in epochs: the changes
// since the last seal, tagged with the sequence number of the last
// changelog record sent for them. An epoch goes to the store once the
// producer acknowledged that record and every one before it, with the
// offset after it as the checkpoint. A failed changelog write is sticky:
// no epoch from the failed record on ever reaches the store, so the
// partition restarts from the checkpoint.
//
// Every method is called with the task's procMu held, except flush, which
// the checkpoint calls without it, and acked, which the producer calls.
type localTable struct {
	store state.Store
	topic string // the changelog
	// rows holds the changes since the last seal (nil for a delete).
	rows map[string][]byte
	// sealed holds the older changes not yet in the store, oldest first.
	sealed []*epoch
	// sent is the sequence number the next changelog record gets.
	sent int64
	// cache holds rows as the store has them (nil: known missing), so that
	// hot keys are not read from the store at every record.
	cache map[string][]byte
	// exists, if not nil, holds every key ever set, so that keys never
	// written are known missing without a store read.
	exists *keyFilter

	// ackMu guards what the producer's acknowledgements tell: how many
	// records are acknowledged without a gap, the latest acknowledged
	// record, and the sealed epochs waiting for their last record.
	ackMu sync.Mutex
	// contig is the number of records acknowledged without a gap:
	// every record below it is; ahead holds those acknowledged above it.
	// A record that failed is never acknowledged, so contig stops below
	// it for good.
	contig      int64
	ahead       map[int64]struct{}
	lastAckSeq  int64 // -1 before the first acknowledgement
	lastAckNext int64 // the offset after the record lastAckSeq
	waiting     map[int64]*epoch
}

// epoch is a set of changes sealed together.
type epoch struct {
	rows map[string][]byte
	// last is the sequence number of the last changelog record sent for
	// the epoch's changes.
	last int64
	// next is the changelog offset after record last once it is
	// acknowledged, 0 before. Guarded by the table's ackMu.
	next int64
}

func newLocalTable(st state.Store, topic string) *localTable {
	return &localTable{store: st, topic: topic, rows: map[string][]byte{}, cache: map[string][]byte{},
		ahead: map[int64]struct{}{}, lastAckSeq: -1, waiting: map[int64]*epoch{}}
}

const (
	// maxDirtyRows bounds the row changes a table holds in memory since
	// the last seal.
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
	for i := len(l.sealed) - 1; i >= 0; i-- {
		if v, ok := l.sealed[i].rows[string(key)]; ok {
			return v, v != nil, nil
		}
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

// set records a change (nil deletes). The caller sends its changelog
// record, numbered by sent, before it releases procMu.
func (l *localTable) set(key, value []byte) {
	l.rows[string(key)] = value
	if l.exists != nil && value != nil {
		l.exists.add(key)
	}
}

// acked takes the outcome of changelog record seq. A failure needs no
// bookkeeping: the record stays unacknowledged, which holds every epoch
// from its own on out of the store; the task's tracker reports it.
func (l *localTable) acked(seq, offset int64, err error) {
	if err != nil {
		return
	}
	l.ackMu.Lock()
	defer l.ackMu.Unlock()
	if seq > l.lastAckSeq {
		l.lastAckSeq, l.lastAckNext = seq, offset+1
	}
	if seq != l.contig {
		// Producers acknowledge a partition's records in order, but
		// nothing here depends on it.
		l.ahead[seq] = struct{}{}
	} else {
		l.contig++
		for _, ok := l.ahead[l.contig]; ok; _, ok = l.ahead[l.contig] {
			delete(l.ahead, l.contig)
			l.contig++
		}
	}
	if e := l.waiting[seq]; e != nil {
		e.next = offset + 1
		delete(l.waiting, seq)
	}
}

// seal closes the current changes into an epoch, if there are any: they
// are all covered by the records sent so far.
func (l *localTable) seal() {
	if len(l.rows) == 0 {
		return
	}
	e := &epoch{rows: l.rows, last: l.sent - 1}
	l.rows = map[string][]byte{}
	l.sealed = append(l.sealed, e)
	l.ackMu.Lock()
	if l.lastAckSeq == e.last {
		// Acknowledged already: e.last is the latest record sent, so it
		// is the latest acknowledged too.
		e.next = l.lastAckNext
	} else {
		l.waiting[e.last] = e
	}
	l.ackMu.Unlock()
}

// ready returns the oldest sealed epochs whose changelog records are all
// acknowledged, merged (newer changes win), with the checkpoint offset
// that covers them; n is how many epochs they are.
func (l *localTable) ready() (rows map[string][]byte, next int64, n int) {
	l.ackMu.Lock()
	for _, e := range l.sealed {
		if e.next == 0 || e.last >= l.contig {
			break
		}
		next = e.next
		n++
	}
	l.ackMu.Unlock()
	switch n {
	case 0:
		return nil, 0, 0
	case 1:
		return l.sealed[0].rows, next, 1
	}
	rows = make(map[string][]byte, len(l.sealed[0].rows))
	for _, e := range l.sealed[:n] {
		maps.Copy(rows, e.rows)
	}
	return rows, next, n
}

// written ends a checkpoint of the n oldest epochs, which ready returned
// and flush wrote: their rows are now the store's.
func (l *localTable) written(n int) {
	for _, e := range l.sealed[:n] {
		for k, v := range e.rows {
			l.cacheRow(k, v)
		}
	}
	l.sealed = append(l.sealed[:0], l.sealed[n:]...)
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

// flush writes rows (nil values delete) and the changelog checkpoint next
// in one batch.
func (l *localTable) flush(rows map[string][]byte, next int64) error {
	var b state.Batch
	for k, v := range rows {
		if v == nil {
			b.Delete([]byte(k))
		} else {
			b.Set([]byte(k), v)
		}
	}
	b.SetCheckpoint(next)
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
	ms := make([]map[string][]byte, 0, len(l.sealed)+1)
	for _, e := range l.sealed {
		ms = append(ms, e.rows)
	}
	for _, m := range append(ms, l.rows) {
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
