package vfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// Both filesystems must agree on everything a running program can see;
// MemFS differs from OS only in what a power cut leaves.
func TestFSConformance(t *testing.T) {
	for name, setup := range map[string]func(t *testing.T) (FS, string){
		"os":  func(t *testing.T) (FS, string) { return OS{}, t.TempDir() },
		"mem": func(t *testing.T) (FS, string) { return NewMemFS(), "/data" },
	} {
		t.Run(name, func(t *testing.T) {
			fsys, dir := setup(t)
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(fsys.MkdirAll(filepath.Join(dir, "a", "b"), 0o755))
			must(fsys.MkdirAll(filepath.Join(dir, "a", "b"), 0o755)) // exists: no error
			p := filepath.Join(dir, "a", "f")
			f, err := fsys.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
			must(err)
			if _, err := fsys.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644); !errors.Is(err, fs.ErrExist) {
				t.Fatalf("exclusive create of an existing file: %v, want ErrExist", err)
			}
			if _, err := f.WriteAt([]byte("hello"), 3); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 10)
			n, err := f.ReadAt(buf, 0)
			if n != 8 || !errors.Is(err, io.EOF) || !bytes.Equal(buf[:n], []byte("\x00\x00\x00hello")) {
				t.Fatalf("read past the end: %d %q %v", n, buf[:n], err)
			}
			must(f.Truncate(4))
			if st, err := f.Stat(); err != nil || st.Size() != 4 || st.IsDir() {
				t.Fatalf("stat after truncate: %v %v", st, err)
			}
			must(f.SyncData())
			must(f.Sync())
			must(f.Close())
			if _, err := f.ReadAt(buf, 0); !errors.Is(err, fs.ErrClosed) {
				t.Fatalf("read after close: %v, want ErrClosed", err)
			}
			if _, err := fsys.OpenFile(filepath.Join(dir, "nope", "f"), os.O_CREATE|os.O_RDWR, 0o644); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("create in a missing directory: %v, want ErrNotExist", err)
			}
			must(WriteFileAtomic(fsys, filepath.Join(dir, "a", "g"), []byte("new")))
			must(WriteFileAtomic(fsys, filepath.Join(dir, "a", "g"), []byte("newer")))
			if b, err := ReadFile(fsys, filepath.Join(dir, "a", "g")); err != nil || string(b) != "newer" {
				t.Fatalf("read file: %q %v", b, err)
			}
			must(fsys.Rename(filepath.Join(dir, "a", "g"), p)) // replaces f
			if b, err := ReadFile(fsys, p); err != nil || string(b) != "newer" {
				t.Fatalf("after rename over a file: %q %v", b, err)
			}
			ents, err := fsys.ReadDir(filepath.Join(dir, "a"))
			must(err)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
				if e.IsDir() != (e.Name() == "b") {
					t.Fatalf("entry %s: IsDir %v", e.Name(), e.IsDir())
				}
			}
			if !slices.Equal(names, []string{"b", "f"}) {
				t.Fatalf("read dir: %v, want [b f]", names)
			}
			if err := fsys.Remove(filepath.Join(dir, "a")); err == nil {
				t.Fatal("removed a directory that is not empty")
			}
			must(fsys.Remove(p))
			if err := fsys.Remove(p); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("remove twice: %v, want ErrNotExist", err)
			}
			if _, err := fsys.Stat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("stat of a removed file: %v", err)
			}
			must(fsys.Mkdir(filepath.Join(dir, "c"), 0o755))
			must(fsys.Rename(filepath.Join(dir, "a"), filepath.Join(dir, "c", "a")))
			if st, err := fsys.Stat(filepath.Join(dir, "c", "a", "b")); err != nil || !st.IsDir() {
				t.Fatalf("stat of a moved directory's child: %v %v", st, err)
			}
			must(fsys.RemoveAll(filepath.Join(dir, "c")))
			must(fsys.RemoveAll(filepath.Join(dir, "c")))
			must(fsys.SyncDir(dir))
			must(MkdirAllSync(fsys, filepath.Join(dir, "x", "y", "z"), 0o755))
			if st, err := fsys.Stat(filepath.Join(dir, "x", "y", "z")); err != nil || !st.IsDir() {
				t.Fatalf("MkdirAllSync: %v %v", st, err)
			}
		})
	}
}

func mustNoErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeNew(t *testing.T, m *MemFS, name, data string) File {
	t.Helper()
	f, err := m.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	mustNoErr(t, err)
	_, err = f.WriteAt([]byte(data), 0)
	mustNoErr(t, err)
	return f
}

func contents(t *testing.T, m *MemFS, name string) (string, bool) {
	t.Helper()
	b, err := ReadFile(m, name)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false
	}
	mustNoErr(t, err)
	return string(b), true
}

