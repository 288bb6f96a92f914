package state

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testStore is the contract every Store implementation must meet. open
// returns a new, empty store that the test may close; open must arrange its
// own cleanup.
func testStore(t *testing.T, open func(t *testing.T) Store) {
	t.Run("GetSetDelete", func(t *testing.T) { testGetSetDelete(t, open(t)) })
	t.Run("EmptyValueAndEmptyKey", func(t *testing.T) { testEmpty(t, open(t)) })
	t.Run("BatchOrder", func(t *testing.T) { testBatchOrder(t, open(t)) })
	t.Run("BatchCopies", func(t *testing.T) { testBatchCopies(t, open(t)) })
	t.Run("BatchAllAtOnce", func(t *testing.T) { testBatchAllAtOnce(t, open(t)) })
	t.Run("RejectedBatchLeavesNothing", func(t *testing.T) { testRejectedBatch(t, open(t)) })
	t.Run("Checkpoint", func(t *testing.T) { testCheckpoint(t, open(t)) })
	t.Run("CheckpointNotIterated", func(t *testing.T) { testCheckpointNotIterated(t, open(t)) })
	t.Run("IterateOrderAndBounds", func(t *testing.T) { testIterateBounds(t, open(t)) })
	t.Run("IterateSnapshot", func(t *testing.T) { testIterateSnapshot(t, open(t)) })
	t.Run("AgainstModel", func(t *testing.T) { testAgainstModel(t, open(t)) })
	t.Run("Clear", func(t *testing.T) { testClear(t, open(t)) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, open(t)) })
	t.Run("CloseStopsIterators", func(t *testing.T) { testCloseStopsIterators(t, open(t)) })
	t.Run("CloseDuringUse", func(t *testing.T) { testCloseDuringUse(t, open(t)) })
}

func TestMemoryZeroValue(t *testing.T) {
	var m Memory
	apply(t, &m, func(b *Batch) { b.Set([]byte("a"), []byte("1")) })
	wantValue(t, &m, "a", "1")
}

