package runtime

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/state"
)

// fillStore writes keys to st, with a checkpoint.
func fillStore(t *testing.T, st state.Store, keys ...[]byte) {
	t.Helper()
	var b state.Batch
	for _, k := range keys {
		b.Set(k, []byte("v"))
	}
	b.SetCheckpoint(1)
	if err := st.Apply(&b); err != nil {
		t.Fatal(err)
	}
}

// settle uses the filter until its build is over.
func settle(f *keyFilter) {
	for f.scan != nil {
		f.mayContain(nil)
	}
}

func numbered(prefix string, from, to int) [][]byte {
	var ks [][]byte
	for i := from; i < to; i++ {
		ks = append(ks, fmt.Appendf(nil, "%s-%d", prefix, i))
	}
	return ks
}

// The filter starts from the store's keys, without reading the store at
// once: until its build is over every key may be present. It never forgets
// a key, in the store or added, through rebuilds, and rejects most keys it
// never saw.
func TestKeyFilterHasNoFalseNegatives(t *testing.T) {
	st := state.NewMemory()
	stored := numbered("stored", 0, 5000)
	fillStore(t, st, stored...)
	f := newKeyFilter(st)
	if !f.mayContain([]byte("never")) {
		t.Fatal("a filter still building reported a key missing")
	}
	// Keys are added, and their rows reach the store every 1000 keys as
	// checkpoints would write them, through several rebuilds.
	added := numbered("added", 0, 3*minFilterKeys)
	rows := map[string][]byte{}
	for i, k := range added {
		f.add(k)
		rows[string(k)] = []byte("v")
		if i == 10 {
			settle(f) // the first build ends with some keys added during it
		}
		if len(rows) == 1000 || i == len(added)-1 {
			var b state.Batch
			for k, v := range rows {
				b.Set([]byte(k), v)
			}
			if err := st.Apply(&b); err != nil {
				t.Fatal(err)
			}
			f.flushed(rows)
			rows = map[string][]byte{}
		}
	}
	for _, k := range append(stored, added...) {
		if !f.mayContain(k) {
			t.Fatalf("%s is in the table but reported missing", k)
		}
	}
	fp := 0
	for _, k := range numbered("other", 0, 10_000) {
		if f.mayContain(k) {
			fp++
		}
	}
	if fp > 500 {
		t.Fatalf("%d of 10000 unknown keys reported present", fp)
	}
}

// Once the keys added fill the filter, it is rebuilt from the store: the
// keys deleted from the store meanwhile go, its size stays bounded, and a
// key whose row reached the store after the rebuild's scan began is kept.
func TestKeyFilterIsRebuiltBounded(t *testing.T) {
	st := state.NewMemory()
	fillStore(t, st, numbered("base", 0, 1000)...)
	f := newKeyFilter(st)
	settle(f)
	// late is a row still waiting for its changelog record when the
	// rebuild begins; the rows of gone are deleted before they reach the
	// store.
	late := []byte("late")
	f.add(late)
	var gone [][]byte
	for _, k := range numbered("gone", 0, minFilterKeys) {
		gone = append(gone, k)
		if f.add(k); f.scan != nil {
			break
		}
	}
	if f.scan == nil {
		t.Fatal("a full filter did not start a rebuild")
	}
	fillStore(t, st, late)
	f.flushed(map[string][]byte{string(late): []byte("v"), "deleted": nil})
	settle(f)
	if n := len(f.cur.bits) * 64; n != minFilterKeys*filterBitsPerKey {
		t.Fatalf("rebuilt filter has %d bits, want %d", n, minFilterKeys*filterBitsPerKey)
	}
	if !f.mayContain(late) {
		t.Fatal("a row written during the rebuild is reported missing")
	}
	kept := 0
	for _, k := range gone {
		if f.mayContain(k) {
			kept++
		}
	}
	if kept > minFilterKeys/20 {
		t.Fatalf("%d of %d deleted keys still reported present after the rebuild", kept, len(gone))
	}
}

