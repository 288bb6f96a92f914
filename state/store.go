package state

import "errors"

// ErrClosed is returned by operations on a Store, and by an Iterator's Err,
// once the Store has been closed.
var ErrClosed = errors.New("state: store closed")

// ErrCorrupted marks errors caused by damaged on-disk data; test for it with
// errors.Is. A corrupted store cannot be trusted to agree with its checkpoint,
// so the remedy is to remove its directory (os.RemoveAll), open it afresh and
// restore it from the start of the changelog. Repairing it in place (LevelDB's
// RecoverFile) is deliberately not offered: a repair can drop rows without
// dropping the checkpoint, which would silently lose data.
var ErrCorrupted = errors.New("state: store corrupted")

// Store is the local copy of one partition of one table.
//
// Keys are ordered by their bytes; any byte string, the empty one included,
// is a valid key, and an empty value is a value (present, not missing).
// A Store is safe for concurrent use: the runtime writes while views and the
// HTTP monitor read.
type Store interface {
	// Get returns the value of key. ok is false if the key is missing.
	// The returned slice belongs to the caller; an empty value is non-nil.
	Get(key []byte) (value []byte, ok bool, err error)

	// Apply writes b atomically: after a crash or an error either all of its
	// sets, deletes and its checkpoint are visible or none is. Operations on
	// the same key apply in the order they were added. Apply neither resets
	// nor keeps b.
	Apply(b *Batch) error

	// Checkpoint returns the changelog offset the store has restored up to:
	// the offset of the next changelog record to replay. ok is false when no
	// checkpoint was ever written, or after Clear.
	Checkpoint() (offset int64, ok bool, err error)

	// Iterate returns an Iterator over the keys in [start, end) in ascending
	// order; a nil start or end leaves that side unbounded. The iterator sees
	// a snapshot of the store taken by Iterate: writes made afterwards, Clear
	// included, are not visible through it. It must be closed.
	Iterate(start, end []byte) Iterator

	// Clear removes all data and the checkpoint, for a restore from scratch
	// (when the changelog's log start has moved past the checkpoint, or after
	// corruption). Readers running concurrently may see a partly cleared
	// store; a crash during Clear leaves a store with no checkpoint, whose
	// next open finishes the Clear.
	Clear() error

	// Close releases the store. Open iterators stop, their Err reporting
	// ErrClosed. Later calls fail with ErrClosed; Close itself may be called
	// again and then returns nil.
	Close() error
}

// Iterator walks a range of a Store. It is not safe for concurrent use.
//
//	it := s.Iterate(start, end)
//	defer it.Close()
//	for it.Next() {
//		use(it.Key(), it.Value())
//	}
//	if err := it.Err(); err != nil { ... }
type Iterator interface {
	// Next moves to the next entry, the first one on the first call, and
	// reports whether there is one.
	Next() bool
	// Key returns the current key. The slice is valid until the next call
	// to Next or Close, or until the store is closed, and must not be
	// modified.
	Key() []byte
	// Value returns the current value, with the same lifetime as Key.
	Value() []byte
	// Err returns the error that stopped the iteration, if any.
	Err() error
	// Close releases the iterator. It always returns nil, so it can be
	// deferred; errors are reported by Err.
	Close() error
}

// Opener opens the store for one table partition in dir, creating it if
// needed. The runtime takes an Opener as an option so that tests and small
// tables can run in memory.
type Opener func(dir string) (Store, error)

// LevelDBOpener returns an Opener that opens LevelDB stores with opts.
func LevelDBOpener(opts LevelDBOptions) Opener {
	return func(dir string) (Store, error) {
		s, err := OpenLevelDB(dir, opts)
		if err != nil {
			return nil, err // not s: a nil *LevelDB in a Store is not a nil Store
		}
		return s, nil
	}
}

// MemoryOpener returns an Opener that ignores dir and returns a new, empty
// Memory store on every call: nothing survives a Close, so every open starts
// with a full restore from the changelog.
func MemoryOpener() Opener {
	return func(string) (Store, error) { return NewMemory(), nil }
}

var (
	_ Store = (*LevelDB)(nil)
	_ Store = (*Memory)(nil)
)
