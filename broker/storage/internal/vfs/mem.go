package vfs

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrPowerCut is what every operation of a MemFS returns once its power
// was cut (CutAfter, Crash): the machine is gone, nothing more changes.
var ErrPowerCut = errors.New("vfs: power cut")

// MemFS is an in-memory FS that keeps, beside what its users see, what a
// power cut would leave on disk:
//   - each file's contents as of its last Sync or SyncData;
//   - each directory's entries as of its last SyncDir.
//
// Crash returns that state as a new MemFS, as a machine finds its disk
// when it boots again; Restart returns the state a killed process leaves,
// page cache and all. A MemFS can also cut its own power after a number of
// operations (CutAfter), so that a test can stop a workload at any point of
// its sequence of writes, renames and syncs.
//
// Paths are absolute and slash-separated; the root directory always exists
// and is durable. A MemFS is safe for concurrent use; every operation holds
// one lock, so each is atomic with respect to a cut.
type MemFS struct {
	mu   sync.Mutex
	root *node
	// ops counts the operations that change the live or the durable state
	// (writes, truncations, syncs, creations, renames, removals).
	ops int64
	// cutAt is the value of ops after which the power goes; 0 is never.
	cutAt int64
	dead  bool
	down  chan struct{} // closed when dead is set
	// fault, when set, may fail an operation before it happens (SetFault).
	fault func(op, name string) error
	// open counts the files open now (OpenFiles).
	open int
}

// A node is a file or a directory. It may be reachable in the live tree,
// the durable tree, both or neither (a removed file still open).
type node struct {
	dir bool

	data   []byte // file: what reads see
	synced []byte // file: what survives a power cut
	// dropped are ranges of data that a failed sync dropped: the next
	// sync leaves zeros there (SetFault).
	dropped [][2]int

	children map[string]*node // directory: live entries
	durable  map[string]*node // directory: entries as of the last SyncDir

	// dparent and dname say where the node is durably linked, if it is,
	// so that a rename made durable in its new directory drops the old
	// durable entry: a file is never found in two places after a cut.
	dparent *node
	dname   string
}

func newDir() *node {
	return &node{dir: true, children: map[string]*node{}, durable: map[string]*node{}}
}

// NewMemFS returns an empty MemFS: just a root directory.
func NewMemFS() *MemFS { return &MemFS{root: newDir(), down: make(chan struct{})} }

// die cuts the power. Call with m.mu held.
func (m *MemFS) die() {
	if !m.dead {
		m.dead = true
		close(m.down)
	}
}

// Down returns a channel that is closed when the power is cut, so that a
// test can stop waiting for what will never happen.
func (m *MemFS) Down() <-chan struct{} { return m.down }

var _ FS = (*MemFS)(nil)

// Ops returns how many state-changing operations the MemFS has done.
func (m *MemFS) Ops() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ops
}

// CutAfter cuts the power after n more state-changing operations: those n
// complete, and every operation after them fails with ErrPowerCut.
// n <= 0 cuts it now.
func (m *MemFS) CutAfter(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n <= 0 {
		m.die()
		return
	}
	m.cutAt = m.ops + n
}

// Dead reports whether the power was cut.
func (m *MemFS) Dead() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dead
}

// Crash cuts the power (if it is not cut already) and returns what is on
// the disk afterwards, as a new, running MemFS: every directory holds the
// entries it held at its last SyncDir, every file the contents it held at
// its last sync. With rng set, the bytes appended to a file since its last
// sync may partly have reached the disk anyway, as page cache writeback
// does: per file, rng picks none of them, a prefix of them, or a run of
// zeros as long as a prefix (the new size reached the disk, the data did
// not). Without rng, nothing unsynced survives.
func (m *MemFS) Crash(rng *rand.Rand) *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.die()
	root := newDir()
	copyDurable(root, m.root, rng)
	return &MemFS{root: root, down: make(chan struct{})}
}

