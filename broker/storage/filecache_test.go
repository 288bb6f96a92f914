package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"

	"github.com/runnel-io/runnel/broker/storage/internal/vfs"
)

// Descriptors are bounded by activity, not by the partition count: a log
// of thousands of partitions, every one written and read, keeps no more
// than MaxOpenFiles segment files open, and opens (cleanly or after a
// crash) within the bound too. It once kept a file open per partition for
// good, so a CreateTopics of 20,000 partitions ran the broker out of
// descriptors and it could not start again.
func TestOpenFilesBounded(t *testing.T) {
	const (
		bound      = 40
		topics     = 4
		partitions = 600
	)
	opts := Options{MaxOpenFiles: bound, Durability: DurabilityAlways}
	l, m := newMemLog(t, opts)
	peak := 0
	check := func(m *vfs.MemFS, what string) {
		t.Helper()
		n := m.OpenFiles()
		peak = max(peak, n)
		if n > bound {
			t.Fatalf("%s: %d files open, over the bound of %d", what, n, bound)
		}
	}
	for i := range topics {
		mustCreate(t, l, fmt.Sprintf("t%d", i), partitions, nil)
		check(m, "after creating a topic")
	}
	batch := mustBatch(t, 1000, kv("k", "v"))
	for i := range topics {
		for pi := range int32(partitions) {
			p, _ := l.Partition(fmt.Sprintf("t%d", i), pi)
			mustAppend(t, p, append([]byte(nil), batch...))
			if pi%50 == 0 {
				check(m, "while appending")
			}
		}
	}
	check(m, "after appending to every partition")
	readEvery := func(l *Log, m *vfs.MemFS) {
		t.Helper()
		for i := range topics {
			for pi := range int32(partitions) {
				p, _ := l.Partition(fmt.Sprintf("t%d", i), pi)
				if _, recs := readAll(t, p, 0); len(recs) != 1 {
					t.Fatalf("%s holds %d records, want 1", p, len(recs))
				}
				if pi%50 == 0 {
					check(m, "while reading")
				}
			}
		}
		check(m, "after reading every partition")
	}
	readEvery(l, m)

	// A clean close and open, then a kill -9 and a recovering open.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := m.OpenFiles(); n != 0 {
		t.Fatalf("%d files open after Close", n)
	}
	m = m.Restart()
	for _, how := range []string{"clean", "after kill -9"} {
		opts.fs = m
		l, err := Open("/log", opts)
		if err != nil {
			t.Fatal(err)
		}
		check(m, "open "+how)
		readEvery(l, m)
		m = m.Restart() // kill -9: no Close
	}
	t.Logf("at most %d files open for %d partitions", peak, topics*partitions)
}

// A file with writes not yet synced stays open past the bound (closing it
// would leave a writeback error to no one), and is closed once synced.
func TestFileCacheKeepsUnsyncedOpen(t *testing.T) {
	const bound = 4
	m := vfs.NewMemFS()
	c := newFileCache(m, bound)
	var files []*segFile
	for i := range 3 * bound {
		path := fmt.Sprintf("/f%d", i)
		f, err := m.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		h := c.adopt(path, f)
		if _, err := h.WriteAt([]byte("data"), 0); err != nil {
			t.Fatal(err)
		}
		files = append(files, h)
	}
	if n := m.OpenFiles(); n != 3*bound {
		t.Fatalf("%d files open with %d unsynced, want them all open", n, 3*bound)
	}
	for _, h := range files {
		if err := h.SyncData(); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.OpenFiles(); n > bound {
		t.Fatalf("%d files open after the syncs, over the bound of %d", n, bound)
	}
	// Closed files reopen when used; a retired one that was closed does not.
	b := make([]byte, 4)
	if _, err := files[0].ReadAt(b, 0); err != nil || string(b) != "data" {
		t.Fatalf("read of a file closed while idle: %q, %v", b, err)
	}
	files[1].retire()
	if _, err := files[1].ReadAt(b, 0); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("read of a retired, closed file: %v, want ErrClosed", err)
	}
	for _, h := range files {
		h.Close()
	}
	if n := m.OpenFiles(); n != 0 {
		t.Fatalf("%d files open after closing all", n)
	}
}

// A read's Records outlive the closing of their file while idle.
func TestRecordsOutliveIdleClose(t *testing.T) {
	const bound = 4
	l, _ := newMemLog(t, Options{MaxOpenFiles: bound, Durability: DurabilityAlways})
	defer l.Close()
	tp := mustCreate(t, l, "t", 3*bound, nil)
	for _, p := range tp.Partitions() {
		mustAppend(t, p, mustBatch(t, 1000, kv("k", p.String())))
	}
	p0 := tp.Partition(0)
	r, err := p0.Read(0, 1<<20, -1)
	if err != nil || r.Len() == 0 {
		t.Fatalf("read: %d bytes, %v", r.Len(), err)
	}
	// Use every other file, so that partition 0's is closed.
	for _, p := range tp.Partitions()[1:] {
		readAll(t, p, 0)
	}
	h := p0.segs[0].f
	h.c.mu.Lock()
	open := h.f != nil
	h.c.mu.Unlock()
	if open {
		t.Fatal("partition 0's file is still open")
	}
	b, err := r.AppendTo(nil)
	if err != nil {
		t.Fatalf("records of a file closed while idle: %v", err)
	}
	if _, recs, err := DecodeRecords(b); err != nil || string(recs[0].Value) != p0.String() {
		t.Fatalf("records of a file closed while idle: %v, %v", recs, err)
	}
}
