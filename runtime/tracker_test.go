package runtime

import (
	"errors"
	"testing"
)

func TestTrackerCommitsOnlyAcknowledgedPrefix(t *testing.T) {
	tr := newTracker(10)
	a := tr.add(10, 2)
	b := tr.add(11, 1)
	tr.add(12, 0) // no writes: done at once, but behind 10 and 11
	d := tr.add(15, 1)
	if off, _ := tr.committable(); off != 10 {
		t.Fatalf("nothing acknowledged: committable %d, want 10", off)
	}
	b(nil)
	if off, _ := tr.committable(); off != 10 {
		t.Fatalf("11 acknowledged before 10: committable %d, want 10", off)
	}
	a(nil)
	if off, _ := tr.committable(); off != 10 {
		t.Fatalf("one of 10's two writes acknowledged: committable %d, want 10", off)
	}
	a(nil)
	// 10, 11, 12 done; 13 and 14 are a gap; 15 waits.
	if off, _ := tr.committable(); off != 15 {
		t.Fatalf("committable %d, want 15", off)
	}
	if tr.idle() {
		t.Fatal("idle with 15 in flight")
	}
	d(nil)
	if off, _ := tr.committable(); off != 16 || !tr.idle() {
		t.Fatalf("all done: committable %d idle %v, want 16 true", off, tr.idle())
	}
	e := tr.add(16, 1)
	e(errors.New("broker gone"))
	off, err := tr.committable()
	if off != 16 || err == nil {
		t.Fatalf("after a failed write: committable %d, %v; want 16 and the error", off, err)
	}
}
