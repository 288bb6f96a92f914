package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"

	"golang.org/x/sys/unix"
)

// Records is a read's result: a run of whole record batches in a segment
// file, not yet copied out of it. The wire server either appends it to a
// response buffer (one read of the whole run) or writes it to a socket with
// sendfile, so the bytes never pass through user space.
//
// The zero value is an empty read. A Records stays valid while its segment
// exists (its file is reopened if the log closed it while idle, see
// filecache.go); if retention or compaction removes the segment first, AppendTo and
// WriteTo fail with an error wrapping ErrRecordsGone and the caller reads
// again.
type Records struct {
	f   *segFile
	pos int64
	n   int64
}

// ErrRecordsGone means the segment a Records pointed into was deleted or
// replaced before the bytes were copied out.
var ErrRecordsGone = errors.New("segment removed before the read finished")

// Len is the number of bytes.
func (r Records) Len() int { return int(r.n) }

// AppendTo appends the batches to dst.
func (r Records) AppendTo(dst []byte) ([]byte, error) {
	if r.n == 0 {
		return dst, nil
	}
	start := len(dst)
	dst = slices.Grow(dst, int(r.n))[:start+int(r.n)] // no zeroing: ReadAt fills it
	if _, err := r.f.ReadAt(dst[start:], r.pos); err != nil {
		return dst[:start], r.wrap(err)
	}
	return dst, nil
}

func (r Records) wrap(err error) error {
	if errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("%w: %v", ErrRecordsGone, err)
	}
	if errors.Is(err, io.EOF) {
		// Compaction replaced the file with a shorter one under this read.
		return fmt.Errorf("%w: %v", ErrRecordsGone, err)
	}
	return fmt.Errorf("read records: %w", err)
}

// WriteTo writes the batches to w. When w is a socket (a syscall.Conn) and
// the segment an OS file, it uses sendfile with an explicit file offset,
// which is safe for concurrent readers of the same file; otherwise it
// copies through a buffer.
func (r Records) WriteTo(w io.Writer) (int64, error) {
	if r.n == 0 {
		return 0, nil
	}
	f, err := r.f.acquire("read")
	if err != nil {
		return 0, r.wrap(err)
	}
	defer r.f.release()
	if sc, ok := w.(syscall.Conn); ok {
		if in, ok := f.(syscall.Conn); ok {
			if n, err, handled := r.sendfile(in, sc); handled {
				return n, err
			}
		}
	}
	n, err := io.Copy(w, io.NewSectionReader(f, r.pos, r.n))
	if err == nil && n < r.n {
		err = r.wrap(io.EOF)
	}
	return n, err
}

func (r Records) sendfile(src, dst syscall.Conn) (written int64, err error, handled bool) {
	out, err := dst.SyscallConn()
	if err != nil {
		return 0, nil, false
	}
	in, err := src.SyscallConn()
	if err != nil {
		return 0, r.wrap(err), true
	}
	off := r.pos
	var werr, serr error
	rerr := in.Read(func(infd uintptr) bool {
		werr = out.Write(func(outfd uintptr) bool {
			for written < r.n {
				n, err := unix.Sendfile(int(outfd), int(infd), &off, int(min(r.n-written, 1<<30)))
				if n > 0 {
					written += int64(n)
				}
				switch {
				case err == unix.EAGAIN:
					return false // wait until the socket is writable
				case err == unix.EINTR:
					continue
				case err != nil:
					serr = fmt.Errorf("sendfile: %w", err)
					return true
				case n == 0:
					serr = r.wrap(io.EOF)
					return true
				}
			}
			return true
		})
		return true
	})
	if rerr != nil {
		return written, r.wrap(rerr), true
	}
	if werr != nil {
		return written, fmt.Errorf("sendfile: %w", werr), true
	}
	return written, serr, true
}
