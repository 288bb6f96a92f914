package runtime

import "hash/maphash"

// keyFilter is a Bloom filter of the keys a local table holds, so that a
// read of a key that was never written (a window's first record, say)
// need not go to the store. It grows by adding filters of the same size as
// it fills: a key may be in any of them.
type keyFilter struct {
	seed    maphash.Seed
	filters [][]uint64 // each filterBits bits
	n       int        // keys added to the last filter
}

const (
	// filterKeys is how many keys one filter takes at about a 1% false
	// positive rate: 10 bits and 7 probes per key.
	filterKeys   = 1 << 16
	filterBits   = filterKeys * 10
	filterProbes = 7
)

func newKeyFilter() *keyFilter {
	return &keyFilter{seed: maphash.MakeSeed()}
}

// probes returns the two hashes whose combinations are the probes.
func (f *keyFilter) probes(key []byte) (uint32, uint32) {
	h := maphash.Bytes(f.seed, key)
	return uint32(h), uint32(h>>32) | 1
}

func (f *keyFilter) add(key []byte) {
	if len(f.filters) == 0 || f.n == filterKeys {
		f.filters = append(f.filters, make([]uint64, filterBits/64))
		f.n = 0
	}
	bits := f.filters[len(f.filters)-1]
	a, b := f.probes(key)
	for i := range uint32(filterProbes) {
		bit := (a + i*b) % filterBits
		bits[bit/64] |= 1 << (bit % 64)
	}
	f.n++
}

// mayContain is false only for keys never added.
func (f *keyFilter) mayContain(key []byte) bool {
	a, b := f.probes(key)
	for _, bits := range f.filters {
		found := true
		for i := range uint32(filterProbes) {
			bit := (a + i*b) % filterBits
			if bits[bit/64]&(1<<(bit%64)) == 0 {
				found = false
				break
			}
		}
		if found {
			return true
		}
	}
	return false
}
