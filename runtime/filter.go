package runtime

import (
	"hash/maphash"

	"github.com/runnel-io/runnel/state"
)

// keyFilter is a Bloom filter of the keys a local table holds, so that a
// read of a key that was never written (a window's first record, say)
// need not go to the store.
//
// It is bounded: it is sized for twice the keys the store held when it was
// built, at about 1% false positives, and at most maxFilterKeys. Keys
// added since then fill it; once they have filled it, it is rebuilt from
// the store, which by then has dropped the rows deleted since (windows
// expire), and from the keys added during the rebuild. The old filter
// answers until the new one is ready.
//
// A rebuild must not lose a key whose row was waiting for its changelog
// acknowledgement when the scan began, and reached the store after the
// scan's snapshot: the checkpoint tells the filter of every row it writes
// (flushed), and those keys join the filter being built.
//
// Building it never holds up the partition: the store is scanned a few
// keys at a time, by the calls that use the filter, between records. The
// first build starts when the filter is made; until it ends, every key
// may be present, and reads go to the store. A table with more than
// maxFilterKeys keys has no filter (its reads go to the store) until it
// has had as many more keys added, when another build looks again.
//
// Every method is called by the task holding its procMu: there is no lock.
type keyFilter struct {
	store state.Store
	seed  maphash.Seed
	// cur is the filter in use: every key in the store or added since its
	// build is in it. nil before the first build ends, or while the table
	// is too large to filter.
	cur *bloom
	// The build in progress, if scan is not nil: the hashes of the keys
	// scanned so far and of those added meanwhile.
	scan   state.Iterator
	hashes []uint64
	// added counts the keys added since the last build ended (or gave up).
	added int
	// tooMany is the key count a build last gave up at, 0 if none did.
	tooMany int
}

const (
	// filterBitsPerKey and filterProbes give about 1% false positives.
	filterBitsPerKey = 10
	filterProbes     = 7
	// minFilterKeys and maxFilterKeys bound the keys a filter is sized
	// for: 80 KiB to 5 MiB of bits, and up to 32 MiB of hashes while a
	// build runs.
	minFilterKeys = 1 << 16
	maxFilterKeys = 1 << 22
	// filterScanStep is how many keys of the store each use of the filter
	// scans while a build runs.
	filterScanStep = 32
)

// newKeyFilter returns a filter of st's keys, whose first build starts
// now.
func newKeyFilter(st state.Store) *keyFilter {
	f := &keyFilter{store: st, seed: maphash.MakeSeed()}
	f.startBuild()
	return f
}

func (f *keyFilter) hash(key []byte) uint64 { return maphash.Bytes(f.seed, key) }

// add records that key is in the table now.
func (f *keyFilter) add(key []byte) {
	h := f.hash(key)
	if f.cur != nil {
		f.cur.add(h)
	}
	if f.scan != nil {
		f.hashes = append(f.hashes, h)
	}
	f.added++
	f.step()
}

// mayContain is false only for keys neither in the store when the filter
// was built nor added since.
func (f *keyFilter) mayContain(key []byte) bool {
	f.step()
	return f.cur == nil || f.cur.mayContain(f.hash(key))
}

// flushed takes the rows a checkpoint has just written to the store (nil
// values are deletes): a build in progress learns the keys its scan may
// have missed, and the filter in use the ones it lacks for the same
// reason since its own build. Adding a key again is harmless.
func (f *keyFilter) flushed(rows map[string][]byte) {
	for k, v := range rows {
		if v == nil {
			continue
		}
		h := maphash.String(f.seed, k)
		if f.cur != nil {
			f.cur.set(h)
		}
		if f.scan != nil {
			f.hashes = append(f.hashes, h)
		}
	}
}

// step moves a build on, or starts one when the filter is full.
func (f *keyFilter) step() {
	switch {
	case f.scan != nil:
		f.scanSome()
	case f.cur != nil && f.cur.n >= f.cur.capacity:
		f.startBuild()
	case f.cur == nil && f.tooMany > 0 && f.added >= f.tooMany:
		f.startBuild()
	}
}

func (f *keyFilter) startBuild() {
	f.scan = f.store.Iterate(nil, nil)
	f.hashes = f.hashes[:0]
}

// scanSome adds the next keys of the scan, and ends the build at the end
// of the store: the new filter replaces the old.
func (f *keyFilter) scanSome() {
	for range filterScanStep {
		if !f.scan.Next() {
			err := f.scan.Err()
			f.scan.Close()
			f.scan = nil
			if err != nil {
				// The store failed or closed: its reads will say so.
				// Keep the old filter and try again once it is full.
				f.hashes = f.hashes[:0]
				return
			}
			f.finishBuild()
			return
		}
		f.hashes = append(f.hashes, f.hash(f.scan.Key()))
		if len(f.hashes) > maxFilterKeys {
			f.scan.Close()
			f.scan = nil
			f.cur, f.tooMany, f.added = nil, len(f.hashes), 0
			f.hashes = nil
			return
		}
	}
}

func (f *keyFilter) finishBuild() {
	b := newBloom(min(max(2*len(f.hashes), minFilterKeys), maxFilterKeys))
	for _, h := range f.hashes {
		b.add(h)
	}
	f.cur, f.tooMany, f.added = b, 0, 0
	if cap(f.hashes) > 4*minFilterKeys {
		f.hashes = nil // a large build's memory goes
	} else {
		f.hashes = f.hashes[:0]
	}
}

// bloom is a Bloom filter over 64-bit hashes of keys, sized for capacity
// keys; n counts the hashes added.
type bloom struct {
	bits        []uint64
	nbits       uint32
	capacity, n int
}

func newBloom(capacity int) *bloom {
	nbits := uint32(capacity * filterBitsPerKey)
	return &bloom{bits: make([]uint64, (nbits+63)/64), nbits: nbits, capacity: capacity}
}

// add adds a key that counts against the capacity.
func (b *bloom) add(h uint64) {
	b.set(h)
	b.n++
}

// set sets a key's bits without counting it: for keys that are most
// likely in already.
func (b *bloom) set(h uint64) {
	x, y := uint32(h), uint32(h>>32)|1
	for i := range uint32(filterProbes) {
		bit := (x + i*y) % b.nbits
		b.bits[bit/64] |= 1 << (bit % 64)
	}
}

func (b *bloom) mayContain(h uint64) bool {
	x, y := uint32(h), uint32(h>>32)|1
	for i := range uint32(filterProbes) {
		bit := (x + i*y) % b.nbits
		if b.bits[bit/64]&(1<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}