// Restart stops the MemFS as a killed process stops (kill -9): the
// machine stays up, so everything written is still there for the next
// process, but nothing more becomes durable than was. It returns the
// filesystem the next process sees, as a new, running MemFS that still
// remembers what a later power cut would take; the old one fails every
// operation from now on, as the dead process would do nothing more.
func (m *MemFS) Restart() *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.die()
	copies := map[*node]*node{}
	var cp func(n *node) *node
	cp = func(n *node) *node {
		if c, ok := copies[n]; ok {
			return c
		}
		c := &node{dir: n.dir, data: bytes.Clone(n.data), synced: bytes.Clone(n.synced), dname: n.dname}
		copies[n] = c
		if n.dir {
			c.children, c.durable = map[string]*node{}, map[string]*node{}
			for name, ch := range n.children {
				c.children[name] = cp(ch)
			}
			for name, ch := range n.durable {
				c.durable[name] = cp(ch)
			}
		}
		if n.dparent != nil {
			c.dparent = cp(n.dparent)
		}
		return c
	}
	return &MemFS{root: cp(m.root), down: make(chan struct{})}
}

func copyDurable(dst, src *node, rng *rand.Rand) {
	for _, name := range slices.Sorted(maps.Keys(src.durable)) { // sorted: the same rng gives the same image
		c := src.durable[name]
		var n *node
		if c.dir {
			n = newDir()
			copyDurable(n, c, rng)
		} else {
			data := c.survivor(rng)
			n = &node{data: data, synced: bytes.Clone(data)}
		}
		n.dparent, n.dname = dst, name
		dst.children[name], dst.durable[name] = n, n
	}
}

// survivor returns the file's contents after a power cut.
func (n *node) survivor(rng *rand.Rand) []byte {
	out := bytes.Clone(n.synced)
	if out == nil {
		out = []byte{}
	}
	if rng == nil || len(n.data) <= len(n.synced) || !bytes.Equal(n.data[:len(n.synced)], n.synced) {
		return out
	}
	extra := n.data[len(n.synced):]
	k := rng.IntN(len(extra) + 1)
	switch rng.IntN(3) {
	case 0:
		return out
	case 1:
		return append(out, extra[:k]...)
	default:
		return append(out, make([]byte, k)...)
	}
}

// SetFault makes fn decide, before every operation of the MemFS and its
// files, whether it fails: op names the operation ("open", "mkdir",
// "remove", "removeall", "rename", "readdir", "stat", "syncdir" on the FS;
// "read", "write", "truncate", "stat", "sync" on a file, whose name is the
// one it was opened by), and a non-nil error fails it, changing nothing.
// A failed "sync" of a file does what Linux does after a writeback error:
// the data written since the file's last sync is dropped from what a
// power cut leaves, and a later sync that succeeds does not bring it back
// (it survives as zeros), though reads still see it. fn runs with the
// MemFS locked, so it must not use the MemFS. A nil fn removes the fault.
func (m *MemFS) SetFault(fn func(op, name string) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fault = fn
}

// OpenFiles returns how many files are open: opened and not yet closed.
func (m *MemFS) OpenFiles() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.open
}

// begin checks that the machine is up and that no fault fails the
// operation and, for an operation that changes state, counts it, cutting
// the power when the count is reached. Call with m.mu held.
func (m *MemFS) begin(op, name string, changes bool) error {
	if m.dead {
		return ErrPowerCut
	}
	if m.fault != nil {
		if err := m.fault(op, name); err != nil {
			return err
		}
	}
	if !changes {
		return nil
	}
	if m.cutAt > 0 && m.ops >= m.cutAt {
		m.die()
		return ErrPowerCut
	}
	m.ops++
	return nil
}

// split cleans an absolute path into its parent's components and its
// base name; the root has no base name.
func split(name string) (dir []string, base string, err error) {
	p := filepath.ToSlash(filepath.Clean(name))
	if !strings.HasPrefix(p, "/") {
		return nil, "", unix.EINVAL
	}
	if p == "/" {
		return nil, "", nil
	}
	parts := strings.Split(p[1:], "/")
	return parts[:len(parts)-1], parts[len(parts)-1], nil
}

// lookup finds the live directory holding name, and the node at name (nil
// if there is none). The root is its own parent.
func (m *MemFS) lookup(op, name string) (parent, n *node, base string, err error) {
	dirs, base, err := split(name)
	if err != nil {
		return nil, nil, "", &fs.PathError{Op: op, Path: name, Err: err}
	}
	d := m.root
	for _, c := range dirs {
		next, ok := d.children[c]
		if !ok {
			return nil, nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if !next.dir {
			return nil, nil, "", &fs.PathError{Op: op, Path: name, Err: unix.ENOTDIR}
		}
		d = next
	}
	if base == "" {
		return d, d, "", nil
	}
	return d, d.children[base], base, nil
}

// OpenFile implements FS.
func (m *MemFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("open", name, flag&(os.O_CREATE|os.O_TRUNC) != 0); err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	parent, n, base, err := m.lookup("open", name)
	if err != nil {
		return nil, err
	}
	acc := flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR)
	f := &memFile{m: m, name: name, read: acc != os.O_WRONLY, write: acc != os.O_RDONLY}
	switch {
	case n == nil && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case n == nil:
		n = &node{}
		parent.children[base] = n
	case flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case n.dir && f.write:
		return nil, &fs.PathError{Op: "open", Path: name, Err: unix.EISDIR}
	case flag&os.O_TRUNC != 0 && f.write:
		n.data = nil
	}
	f.n = n
	m.open++
	return f, nil
}

