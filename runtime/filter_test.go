package runtime

import (
	"fmt"
	"testing"
	"time"

	"github.com/runnel-io/runnel/processor"
)

// The filter never forgets a key, across the growth from one filter to
// several, and rejects most keys it never saw.
func TestKeyFilterHasNoFalseNegatives(t *testing.T) {
	f := newKeyFilter()
	const n = 3 * filterKeys
	for i := range n {
		f.add(fmt.Appendf(nil, "key-%d", i))
	}
	if len(f.filters) != 3 {
		t.Fatalf("%d filters for %d keys, want 3", len(f.filters), n)
	}
	for i := range n {
		if k := fmt.Appendf(nil, "key-%d", i); !f.mayContain(k) {
			t.Fatalf("%s was added but is reported missing", k)
		}
	}
	fp := 0
	for i := range 10_000 {
		if f.mayContain(fmt.Appendf(nil, "other-%d", i)) {
			fp++
		}
	}
	// Three filters at about 1% each: well under 10% together.
	if fp > 1000 {
		t.Fatalf("%d of 10000 unknown keys reported present", fp)
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