// What a power cut keeps: synced file data in synced directory entries,
// and nothing else.
func TestMemFSCrashKeepsOnlySyncedState(t *testing.T) {
	m := NewMemFS()
	mustNoErr(t, m.MkdirAll("/d", 0o755))
	mustNoErr(t, m.SyncDir("/"))

	// Three files made durable: data synced, then their directory.
	f := writeNew(t, m, "/d/synced", "one")
	mustNoErr(t, f.SyncData())
	g := writeNew(t, m, "/d/unlinked", "data")
	mustNoErr(t, g.Sync())
	r := writeNew(t, m, "/d/old", "renamed")
	mustNoErr(t, r.SyncData())
	mustNoErr(t, m.SyncDir("/d"))

	// Then, none of it synced: a write and a truncation, a removal, a
	// rename, and a file whose data is synced but whose entry is not.
	_, err := f.WriteAt([]byte("two"), 3)
	mustNoErr(t, err)
	mustNoErr(t, f.Truncate(1))
	mustNoErr(t, m.Remove("/d/unlinked"))
	mustNoErr(t, m.Rename("/d/old", "/d/new"))
	h := writeNew(t, m, "/d/late", "late")
	mustNoErr(t, h.SyncData())

	c := m.Crash(nil)
	if !m.Dead() {
		t.Fatal("the crashed filesystem still runs")
	}
	if _, err := m.Stat("/d"); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("stat after the cut: %v, want ErrPowerCut", err)
	}
	for name, want := range map[string]string{"/d/synced": "one", "/d/unlinked": "data", "/d/old": "renamed"} {
		if got, ok := contents(t, c, name); !ok || got != want {
			t.Errorf("%s after the cut: %q (exists %v), want %q", name, got, ok, want)
		}
	}
	for _, name := range []string{"/d/late", "/d/new"} {
		if got, ok := contents(t, c, name); ok {
			t.Errorf("%s survived the cut with %q; its directory entry was never synced", name, got)
		}
	}
}

// A rename between directories is durable where each directory was synced;
// the file is never in both afterwards.
func TestMemFSCrossDirectoryRename(t *testing.T) {
	m := NewMemFS()
	mustNoErr(t, m.MkdirAll("/a", 0o755))
	mustNoErr(t, m.MkdirAll("/b", 0o755))
	mustNoErr(t, m.SyncDir("/"))
	f := writeNew(t, m, "/a/f", "x")
	mustNoErr(t, f.SyncData())
	mustNoErr(t, m.SyncDir("/a"))
	mustNoErr(t, m.Rename("/a/f", "/b/f"))

	if _, ok := contents(t, m.clone(t), "/a/f"); !ok {
		t.Fatal("a rename nobody synced moved the file")
	}
	mustNoErr(t, m.SyncDir("/b"))
	c := m.Crash(nil)
	_, inA := contents(t, c, "/a/f")
	_, inB := contents(t, c, "/b/f")
	if inA || !inB {
		t.Fatalf("after syncing the target directory: in a %v, in b %v; want only b", inA, inB)
	}
}

// clone returns what a cut now would leave, without cutting m's power.
func (m *MemFS) clone(t *testing.T) *MemFS {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	root := newDir()
	copyDurable(root, m.root, nil)
	return &MemFS{root: root, down: make(chan struct{})}
}

// CutAfter(n) lets exactly n state-changing operations through; the next
// fails and changes nothing, as does everything after it.
func TestMemFSCutAfter(t *testing.T) {
	m := NewMemFS()
	f := writeNew(t, m, "/f", "") // create, write: 2 operations
	if got := m.Ops(); got != 2 {
		t.Fatalf("%d operations counted, want 2", got)
	}
	m.CutAfter(2)
	_, err := f.WriteAt([]byte("a"), 0)
	mustNoErr(t, err)
	mustNoErr(t, f.SyncData())
	if _, err := f.WriteAt([]byte("b"), 1); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("third write after CutAfter(2): %v, want ErrPowerCut", err)
	}
	if err := m.SyncDir("/"); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("sync after the cut: %v, want ErrPowerCut", err)
	}
	select {
	case <-m.Down():
	default:
		t.Fatal("power still on")
	}
	m.mu.Lock()
	data := string(m.root.children["f"].data)
	m.mu.Unlock()
	if data != "a" {
		t.Fatalf("file holds %q after the cut, want %q", data, "a")
	}
}