// Mkdir implements FS.
func (m *MemFS) Mkdir(name string, perm fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("mkdir", name, true); err != nil {
		return &fs.PathError{Op: "mkdir", Path: name, Err: err}
	}
	parent, n, base, err := m.lookup("mkdir", name)
	if err != nil {
		return err
	}
	if n != nil {
		return &fs.PathError{Op: "mkdir", Path: name, Err: fs.ErrExist}
	}
	parent.children[base] = newDir()
	return nil
}

// MkdirAll implements FS.
func (m *MemFS) MkdirAll(name string, perm fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	dirs, base, err := split(name)
	if err != nil {
		return &fs.PathError{Op: "mkdir", Path: name, Err: err}
	}
	if base != "" {
		dirs = append(dirs, base)
	}
	d, counted := m.root, false
	for _, c := range dirs {
		next, ok := d.children[c]
		if !ok {
			if !counted {
				if err := m.begin("mkdir", name, true); err != nil {
					return &fs.PathError{Op: "mkdir", Path: name, Err: err}
				}
				counted = true
			}
			next = newDir()
			d.children[c] = next
		}
		if !next.dir {
			return &fs.PathError{Op: "mkdir", Path: name, Err: unix.ENOTDIR}
		}
		d = next
	}
	if !counted {
		if err := m.begin("mkdir", name, false); err != nil {
			return &fs.PathError{Op: "mkdir", Path: name, Err: err}
		}
	}
	return nil
}

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("remove", name, true); err != nil {
		return &fs.PathError{Op: "remove", Path: name, Err: err}
	}
	parent, n, base, err := m.lookup("remove", name)
	if err != nil {
		return err
	}
	switch {
	case n == nil:
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	case base == "":
		return &fs.PathError{Op: "remove", Path: name, Err: unix.EBUSY}
	case n.dir && len(n.children) > 0:
		return &fs.PathError{Op: "remove", Path: name, Err: unix.ENOTEMPTY}
	}
	delete(parent.children, base)
	return nil
}

// RemoveAll implements FS.
func (m *MemFS) RemoveAll(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("removeall", name, true); err != nil {
		return &fs.PathError{Op: "removeall", Path: name, Err: err}
	}
	parent, n, base, err := m.lookup("removeall", name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if base == "" {
		return &fs.PathError{Op: "removeall", Path: name, Err: unix.EBUSY}
	}
	if n != nil {
		delete(parent.children, base)
	}
	return nil
}

// Rename implements FS.
func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	lerr := func(err error) error { return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err} }
	if err := m.begin("rename", oldname, true); err != nil {
		return lerr(err)
	}
	op, n, ob, err := m.lookup("rename", oldname)
	if err != nil {
		return lerr(err)
	}
	np, old, nb, err := m.lookup("rename", newname)
	if err != nil {
		return lerr(err)
	}
	oc, nc := filepath.Clean(oldname), filepath.Clean(newname)
	switch {
	case n == nil:
		return lerr(fs.ErrNotExist)
	case ob == "" || nb == "" || strings.HasPrefix(nc, oc+"/"):
		return lerr(unix.EINVAL)
	case old == n:
		return nil
	case old != nil && old.dir && !n.dir:
		return lerr(unix.EISDIR)
	case old != nil && !old.dir && n.dir:
		return lerr(unix.ENOTDIR)
	case old != nil && old.dir && len(old.children) > 0:
		return lerr(unix.ENOTEMPTY)
	}
	delete(op.children, ob)
	np.children[nb] = n
	return nil
}

// ReadDir implements FS.
func (m *MemFS) ReadDir(name string) ([]fs.DirEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("readdir", name, false); err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	_, n, _, err := m.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	if !n.dir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: unix.ENOTDIR}
	}
	var out []fs.DirEntry
	for _, c := range slices.Sorted(maps.Keys(n.children)) {
		out = append(out, fs.FileInfoToDirEntry(n.children[c].info(c)))
	}
	return out, nil
}