// A table with more keys than a filter takes has none (every read goes to
// the store) until as many keys more have been added.
func TestKeyFilterGivesUpOnHugeTables(t *testing.T) {
	st := state.NewMemory()
	var b state.Batch
	for i := range maxFilterKeys + 1 {
		b.Set(binary.BigEndian.AppendUint32(nil, uint32(i)), nil)
	}
	if err := st.Apply(&b); err != nil {
		t.Fatal(err)
	}
	f := newKeyFilter(st)
	settle(f)
	if f.cur != nil || f.tooMany == 0 || !f.mayContain([]byte("never")) {
		t.Fatalf("a table of %d keys has a filter", maxFilterKeys+1)
	}
	for i := range f.tooMany - 1 {
		f.add(binary.BigEndian.AppendUint32(nil, uint32(i)))
	}
	if f.scan != nil {
		t.Fatal("a build began before enough keys were added")
	}
	f.add([]byte("one more"))
	if f.scan == nil {
		t.Fatal("no build began after enough keys were added")
	}
}

// countingStore counts the entries iterators read.
type countingStore struct {
	state.Store
	read *int
}

func (s countingStore) Iterate(start, end []byte) state.Iterator {
	return countingIter{s.Store.Iterate(start, end), s.read}
}

type countingIter struct {
	state.Iterator
	read *int
}

func (it countingIter) Next() bool {
	ok := it.Iterator.Next()
	if ok {
		*it.read++
	}
	return ok
}

// loadState reads the timers and the stream time, not the whole state.
func TestLoadStateReadsOnlyTimers(t *testing.T) {
	mem := state.NewMemory()
	var b state.Batch
	for _, k := range numbered("window", 0, 1000) {
		b.Set(dataKey(k), []byte("v"))
	}
	tm := processor.RawTimer{Name: "t", Kind: processor.StreamTime, At: time.Unix(100, 0), Key: []byte("k")}
	b.Set(timerKey(tm), nil)
	at := time.Unix(200, 0)
	b.Set(streamTimeKey, binary.BigEndian.AppendUint64(nil, processor.OrderedTime(at)))
	if err := mem.Apply(&b); err != nil {
		t.Fatal(err)
	}
	read := 0
	_, timers, stream, err := loadState(countingStore{mem, &read})
	if err != nil {
		t.Fatal(err)
	}
	if len(timers) != 1 || timers[0].Name != "t" || !stream.Equal(at) {
		t.Fatalf("loaded timers %v, stream time %v", timers, stream)
	}
	if read != 1 {
		t.Fatalf("loading read %d entries of the store, want the 1 timer", read)
	}
}

// Timer keys sort in firing order: by clock, then time (before 1970 too),
// then name and key; and they parse back to the timer.
func TestTimerKeysSortInFiringOrder(t *testing.T) {
	base := time.Date(1969, 12, 31, 23, 59, 0, 0, time.UTC)
	timers := []processor.RawTimer{
		{Name: "b", Kind: processor.StreamTime, At: base, Key: []byte("k")},
		{Name: "a", Kind: processor.StreamTime, At: base.Add(time.Minute), Key: []byte("z")},
		{Name: "a", Kind: processor.StreamTime, At: base.Add(2 * time.Minute), Key: []byte("a")},
		{Name: "a", Kind: processor.StreamTime, At: base.Add(2 * time.Minute), Key: []byte("b")},
		{Name: "a", Kind: processor.WallClock, At: base, Key: nil},
	}
	for i, tm := range timers {
		k := timerKey(tm)
		got, err := parseTimerKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != tm.Name || got.Kind != tm.Kind || !got.At.Equal(tm.At) || string(got.Key) != string(tm.Key) {
			t.Fatalf("timer %d parsed back as %+v, want %+v", i, got, tm)
		}
		if i > 0 && string(timerKey(timers[i-1])) >= string(k) {
			t.Fatalf("timer %d does not sort after timer %d", i, i-1)
		}
	}
	if _, err := parseTimerKey([]byte{stateTimer, 9}); err == nil {
		t.Fatal("a truncated timer key parsed")
	}
}