// With a random source, a cut may keep part of what was appended since
// the last sync, as writeback does, but never anything else.
func TestMemFSCrashPartialWriteback(t *testing.T) {
	seen := map[string]bool{}
	for seed := range uint64(200) {
		m := NewMemFS()
		f := writeNew(t, m, "/f", "synced|")
		mustNoErr(t, f.SyncData())
		mustNoErr(t, m.SyncDir("/"))
		_, err := f.WriteAt([]byte("appended"), 7)
		mustNoErr(t, err)
		got, ok := contents(t, m.Crash(rand.New(rand.NewPCG(seed, 0))), "/f")
		if !ok {
			t.Fatalf("seed %d: the synced file is gone", seed)
		}
		tail, okPrefix := bytes.CutPrefix([]byte(got), []byte("synced|"))
		if !okPrefix || len(tail) > len("appended") {
			t.Fatalf("seed %d: after the cut the file holds %q", seed, got)
		}
		switch {
		case len(tail) == 0:
			seen["none"] = true
		case bytes.Equal(tail, []byte("appended")[:len(tail)]):
			seen["prefix"] = true
		case bytes.Equal(tail, make([]byte, len(tail))):
			seen["zeros"] = true
		default:
			t.Fatalf("seed %d: unsynced tail %q is neither a prefix of the write nor zeros", seed, tail)
		}
	}
	if len(seen) != 3 {
		t.Fatalf("200 seeds gave only outcomes %v", seen)
	}
}

// A removed file stays readable through a handle opened before, as on
// Unix; the engine relies on it for reads racing retention.
func TestMemFSRemovedFileStaysOpen(t *testing.T) {
	m := NewMemFS()
	f := writeNew(t, m, "/f", "still here")
	mustNoErr(t, m.Remove("/f"))
	buf := make([]byte, 10)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "still here" {
		t.Fatalf("read of a removed file: %q %v", buf, err)
	}
}

// After a kill -9 the next process sees everything written, but only what
// was synced survives a power cut that follows.
func TestMemFSRestartKeepsThePageCache(t *testing.T) {
	m := NewMemFS()
	f := writeNew(t, m, "/synced", "durable")
	mustNoErr(t, f.SyncData())
	mustNoErr(t, m.SyncDir("/"))
	_, err := f.WriteAt([]byte("+cached"), 7)
	mustNoErr(t, err)
	writeNew(t, m, "/unsynced", "cached")

	r := m.Restart()
	if _, err := m.Stat("/synced"); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("the killed process's filesystem still works: %v", err)
	}
	for name, want := range map[string]string{"/synced": "durable+cached", "/unsynced": "cached"} {
		if got, ok := contents(t, r, name); !ok || got != want {
			t.Fatalf("%s after a restart: %q (exists %v), want %q", name, got, ok, want)
		}
	}
	c := r.Crash(nil)
	if got, ok := contents(t, c, "/synced"); !ok || got != "durable" {
		t.Fatalf("/synced after a restart and a power cut: %q (exists %v), want %q", got, ok, "durable")
	}
	if _, ok := contents(t, c, "/unsynced"); ok {
		t.Fatal("/unsynced survived a power cut; it was never synced")
	}
}

// OS.SyncData must reach fdatasync(2): no test of the engine can tell a
// sync from a no-op short of a power cut, but the kernel refuses to sync a
// pipe, and that refusal must come back.
func TestOSSyncDataCallsFdatasync(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := (osFile{w}).SyncData(); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("fdatasync of a pipe: %v, want EINVAL from the kernel", err)
	}
	f, err := OS{}.OpenFile(filepath.Join(t.TempDir(), "f"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SyncData(); err != nil {
		t.Fatalf("fdatasync of a file: %v", err)
	}
	f.Close()
	if err := f.SyncData(); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("fdatasync of a closed file: %v, want ErrClosed", err)
	}
}

// A failed sync drops what it was to make durable, as Linux does after a
// writeback error: a later sync that succeeds leaves zeros there on the
// disk, while reads still see the data.
func TestMemFSFaultedSyncDropsData(t *testing.T) {
	m := NewMemFS()
	if err := m.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := m.OpenFile("/d/f", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.OpenFiles(); got != 1 {
		t.Fatalf("OpenFiles = %d, want 1", got)
	}
	if err := errors.Join(m.SyncDir("/"), m.SyncDir("/d")); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = f.WriteAt([]byte("aaa"), 0)
	must(err)
	must(f.SyncData())
	_, err = f.WriteAt([]byte("bbb"), 3)
	must(err)
	eio := errors.New("injected EIO")
	m.SetFault(func(op, name string) error {
		if op == "sync" && name == "/d/f" {
			return eio
		}
		return nil
	})
	if err := f.SyncData(); !errors.Is(err, eio) {
		t.Fatalf("faulted sync: %v, want the injected error", err)
	}
	m.SetFault(nil)
	_, err = f.WriteAt([]byte("ccc"), 6)
	must(err)
	must(f.SyncData())
	got := make([]byte, 9)
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if string(got) != "aaabbbccc" {
		t.Fatalf("read %q, want aaabbbccc", got)
	}
	must(f.Close())
	if got := m.OpenFiles(); got != 0 {
		t.Fatalf("OpenFiles = %d after close, want 0", got)
	}
	after, err := ReadFile(m.Crash(nil), "/d/f")
	must(err)
	if want := "aaa\x00\x00\x00ccc"; string(after) != want {
		t.Fatalf("after a power cut the file holds %q, want %q", after, want)
	}
}