// Stat implements FS.
func (m *MemFS) Stat(name string) (fs.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("stat", name, false); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	_, n, base, err := m.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	if base == "" {
		base = "/"
	}
	return n.info(base), nil
}

// SyncDir implements FS.
func (m *MemFS) SyncDir(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.begin("syncdir", name, true); err != nil {
		return &fs.PathError{Op: "sync", Path: name, Err: err}
	}
	_, d, _, err := m.lookup("sync", name)
	if err != nil {
		return err
	}
	if d == nil {
		return &fs.PathError{Op: "sync", Path: name, Err: fs.ErrNotExist}
	}
	if !d.dir {
		return &fs.PathError{Op: "sync", Path: name, Err: unix.ENOTDIR}
	}
	for name, c := range d.durable {
		if d.children[name] != c && c.dparent == d && c.dname == name {
			c.dparent = nil
		}
	}
	for name, c := range d.children {
		if c.dparent != nil && (c.dparent != d || c.dname != name) && c.dparent.durable[c.dname] == c {
			// Renamed here from elsewhere: the rename is now durable.
			delete(c.dparent.durable, c.dname)
		}
		c.dparent, c.dname = d, name
	}
	d.durable = maps.Clone(d.children)
	return nil
}

func (n *node) info(name string) fs.FileInfo {
	return fileInfo{name: name, size: int64(len(n.data)), dir: n.dir}
}

type fileInfo struct {
	name string
	size int64
	dir  bool
}

func (fi fileInfo) Name() string { return fi.name }
func (fi fileInfo) Size() int64  { return fi.size }
func (fi fileInfo) Mode() fs.FileMode {
	if fi.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (fi fileInfo) ModTime() time.Time { return time.Time{} }
func (fi fileInfo) IsDir() bool        { return fi.dir }
func (fi fileInfo) Sys() any           { return nil }

// memFile is an open MemFS file. It keeps working after the file is
// removed or renamed, as an open file descriptor does.
type memFile struct {
	m           *MemFS
	n           *node
	name        string
	read, write bool
	closed      bool // guarded by m.mu
}

func (f *memFile) begin(op string, changes bool) error {
	if err := f.m.begin(op, f.name, changes); err != nil {
		return &fs.PathError{Op: op, Path: f.name, Err: err}
	}
	if f.closed {
		return &fs.PathError{Op: op, Path: f.name, Err: fs.ErrClosed}
	}
	return nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.begin("read", false); err != nil {
		return 0, err
	}
	if !f.read {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: unix.EBADF}
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: unix.EINVAL}
	}
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.begin("write", true); err != nil {
		return 0, err
	}
	if !f.write {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: unix.EBADF}
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: unix.EINVAL}
	}
	if end := off + int64(len(p)); end > int64(len(f.n.data)) {
		f.n.data = append(f.n.data, make([]byte, end-int64(len(f.n.data)))...)
	}
	return copy(f.n.data[off:], p), nil
}

func (f *memFile) Truncate(size int64) error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.begin("truncate", true); err != nil {
		return err
	}
	if !f.write || size < 0 {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: unix.EINVAL}
	}
	if size <= int64(len(f.n.data)) {
		f.n.data = f.n.data[:size]
	} else {
		f.n.data = append(f.n.data, make([]byte, size-int64(len(f.n.data)))...)
	}
	return nil
}

func (f *memFile) Stat() (fs.FileInfo, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.begin("stat", false); err != nil {
		return nil, err
	}
	return f.n.info(filepath.Base(f.name)), nil
}

func (f *memFile) Sync() error { return f.SyncData() }

func (f *memFile) SyncData() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.begin("sync", true); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Err != ErrPowerCut && pe.Err != fs.ErrClosed {
			// An injected fault: the kernel gave up on the dirty pages.
			f.n.dropped = append(f.n.dropped, [2]int{len(f.n.synced), len(f.n.data)})
		}
		return err
	}
	synced := append(f.n.synced[:0:0], f.n.data...)
	for _, d := range f.n.dropped {
		// Zeros where the dropped pages were: the disk never got them.
		clear(synced[min(d[0], len(synced)):min(d[1], len(synced))])
	}
	f.n.dropped = nil
	f.n.synced = synced
	return nil
}

func (f *memFile) Close() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.closed = true
	f.m.open--
	return nil
}
