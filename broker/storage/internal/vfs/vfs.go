// Package vfs is the storage engine's view of a filesystem: the few file
// and directory operations it uses, behind two small interfaces, so that
// tests can run the engine on a filesystem that loses what a power cut
// would lose (MemFS) and check that every durability promise rests on a
// sync that was really made. OS is the implementation the engine runs on.
//
// The contract the engine relies on, and MemFS enforces:
//   - File data written with WriteAt or Truncate is durable only after
//     Sync or SyncData on that file returns.
//   - A directory entry (a file or directory created, renamed or removed)
//     is durable only after SyncDir on the directory holding it returns.
//     A rename between two directories is durable in each only after each
//     is synced; a power cut in between may leave the entry in neither.
package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// File is an open file. Reads and writes take explicit positions, so one
// File may be used by many goroutines at once.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	// Truncate changes the file's size.
	Truncate(size int64) error
	// Stat describes the file; only Size and IsDir are relied on.
	Stat() (fs.FileInfo, error)
	// Sync makes the file's data and metadata durable (fsync).
	Sync() error
	// SyncData makes the file's data durable, and its size, but not
	// metadata that reading the data back does not need (fdatasync).
	SyncData() error
}

// FS is a namespace of files and directories. Names are paths as
// path/filepath builds them. Errors are *fs.PathError values that wrap
// fs.ErrNotExist, fs.ErrExist and fs.ErrClosed where the os package's would.
type FS interface {
	// OpenFile opens a file as os.OpenFile does; flag is a combination of
	// os.O_RDONLY, O_WRONLY, O_RDWR, O_CREATE, O_EXCL and O_TRUNC.
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// Mkdir creates one directory; its parent must exist.
	Mkdir(name string, perm fs.FileMode) error
	// MkdirAll creates a directory and any missing parents.
	MkdirAll(name string, perm fs.FileMode) error
	// Remove removes a file or an empty directory.
	Remove(name string) error
	// RemoveAll removes a path and everything below it; a missing path is
	// not an error.
	RemoveAll(name string) error
	// Rename moves a file or directory, replacing a file at newname.
	Rename(oldname, newname string) error
	// ReadDir lists a directory, sorted by name.
	ReadDir(name string) ([]fs.DirEntry, error)
	// Stat describes a file or directory.
	Stat(name string) (fs.FileInfo, error)
	// SyncDir makes the directory's entries durable: the files and
	// directories created in it, renamed into or out of it and removed
	// from it.
	SyncDir(name string) error
}

// ReadFile reads a whole file.
func ReadFile(fsys FS, name string) ([]byte, error) {
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

// WriteFileAtomic replaces name with data through a temporary file
// (name+".tmp") that is synced and renamed over it, so that a crash leaves
// the old file or the new one, never a mixture. The rename itself is
// durable only once the directory is synced (SyncDir), which the caller
// does, so that several files can share one directory sync.
func WriteFileAtomic(fsys FS, name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := fsys.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return fsys.Rename(tmp, name)
}

// MkdirAllSync creates a directory and any missing parents, and syncs the
// parent of every directory it created, so that the new directories
// survive a power cut.
func MkdirAllSync(fsys FS, name string, perm fs.FileMode) error {
	name = filepath.Clean(name)
	var missing []string
	for d := name; ; d = filepath.Dir(d) {
		st, err := fsys.Stat(d)
		if err == nil {
			if !st.IsDir() {
				return &fs.PathError{Op: "mkdir", Path: d, Err: unix.ENOTDIR}
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := fsys.MkdirAll(name, perm); err != nil {
		return err
	}
	// Parents first: a directory's entry is worth nothing while the
	// directory holding it can still vanish.
	for _, d := range slices.Backward(missing) {
		if err := fsys.SyncDir(filepath.Dir(d)); err != nil {
			return fmt.Errorf("sync parent of %s: %w", d, err)
		}
	}
	return nil
}

// OS is the operating system's filesystem.
type OS struct{}

var _ FS = OS{}

// osFile adds SyncData to *os.File. Embedding keeps SyscallConn, which the
// engine's sendfile path finds by a type assertion.
type osFile struct{ *os.File }

var _ syscall.Conn = osFile{}

// SyncData calls fdatasync(2): the data and the size, without the inode
// times that fsync would also write.
func (f osFile) SyncData() error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		// Control fails only on a closed file, with an error of the poll
		// package that, unlike the os package's own, is not fs.ErrClosed.
		return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: fs.ErrClosed}
	}
	if serr != nil {
		return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// OpenFile implements FS.
func (OS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Mkdir implements FS.
func (OS) Mkdir(name string, perm fs.FileMode) error { return os.Mkdir(name, perm) }

// MkdirAll implements FS.
func (OS) MkdirAll(name string, perm fs.FileMode) error { return os.MkdirAll(name, perm) }

// Remove implements FS.
func (OS) Remove(name string) error { return os.Remove(name) }

// RemoveAll implements FS.
func (OS) RemoveAll(name string) error { return os.RemoveAll(name) }

// Rename implements FS.
func (OS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// ReadDir implements FS.
func (OS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }

// Stat implements FS.
func (OS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

// SyncDir implements FS.
func (OS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	serr := d.Sync()
	if err := d.Close(); serr == nil {
		serr = err
	}
	return serr
}
