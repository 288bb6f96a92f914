package storage

import (
	"container/list"
	"io/fs"
	"os"
	"sync"

	"github.com/runnel-io/runnel/broker/storage/internal/vfs"
)

// Segment files are opened lazily and closed when idle, so that the
// descriptors a log holds are bounded by its activity, not by how many
// partitions and segments it has: a broker with 20,000 partitions must not
// need 20,000 descriptors to start.
//
// Every segment's file is a segFile: a handle that opens the file by path
// when it is used and the file is not open, and that the log's fileCache
// closes again when more than Options.MaxOpenFiles are open, least
// recently used first. A file is never closed while it is in use (an
// operation holds it) or while it has writes not yet synced: closing
// would lose nothing, but an error of the writeback of those pages would
// then be reported to no one (see failLocked). Both are bounded by the
// activity of the moment, by which the bound may be exceeded.

// DefaultMaxOpenFiles is the default of Options.MaxOpenFiles.
const DefaultMaxOpenFiles = 1024

// fileCache is the set of a log's open segment files.
type fileCache struct {
	fs  vfs.FS
	max int

	mu   sync.Mutex
	idle list.List // of *segFile: open, unused and synced; front is the most recently used
	open int       // segFiles with a file open
}

func newFileCache(fsys vfs.FS, max int) *fileCache {
	return &fileCache{fs: fsys, max: max}
}

// segFile is one segment file, open or not. It has the methods of a
// vfs.File the engine uses, each of which opens the file if it is not
// open and holds it open while it runs.
type segFile struct {
	c *fileCache
	// openMu serialises opening, so that two users of a closed file do
	// not both open it.
	openMu sync.Mutex

	// Guarded by c.mu.
	path  string
	f     vfs.File      // nil while closed
	refs  int           // operations holding f
	elem  *list.Element // in c.idle, or nil
	dirty bool          // written since its last successful sync
	gen   uint64        // count of writes, to tell a sync that covered them all
	// gone: the file was removed or replaced (retire), so it must not be
	// opened by path again; what is open stays usable. dead: close it as
	// soon as it is unused (Close).
	gone, dead bool
}

// adopt makes an open file a segFile at path, counted and subject to
// eviction.
func (c *fileCache) adopt(path string, f vfs.File) *segFile {
	h := &segFile{c: c, path: path}
	c.mu.Lock()
	h.f = f
	c.open++
	h.idleLocked()
	victims := c.evictLocked()
	c.mu.Unlock()
	closeAll(victims)
	return h
}

// idleLocked puts h in the idle list if it is open, unused and synced.
func (h *segFile) idleLocked() {
	if h.f != nil && h.refs == 0 && !h.dirty && !h.dead && h.elem == nil {
		h.elem = h.c.idle.PushFront(h)
	}
}

func (h *segFile) unidleLocked() {
	if h.elem != nil {
		h.c.idle.Remove(h.elem)
		h.elem = nil
	}
}

// evictLocked takes the least recently used idle files out while more
// than max are open, and returns them for the caller to close without
// the lock.
func (c *fileCache) evictLocked() []vfs.File {
	var out []vfs.File
	for c.open > c.max {
		e := c.idle.Back()
		if e == nil {
			break
		}
		h := e.Value.(*segFile)
		h.unidleLocked()
		out = append(out, h.f)
		h.f = nil
		c.open--
	}
	return out
}

func closeAll(fs []vfs.File) {
	for _, f := range fs {
		f.Close()
	}
}

// errGone is what using a segFile that is gone or dead and closed
// returns: the segment was removed, as if its file had been closed under
// the user (Records turn it into ErrRecordsGone).
func (h *segFile) errGone(op string) error {
	return &fs.PathError{Op: op, Path: h.path, Err: fs.ErrClosed}
}