func TestMemory(t *testing.T) {
	testStore(t, func(t *testing.T) Store {
		s := NewMemory()
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// apply applies a batch built by fill, failing the test on error.
func apply(t testing.TB, s Store, fill func(b *Batch)) {
	t.Helper()
	var b Batch
	fill(&b)
	if err := s.Apply(&b); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// mustGet returns the value of key, or nil if it is missing.
func mustGet(t testing.TB, s Store, key string) []byte {
	t.Helper()
	v, ok, err := s.Get([]byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !ok {
		if v != nil {
			t.Fatalf("Get(%q) = %q, missing: want a nil value", key, v)
		}
		return nil
	}
	if v == nil {
		t.Fatalf("Get(%q): present with a nil value", key)
	}
	return v
}

func wantValue(t testing.TB, s Store, key, want string) {
	t.Helper()
	if got := mustGet(t, s, key); got == nil || string(got) != want {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
}

func wantMissing(t testing.TB, s Store, key string) {
	t.Helper()
	if got := mustGet(t, s, key); got != nil {
		t.Fatalf("Get(%q) = %q, want missing", key, got)
	}
}

func wantCheckpoint(t testing.TB, s Store, want int64, wantOK bool) {
	t.Helper()
	off, ok, err := s.Checkpoint()
	if err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	if ok != wantOK || (ok && off != want) {
		t.Fatalf("Checkpoint = %d, %v; want %d, %v", off, ok, want, wantOK)
	}
}

type kv struct{ k, v string }

// scan returns the entries of s in [start, end), checking their order.
func scan(t testing.TB, s Store, start, end []byte) []kv {
	t.Helper()
	it := s.Iterate(start, end)
	defer it.Close()
	var out []kv
	for it.Next() {
		if it.Value() == nil {
			t.Fatalf("Iterate: nil value for key %q", it.Key())
		}
		if n := len(out); n > 0 && out[n-1].k >= string(it.Key()) {
			t.Fatalf("Iterate: key %q after %q", it.Key(), out[n-1].k)
		}
		out = append(out, kv{string(it.Key()), string(it.Value())})
	}
	if err := it.Err(); err != nil {
		t.Fatalf("Iterate: %v", err)
	}
	if it.Next() {
		t.Fatal("Iterate: Next true after the end")
	}
	return out
}

func keysOf(kvs []kv) []string {
	keys := make([]string, 0, len(kvs))
	for _, e := range kvs {
		keys = append(keys, e.k)
	}
	return keys
}

func testGetSetDelete(t *testing.T, s Store) {
	wantMissing(t, s, "a")
	apply(t, s, func(b *Batch) { b.Set([]byte("a"), []byte("1")) })
	wantValue(t, s, "a", "1")
	apply(t, s, func(b *Batch) { b.Set([]byte("a"), []byte("22")) })
	wantValue(t, s, "a", "22")

	// The caller owns what Get returns.
	v := mustGet(t, s, "a")
	v[0] = 'x'
	wantValue(t, s, "a", "22")

	apply(t, s, func(b *Batch) { b.Delete([]byte("a")) })
	wantMissing(t, s, "a")
	apply(t, s, func(b *Batch) { b.Delete([]byte("never-there")) })
	wantMissing(t, s, "never-there")

	// An empty batch is a no-op, not an error.
	apply(t, s, func(*Batch) {})
}

func testEmpty(t *testing.T, s Store) {
	apply(t, s, func(b *Batch) {
		b.Set([]byte("nil"), nil)
		b.Set([]byte("empty"), []byte{})
		b.Set(nil, []byte("empty key"))
	})
	wantValue(t, s, "nil", "")
	wantValue(t, s, "empty", "")
	wantMissing(t, s, "missing")
	wantValue(t, s, "", "empty key")
	got := scan(t, s, nil, nil)
	want := []kv{{"", "empty key"}, {"empty", ""}, {"nil", ""}}
	if !slices.Equal(got, want) {
		t.Fatalf("Iterate = %q, want %q", got, want)
	}
	apply(t, s, func(b *Batch) { b.Delete([]byte{}) })
	wantMissing(t, s, "")
}

func testBatchOrder(t *testing.T, s Store) {
	var b Batch
	b.Set([]byte("k"), []byte("1"))
	b.Delete([]byte("k"))
	b.Set([]byte("k"), []byte("3"))
	b.Set([]byte("gone"), []byte("1"))
	b.Delete([]byte("gone"))
	b.SetCheckpoint(1)
	b.SetCheckpoint(7) // the last checkpoint wins too
	if b.Len() != 5 {
		t.Fatalf("Len = %d, want 5", b.Len())
	}
	if err := s.Apply(&b); err != nil {
		t.Fatal(err)
	}
	wantValue(t, s, "k", "3")
	wantMissing(t, s, "gone")
	wantCheckpoint(t, s, 7, true)

	// Apply keeps no hold on the batch, and a reset batch carries nothing
	// over, the checkpoint included.
	b.Reset()
	if b.Len() != 0 {
		t.Fatalf("Len after Reset = %d", b.Len())
	}
	b.Set([]byte("after"), []byte("reset"))
	if err := s.Apply(&b); err != nil {
		t.Fatal(err)
	}
	wantValue(t, s, "k", "3")
	wantValue(t, s, "after", "reset")
	wantCheckpoint(t, s, 7, true)
}

func testBatchCopies(t *testing.T, s Store) {
	var b Batch
	key, value := []byte("key"), []byte("value")
	b.Set(key, value)
	copy(key, "XXX")
	copy(value, "XXXXX")
	if err := s.Apply(&b); err != nil {
		t.Fatal(err)
	}
	wantValue(t, s, "key", "value")
	wantMissing(t, s, "XXX")

	// The store keeps no hold on the batch's buffer either.
	b.Reset()
	b.Set([]byte("zzz"), []byte("zzzzz"))
	wantValue(t, s, "key", "value")
}

// testBatchAllAtOnce applies batches that set every key of a group to the
// batch's number while readers take snapshots: a snapshot showing two
// numbers saw half a batch.
func testBatchAllAtOnce(t *testing.T, s Store) {
	const keys, batches = 100, 200
	var wg sync.WaitGroup
	done := make(chan struct{})
	errc := make(chan error, 4)
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				it := s.Iterate(nil, nil)
				n, first := 0, ""
				for it.Next() {
					if n == 0 {
						first = string(it.Value())
					} else if string(it.Value()) != first {
						errc <- fmt.Errorf("snapshot mixes batches: %q=%q, first=%q", it.Key(), it.Value(), first)
						it.Close()
						return
					}
					n++
				}
				it.Close()
				if err := it.Err(); err != nil {
					errc <- err
					return
				}
				if n != 0 && n != keys {
					errc <- fmt.Errorf("snapshot has %d keys, want 0 or %d", n, keys)
					return
				}
			}
		})
	}
	var b Batch
	for i := range batches {
		b.Reset()
		for k := range keys {
			b.Set(fmt.Appendf(nil, "k%03d", k), fmt.Appendf(nil, "%d", i))
		}
		b.SetCheckpoint(int64(i))
		if err := s.Apply(&b); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

func testRejectedBatch(t *testing.T, s Store) {
	apply(t, s, func(b *Batch) {
		b.Set([]byte("old"), []byte("1"))
		b.SetCheckpoint(10)
	})
	var b Batch
	for i := range 50 {
		b.Set(fmt.Appendf(nil, "new%d", i), []byte("x"))
	}
	b.Delete([]byte("old"))
	b.SetCheckpoint(-1)
	if err := s.Apply(&b); !errors.Is(err, errNegativeCheckpoint) {
		t.Fatalf("Apply with a negative checkpoint: %v", err)
	}
	wantValue(t, s, "old", "1")
	if got := scan(t, s, nil, nil); len(got) != 1 {
		t.Fatalf("after a rejected batch: %q", got)
	}
	wantCheckpoint(t, s, 10, true)
}

func testCheckpoint(t *testing.T, s Store) {
	wantCheckpoint(t, s, 0, false)
	apply(t, s, func(b *Batch) { b.SetCheckpoint(0) }) // zero is a checkpoint
	wantCheckpoint(t, s, 0, true)
	apply(t, s, func(b *Batch) {
		b.Set([]byte("a"), []byte("1"))
		b.SetCheckpoint(42)
	})
	wantCheckpoint(t, s, 42, true)
	apply(t, s, func(b *Batch) { b.Set([]byte("b"), []byte("2")) })
	wantCheckpoint(t, s, 42, true) // a batch without a checkpoint keeps it
	apply(t, s, func(b *Batch) { b.SetCheckpoint(1<<63 - 1) })
	wantCheckpoint(t, s, 1<<63-1, true)
	// The checkpoint may go back: the runtime decides, the store records.
	apply(t, s, func(b *Batch) { b.SetCheckpoint(5) })
	wantCheckpoint(t, s, 5, true)
}

func testCheckpointNotIterated(t *testing.T, s Store) {
	apply(t, s, func(b *Batch) {
		b.Set([]byte("a"), []byte("1"))
		b.SetCheckpoint(9)
	})
	// User keys that look like a store's bookkeeping are plain rows.
	apply(t, s, func(b *Batch) {
		b.Set([]byte("\x00checkpoint"), []byte("not a checkpoint"))
		b.Set([]byte("\x00format"), []byte("?"))
		b.Set([]byte("\x00clearing"), nil)
	})
	wantCheckpoint(t, s, 9, true)
	got := keysOf(scan(t, s, nil, nil))
	want := []string{"\x00checkpoint", "\x00clearing", "\x00format", "a"}
	if !slices.Equal(got, want) {
		t.Fatalf("Iterate keys = %q, want %q", got, want)
	}
	apply(t, s, func(b *Batch) { b.Delete([]byte("\x00checkpoint")) })
	wantCheckpoint(t, s, 9, true)
}

func testIterateBounds(t *testing.T, s Store) {
	all := []string{"", "\x00", "\x00\x00", "\x00\xff", "\x01", "a", "ab", "abc", "b", "\xfe", "\xff", "\xff\x00", "\xff\xff"}
	shuffled := slices.Clone(all)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	apply(t, s, func(b *Batch) {
		for _, k := range shuffled {
			b.Set([]byte(k), []byte("v"+k))
		}
	})
	for _, e := range scan(t, s, nil, nil) {
		if e.v != "v"+e.k {
			t.Fatalf("key %q has value %q", e.k, e.v)
		}
	}
	b := func(s string) []byte { return []byte(s) }
	for _, tc := range []struct {
		start, end []byte
		want       []string
	}{
		{nil, nil, all},
		{b(""), nil, all},
		{nil, b(""), nil},
		{b("a"), b("b"), []string{"a", "ab", "abc"}},
		{b("ab"), b("abc"), []string{"ab"}},
		{b("ab"), b("ab\x00"), []string{"ab"}},
		{b("aa"), b("abd"), []string{"ab", "abc"}},
		{nil, b("\x00\x00"), []string{"", "\x00"}},
		{b("\x00"), b("\x01"), []string{"\x00", "\x00\x00", "\x00\xff"}},
		{b("\xff"), nil, []string{"\xff", "\xff\x00", "\xff\xff"}},
		{b("\xff\xff\x00"), nil, nil},
		{b("b"), b("a"), nil},
		{b("ab"), b("ab"), nil},
	} {
		got := keysOf(scan(t, s, tc.start, tc.end))
		if !slices.Equal(got, tc.want) {
			t.Errorf("Iterate(%q, %q) = %q, want %q", tc.start, tc.end, got, tc.want)
		}
	}
}

func testIterateSnapshot(t *testing.T, s Store) {
	apply(t, s, func(b *Batch) {
		for i := range 10 {
			b.Set(fmt.Appendf(nil, "k%d", i), []byte("old"))
		}
	})
	it := s.Iterate(nil, nil)
	defer it.Close()
	if !it.Next() || string(it.Key()) != "k0" {
		t.Fatalf("first key %q, err %v", it.Key(), it.Err())
	}
	// Write around the iterator: delete what it has yet to visit, change
	// values, add keys before and after it, and finally clear the store.
	apply(t, s, func(b *Batch) {
		b.Delete([]byte("k5"))
		b.Set([]byte("k3"), []byte("new"))
		b.Set([]byte("k35"), []byte("new"))
		b.Set([]byte("a"), []byte("new"))
		b.Set([]byte("z"), []byte("new"))
	})
	for i := range 200 { // enough to make both stores restructure
		apply(t, s, func(b *Batch) { b.Set(fmt.Appendf(nil, "k4-%03d", i), []byte("new")) })
	}
	if err := s.Clear(); err != nil {
		t.Fatal(err)
	}
	got := []string{string(it.Key())}
	for it.Next() {
		if string(it.Value()) != "old" {
			t.Errorf("snapshot sees %q=%q", it.Key(), it.Value())
		}
		got = append(got, string(it.Key()))
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"}
	if !slices.Equal(got, want) {
		t.Fatalf("snapshot keys = %q, want %q", got, want)
	}
	if got := scan(t, s, nil, nil); len(got) != 0 {
		t.Fatalf("after Clear a new iterator sees %q", got)
	}
}

// testAgainstModel applies random batches and compares the store with a map.
func testAgainstModel(t *testing.T, s Store) {
	r := rand.New(rand.NewPCG(1, 2))
	model := map[string]string{}
	key := func() []byte {
		k := make([]byte, r.IntN(4))
		for i := range k {
			k[i] = []byte{0x00, 0x01, 'a', 'b', 0xff}[r.IntN(5)]
		}
		return k
	}
	var b Batch
	var snapshots []struct {
		it   Iterator
		want []kv
	}
	for round := range 300 {
		b.Reset()
		for range r.IntN(20) {
			k := key()
			if r.IntN(3) == 0 {
				b.Delete(k)
				delete(model, string(k))
			} else {
				v := fmt.Sprint(round, r.Uint32())
				b.Set(k, []byte(v))
				model[string(k)] = v
			}
		}
		if err := s.Apply(&b); err != nil {
			t.Fatal(err)
		}
		start, end := key(), key()
		if r.IntN(4) == 0 {
			start = nil
		}
		if r.IntN(4) == 0 {
			end = nil
		}
		var want []kv
		for k, v := range model {
			if (start == nil || k >= string(start)) && (end == nil || k < string(end)) {
				want = append(want, kv{k, v})
			}
		}
		slices.SortFunc(want, func(a, b kv) int { return bytes.Compare([]byte(a.k), []byte(b.k)) })
		if got := scan(t, s, start, end); !slices.Equal(got, want) {
			t.Fatalf("round %d: Iterate(%q, %q) = %q, want %q", round, start, end, got, want)
		}
		for range 5 {
			k := key()
			v, ok := model[string(k)]
			got := mustGet(t, s, string(k))
			if ok != (got != nil) || string(got) != v {
				t.Fatalf("round %d: Get(%q) = %q, want %q (present %v)", round, k, got, v, ok)
			}
		}
		if round%50 == 0 { // iterators left open while the store changes
			snapshots = append(snapshots, struct {
				it   Iterator
				want []kv
			}{s.Iterate(start, end), want})
		}
	}
	for i, snap := range snapshots {
		var got []kv
		for snap.it.Next() {
			got = append(got, kv{string(snap.it.Key()), string(snap.it.Value())})
		}
		if err := snap.it.Err(); err != nil {
			t.Fatal(err)
		}
		snap.it.Close()
		if !slices.Equal(got, snap.want) {
			t.Fatalf("snapshot %d = %q, want %q", i, got, snap.want)
		}
	}
}

func testClear(t *testing.T, s Store) {
	apply(t, s, func(b *Batch) {
		for i := range 100 {
			b.Set(fmt.Appendf(nil, "k%d", i), []byte("v"))
		}
		b.SetCheckpoint(100)
	})
	if err := s.Clear(); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, s, "k1")
	wantCheckpoint(t, s, 0, false)
	if got := scan(t, s, nil, nil); len(got) != 0 {
		t.Fatalf("after Clear: %q", got)
	}
	if err := s.Clear(); err != nil { // clearing an empty store is fine
		t.Fatal(err)
	}
	apply(t, s, func(b *Batch) {
		b.Set([]byte("k1"), []byte("again"))
		b.SetCheckpoint(3)
	})
	wantValue(t, s, "k1", "again")
	wantCheckpoint(t, s, 3, true)
}

func testClosed(t *testing.T, s Store) {
	apply(t, s, func(b *Batch) { b.Set([]byte("a"), []byte("1")) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get([]byte("a")); !errors.Is(err, ErrClosed) {
		t.Errorf("Get: %v", err)
	}
	var b Batch
	b.Set([]byte("b"), []byte("2"))
	if err := s.Apply(&b); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply: %v", err)
	}
	if _, _, err := s.Checkpoint(); !errors.Is(err, ErrClosed) {
		t.Errorf("Checkpoint: %v", err)
	}
	if err := s.Clear(); !errors.Is(err, ErrClosed) {
		t.Errorf("Clear: %v", err)
	}
	it := s.Iterate(nil, nil)
	if it.Next() || !errors.Is(it.Err(), ErrClosed) {
		t.Errorf("Iterate: Next true or Err %v", it.Err())
	}
	if err := it.Close(); err != nil {
		t.Errorf("Iterator.Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func testCloseStopsIterators(t *testing.T, s Store) {
	apply(t, s, func(b *Batch) {
		b.Set([]byte("a"), []byte("1"))
		b.Set([]byte("b"), []byte("2"))
	})
	open := s.Iterate(nil, nil)
	if !open.Next() {
		t.Fatal(open.Err())
	}
	finished := s.Iterate(nil, nil)
	for finished.Next() {
	}
	closed := s.Iterate(nil, nil)
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if open.Next() {
		t.Error("Next true after the store closed")
	}
	if !errors.Is(open.Err(), ErrClosed) {
		t.Errorf("Err of an iterator cut short = %v, want ErrClosed", open.Err())
	}
	if err := finished.Err(); err != nil {
		t.Errorf("Err of an iterator that had finished = %v, want nil", err)
	}
	if closed.Next() || closed.Err() != nil {
		t.Errorf("closed iterator: Err %v", closed.Err())
	}
	for _, it := range []Iterator{open, finished, closed} {
		if err := it.Close(); err != nil {
			t.Error(err)
		}
	}
}

// testCloseDuringUse closes the store while a reader, a writer and an
// iterating goroutine use it, and while one more goroutine is part-way
// through an iteration. Close is called only once each of them is known to be
// at work (it has succeeded at least once and keeps calling), so the close
// always lands during use. Each must then stop with ErrClosed, never with
// another error, a wrong result, a crash or a race; and no call that starts
// after Close has returned may succeed.
func testCloseDuringUse(t *testing.T, s Store) {
	const rows = 1000
	apply(t, s, func(b *Batch) {
		for i := range rows {
			b.Set(fmt.Appendf(nil, "k%04d", i), []byte("v"))
		}
	})

	var closed atomic.Bool // Close has returned
	type outcome struct {
		who       string
		successes int
		err       error // what stopped it
	}
	outcomes := make(chan outcome, 3)
	var working sync.WaitGroup // each user is done once it succeeded, or stopped
	var wg sync.WaitGroup
	// use calls op until it fails. The writer only overwrites rows, so every
	// read and every whole iteration has a known right answer, checked by op.
	use := func(who string, op func() error) {
		working.Add(1)
		wg.Go(func() {
			atWork := sync.OnceFunc(working.Done)
			defer atWork()
			o := outcome{who: who}
			for {
				late := closed.Load()
				err := op()
				if err == nil && late {
					err = errors.New("a call made after Close returned succeeded")
				}
				if err != nil {
					o.err = err
					outcomes <- o
					return
				}
				o.successes++
				atWork()
			}
		})
	}
	use("Get", func() error {
		v, ok, err := s.Get([]byte("k0500"))
		if err == nil && (!ok || (string(v) != "v" && string(v) != "w")) {
			return fmt.Errorf("Get(k0500) = %q, %v", v, ok)
		}
		return err
	})
	var b Batch
	i := 0
	use("Apply", func() error {
		b.Reset()
		b.Set(fmt.Appendf(nil, "k%04d", i%rows), []byte("w"))
		i++
		return s.Apply(&b)
	})
	use("Iterate", func() error {
		it := s.Iterate(nil, nil)
		defer it.Close()
		n := 0
		for it.Next() {
			n++
		}
		if err := it.Err(); err != nil {
			return err
		}
		if n != rows {
			return fmt.Errorf("an iteration saw %d rows, want %d", n, rows)
		}
		return nil
	})

	// held reads one row, then waits until the store has closed before it
	// asks for the next one.
	inside, resumeCh := make(chan struct{}), make(chan struct{})
	resume := sync.OnceFunc(func() { close(resumeCh) })
	defer resume() // also on a failed wait, so that the goroutine ends
	var heldRest int
	var heldErr error
	wg.Go(func() {
		it := s.Iterate(nil, nil)
		defer it.Close()
		if !it.Next() {
			heldErr = fmt.Errorf("first Next of the held iterator: false, Err %v", it.Err())
			close(inside)
			return
		}
		close(inside)
		<-resumeCh
		for it.Next() {
			heldRest++
		}
		heldErr = it.Err()
	})

	waitDone(t, "every user of the store is at work", working.Wait)
	<-inside
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	closed.Store(true)
	resume()
	waitDone(t, "every user of the store stops", wg.Wait)
	close(outcomes)

	for o := range outcomes {
		if o.successes == 0 {
			t.Errorf("%s never succeeded before the close", o.who)
		}
		if !errors.Is(o.err, ErrClosed) {
			t.Errorf("%s stopped with %v, want ErrClosed", o.who, o.err)
		}
	}
	if heldRest != 0 || !errors.Is(heldErr, ErrClosed) {
		t.Errorf("iterator open across the close: %d more rows, Err %v; want 0 rows and ErrClosed", heldRest, heldErr)
	}
}

// waitDone runs wait, failing the test if it has not returned within 10s.
func waitDone(t *testing.T, what string, wait func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting until %s", what)
	}
}