// acquire returns the open file, opening it if need be, and holds it open
// until release.
func (h *segFile) acquire(op string) (vfs.File, error) {
	c := h.c
	c.mu.Lock()
	if h.f != nil {
		h.refs++
		h.unidleLocked()
		c.mu.Unlock()
		return h.f, nil
	}
	if h.gone || h.dead {
		c.mu.Unlock()
		return nil, h.errGone(op)
	}
	c.mu.Unlock()

	h.openMu.Lock()
	defer h.openMu.Unlock()
	c.mu.Lock()
	if h.f != nil || h.gone || h.dead {
		// Opened by someone else meanwhile, or removed.
		c.mu.Unlock()
		return h.acquire(op)
	}
	path := h.path
	c.mu.Unlock()
	f, err := c.fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if h.gone || h.dead {
		// Retired while this open ran: the file found may already be the
		// one that replaced it.
		c.mu.Unlock()
		f.Close()
		return nil, h.errGone(op)
	}
	h.f = f
	h.refs++
	c.open++
	victims := c.evictLocked()
	c.mu.Unlock()
	closeAll(victims)
	return f, nil
}

// release ends a use that acquire began.
func (h *segFile) release() {
	c := h.c
	c.mu.Lock()
	h.refs--
	var victims []vfs.File
	if h.refs == 0 {
		if h.dead && h.f != nil {
			victims = append(victims, h.f)
			h.f = nil
			c.open--
		} else {
			h.idleLocked()
			victims = c.evictLocked()
		}
	}
	c.mu.Unlock()
	closeAll(victims)
}

// retire marks the file as removed or replaced on disk: it is not opened
// again by path, and what is open stays usable, so that reads which found
// the segment just before it went can finish. Call before the file is
// removed or renamed over.
func (h *segFile) retire() {
	h.c.mu.Lock()
	h.gone = true
	h.c.mu.Unlock()
}

// rename tells h that its file now lives at path.
func (h *segFile) rename(path string) {
	h.c.mu.Lock()
	h.path = path
	h.c.mu.Unlock()
}

// Close closes the file as soon as no operation holds it, for good.
func (h *segFile) Close() error {
	c := h.c
	c.mu.Lock()
	h.dead, h.gone = true, true
	var f vfs.File
	if h.refs == 0 && h.f != nil {
		h.unidleLocked()
		f, h.f = h.f, nil
		c.open--
	}
	c.mu.Unlock()
	if f != nil {
		return f.Close()
	}
	return nil
}

// ReadAt implements io.ReaderAt.
func (h *segFile) ReadAt(b []byte, off int64) (int, error) {
	f, err := h.acquire("read")
	if err != nil {
		return 0, err
	}
	defer h.release()
	return f.ReadAt(b, off)
}

// WriteAt writes b at off; the file stays open until a sync covers it.
func (h *segFile) WriteAt(b []byte, off int64) (int, error) {
	f, err := h.acquire("write")
	if err != nil {
		return 0, err
	}
	defer h.release()
	h.wrote()
	return f.WriteAt(b, off)
}

// Truncate changes the file's size; the file stays open until a sync
// covers it.
func (h *segFile) Truncate(size int64) error {
	f, err := h.acquire("truncate")
	if err != nil {
		return err
	}
	defer h.release()
	h.wrote()
	return f.Truncate(size)
}

func (h *segFile) wrote() {
	h.c.mu.Lock()
	h.dirty = true
	h.gen++
	h.c.mu.Unlock()
}

// Stat describes the file.
func (h *segFile) Stat() (fs.FileInfo, error) {
	f, err := h.acquire("stat")
	if err != nil {
		return nil, err
	}
	defer h.release()
	return f.Stat()
}

// SyncData syncs the file's data (fdatasync). A sync that fails leaves
// the file dirty, so it stays open.
func (h *segFile) SyncData() error {
	f, err := h.acquire("sync")
	if err != nil {
		return err
	}
	defer h.release()
	h.c.mu.Lock()
	gen := h.gen
	h.c.mu.Unlock()
	if err := f.SyncData(); err != nil {
		return err
	}
	h.c.mu.Lock()
	if h.gen == gen {
		h.dirty = false
	}
	h.c.mu.Unlock()
	return nil
}
