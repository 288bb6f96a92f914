package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/syndtr/goleveldb/leveldb"
	lerrors "github.com/syndtr/goleveldb/leveldb/errors"
	"github.com/syndtr/goleveldb/leveldb/filter"
	"github.com/syndtr/goleveldb/leveldb/iterator"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/storage"
	"github.com/syndtr/goleveldb/leveldb/util"
)

// Layout of a LevelDB store. The first byte of a LevelDB key tells its kind,
// so that the rows are one contiguous range that a scan covers exactly and
// the bookkeeping keys never show up in Iterate:
//
//	0x00 "format"     -> 0x01                version of this layout, written at creation
//	0x00 "checkpoint" -> 8 bytes big-endian  Store.Checkpoint, written by Apply with the rows
//	0x00 "clearing"   -> empty               a Clear is under way; opening the store finishes it
//	0x01 key          -> value               a row of the table
const (
	metaPrefix    byte = 0x00
	dataPrefix    byte = 0x01
	formatVersion byte = 1

	// clearChunk bounds the deletes Clear puts in one write, so that
	// clearing a large store does not build one huge batch in memory.
	clearChunk = 4096
)

var (
	formatKey     = []byte("\x00format")
	checkpointKey = []byte("\x00checkpoint")
	clearingKey   = []byte("\x00clearing")
	dataRange     = util.Range{Start: []byte{dataPrefix}, Limit: []byte{dataPrefix + 1}}
)

// LevelDBOptions configures a LevelDB store. The zero value gives the
// defaults listed with each field.
type LevelDBOptions struct {
	// BlockCacheSize is the memory, in bytes, for caching uncompressed table
	// blocks. Default 8 MiB. Each store has its own cache, and a process
	// holds a store for every table partition it owns.
	BlockCacheSize int

	// WriteBufferSize is the memory, in bytes, that writes fill before they
	// are flushed to a table file. Default 4 MiB. A store may hold up to two
	// such buffers while one is being flushed.
	WriteBufferSize int

	// MaxOpenFiles bounds the table files kept open. Default 100, below
	// LevelDB's 500, because file descriptors add up over all stores of a
	// process.
	MaxOpenFiles int

	// Sync makes every Apply wait until its batch is on stable storage.
	// Default false: the changelog, not the local store, is the durable copy
	// of a table.
	//
	// Without Sync, Apply returns once the batch is handed to the operating
	// system, so a crash of the process (kill -9) loses nothing, and a crash
	// of the machine may lose the latest batches. Each batch carries its
	// checkpoint and LevelDB recovers batches whole, so a lost batch takes
	// its checkpoint with it and the restore simply replays more of the
	// changelog; replay is idempotent, the last write of a key winning.
	// One caveat: if the machine crashes and the operating system had written
	// the journal's pages out of order, LevelDB can keep a batch while losing
	// an earlier one, and the checkpoint then skips the lost rows. Set Sync
	// where a machine crash must not cost correctness, at the price of an
	// fsync per Apply.
	Sync bool
}

const (
	defaultBlockCacheSize  = 8 << 20
	defaultWriteBufferSize = 4 << 20
	defaultMaxOpenFiles    = 100
	bloomBitsPerKey        = 10 // ~1% false positives; most Gets of a stream's new keys miss
)

func (o LevelDBOptions) leveldb() (*opt.Options, error) {
	if o.BlockCacheSize < 0 || o.WriteBufferSize < 0 || o.MaxOpenFiles < 0 {
		return nil, fmt.Errorf("negative size in %+v", o)
	}
	lo := &opt.Options{
		BlockCacheCapacity:     o.BlockCacheSize,
		WriteBuffer:            o.WriteBufferSize,
		OpenFilesCacheCapacity: o.MaxOpenFiles,
		Filter:                 filter.NewBloomFilter(bloomBitsPerKey),
	}
	if lo.BlockCacheCapacity == 0 {
		lo.BlockCacheCapacity = defaultBlockCacheSize
	}
	if lo.WriteBuffer == 0 {
		lo.WriteBuffer = defaultWriteBufferSize
	}
	if lo.OpenFilesCacheCapacity == 0 {
		lo.OpenFilesCacheCapacity = defaultMaxOpenFiles
	}
	return lo, nil
}

// LevelDB is a Store on disk, in a goleveldb database of its own directory.
type LevelDB struct {
	dir  string
	stor storage.Storage
	db   *leveldb.DB
	wo   *opt.WriteOptions

	// writeMu serializes Apply and Clear, and guards wb.
	writeMu sync.Mutex
	wb      leveldb.Batch // reused by Apply, over the Batch's own buffer

	// mu is held shared by every operation, iterator steps included, and
	// exclusively by Close, so that Close never pulls the database from
	// under a running operation: LevelDB must not be closed while an
	// iterator is in use.
	mu     sync.RWMutex
	closed bool
	iterMu sync.Mutex // guards iters, changed under mu held shared
	iters  map[*levelIter]struct{}
}

// OpenLevelDB opens the store in dir, creating dir and the store if they do
// not exist. A damaged database yields an error wrapping ErrCorrupted. A
// directory that holds some other LevelDB database is refused, not cleared.
func OpenLevelDB(dir string, opts LevelDBOptions) (*LevelDB, error) {
	stor, err := storage.OpenFile(dir, false)
	if err != nil {
		return nil, fmt.Errorf("state: leveldb open %s: %w", dir, err)
	}
	s, err := openLevelDB(dir, stor, opts)
	if err != nil {
		_ = stor.Close() // the open error is the one worth reporting
		return nil, err
	}
	return s, nil
}

// openLevelDB opens a store on stor, which the store then owns; tests pass a
// storage that injects faults.
func openLevelDB(dir string, stor storage.Storage, opts LevelDBOptions) (*LevelDB, error) {
	lo, err := opts.leveldb()
	if err != nil {
		return nil, fmt.Errorf("state: leveldb open %s: %w", dir, err)
	}
	db, err := leveldb.Open(stor, lo)
	if err != nil {
		return nil, wrapLevelErr("open", dir, err)
	}
	s := &LevelDB{
		dir:   dir,
		stor:  stor,
		db:    db,
		wo:    &opt.WriteOptions{Sync: opts.Sync},
		iters: make(map[*levelIter]struct{}),
	}
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// init checks the layout version, writing it into a new store, and finishes
// a Clear that a crash interrupted.
func (s *LevelDB) init() error {
	v, err := s.db.Get(formatKey, nil)
	switch {
	case errors.Is(err, leveldb.ErrNotFound):
		it := s.db.NewIterator(nil, nil)
		nonEmpty := it.First()
		it.Release()
		if err := it.Error(); err != nil {
			return wrapLevelErr("open", s.dir, err)
		}
		if nonEmpty {
			return fmt.Errorf("state: leveldb open %s: holds a LevelDB database that is not a runnel state store", s.dir)
		}
		// Synced, so that a store whose first rows survive a crash also has
		// its format key.
		if err := s.db.Put(formatKey, []byte{formatVersion}, &opt.WriteOptions{Sync: true}); err != nil {
			return wrapLevelErr("open", s.dir, err)
		}
	case err != nil:
		return wrapLevelErr("open", s.dir, err)
	case len(v) != 1 || v[0] != formatVersion:
		return fmt.Errorf("state: leveldb open %s: unsupported layout version %x", s.dir, v)
	}
	clearing, err := s.db.Has(clearingKey, nil)
	if err != nil {
		return wrapLevelErr("open", s.dir, err)
	}
	if clearing {
		return s.finishClear()
	}
	return nil
}

// wrapLevelErr adds context to a goleveldb error, marking corruption with
// ErrCorrupted so that the runtime knows to rebuild the store.
func wrapLevelErr(op, dir string, err error) error {
	switch {
	case lerrors.IsCorrupted(err):
		return fmt.Errorf("%w: leveldb %s %s: %w", ErrCorrupted, op, dir, err)
	case errors.Is(err, leveldb.ErrClosed):
		return ErrClosed
	default:
		return fmt.Errorf("state: leveldb %s %s: %w", op, dir, err)
	}
}

// Get implements Store.
func (s *LevelDB) Get(key []byte) ([]byte, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, false, ErrClosed
	}
	v, err := s.db.Get(prefixKey(nil, key), nil)
	switch {
	case errors.Is(err, leveldb.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, wrapLevelErr("get", s.dir, err)
	case v == nil:
		v = []byte{}
	}
	return v, true, nil
}

// Apply implements Store, in one LevelDB write batch.
func (s *LevelDB) Apply(b *Batch) error {
	if err := b.validate(); err != nil {
		return err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	// The batch's buffer is in LevelDB's write-batch layout already: it
	// is handed over as it is, the checkpoint appended for the time of the
	// write, rather than copied key by key.
	n := len(b.data)
	if b.hasCheckpoint {
		b.data = append(b.data, recSet, byte(len(checkpointKey)))
		b.data = append(b.data, checkpointKey...)
		b.data = append(b.data, 8)
		b.data = binary.BigEndian.AppendUint64(b.data, uint64(b.checkpoint))
	}
	defer func() { b.data = b.data[:n] }()
	if len(b.data) == 0 {
		return nil
	}
	if err := s.wb.Load(b.data); err != nil {
		return fmt.Errorf("state: leveldb apply %s: %w", s.dir, err)
	}
	// Not kept past the write: the buffer is the caller's.
	defer func() { _ = s.wb.Load(nil) }()
	if err := s.db.Write(&s.wb, s.wo); err != nil {
		return wrapLevelErr("apply", s.dir, err)
	}
	return nil
}

// Checkpoint implements Store.
func (s *LevelDB) Checkpoint() (int64, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, false, ErrClosed
	}
	v, err := s.db.Get(checkpointKey, nil)
	switch {
	case errors.Is(err, leveldb.ErrNotFound):
		return 0, false, nil
	case err != nil:
		return 0, false, wrapLevelErr("checkpoint", s.dir, err)
	case len(v) != 8 || v[0]&0x80 != 0:
		return 0, false, fmt.Errorf("%w: leveldb checkpoint %s: bad value %x", ErrCorrupted, s.dir, v)
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

// Iterate implements Store, on a LevelDB iterator, which reads a snapshot.
func (s *LevelDB) Iterate(start, end []byte) Iterator {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return &levelIter{s: s, err: ErrClosed, done: true}
	}
	r := &util.Range{Start: prefixKey(nil, start), Limit: dataRange.Limit}
	if end != nil {
		r.Limit = prefixKey(nil, end)
	}
	it := &levelIter{s: s, inner: s.db.NewIterator(r, nil)}
	s.iterMu.Lock()
	s.iters[it] = struct{}{}
	s.iterMu.Unlock()
	return it
}

// Clear implements Store. It first drops the checkpoint and sets a marker in
// one batch, then deletes the rows in chunks, then drops the marker: a crash
// in between leaves no checkpoint, and the next open sees the marker and
// deletes the rest. Finally it compacts the range, so that the tombstones do
// not slow down the restore that follows.
func (s *LevelDB) Clear() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	var b leveldb.Batch
	b.Delete(checkpointKey)
	b.Put(clearingKey, nil)
	if err := s.db.Write(&b, s.wo); err != nil {
		return wrapLevelErr("clear", s.dir, err)
	}
	return s.finishClear()
}

func (s *LevelDB) finishClear() error {
	it := s.db.NewIterator(&dataRange, nil)
	defer it.Release()
	var b leveldb.Batch
	for it.Next() {
		b.Delete(it.Key())
		if b.Len() >= clearChunk {
			if err := s.db.Write(&b, s.wo); err != nil {
				return wrapLevelErr("clear", s.dir, err)
			}
			b.Reset()
		}
	}
	if err := it.Error(); err != nil {
		return wrapLevelErr("clear", s.dir, err)
	}
	b.Delete(clearingKey)
	if err := s.db.Write(&b, s.wo); err != nil {
		return wrapLevelErr("clear", s.dir, err)
	}
	if err := s.db.CompactRange(dataRange); err != nil {
		return wrapLevelErr("clear", s.dir, err)
	}
	return nil
}

// Close implements Store. It waits for running operations, stops open
// iterators and closes the database.
func (s *LevelDB) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.iterMu.Lock()
	for it := range s.iters {
		it.release(ErrClosed)
	}
	s.iterMu.Unlock()
	err := s.db.Close()
	if serr := s.stor.Close(); err == nil {
		err = serr
	}
	if err != nil {
		return wrapLevelErr("close", s.dir, err)
	}
	return nil
}

// prefixKey appends the row key for key to dst.
func prefixKey(dst, key []byte) []byte {
	if dst == nil {
		dst = make([]byte, 0, 1+len(key))
	}
	return append(append(dst, dataPrefix), key...)
}

// levelIter wraps a LevelDB iterator. Its steps hold the store's mu shared,
// so that the store's Close, which releases it, never runs during one.
type levelIter struct {
	s          *LevelDB
	inner      iterator.Iterator // nil once released
	key, value []byte
	err        error
	done       bool // Next returned false
}

func (it *levelIter) Next() bool {
	it.s.mu.RLock()
	defer it.s.mu.RUnlock()
	it.key, it.value = nil, nil
	if it.inner == nil || it.done {
		return false
	}
	if !it.inner.Next() {
		it.done = true
		if err := it.inner.Error(); err != nil {
			it.err = wrapLevelErr("iterate", it.s.dir, err)
		}
		return false
	}
	it.key = it.inner.Key()[1:] // drop dataPrefix
	it.value = it.inner.Value()
	if it.value == nil {
		it.value = []byte{}
	}
	return true
}

func (it *levelIter) Key() []byte   { return it.key }
func (it *levelIter) Value() []byte { return it.value }

func (it *levelIter) Err() error {
	it.s.mu.RLock()
	defer it.s.mu.RUnlock()
	return it.err
}

func (it *levelIter) Close() error {
	it.s.mu.RLock()
	defer it.s.mu.RUnlock()
	if it.inner != nil {
		it.s.iterMu.Lock()
		delete(it.s.iters, it)
		it.s.iterMu.Unlock()
		it.release(nil)
	}
	it.key, it.value = nil, nil
	return nil
}

// release frees the LevelDB iterator, recording err if the iteration had
// neither ended nor failed. The caller holds the store's mu, shared or
// exclusive.
func (it *levelIter) release(err error) {
	it.inner.Release()
	it.inner = nil
	if !it.done {
		it.done = true
		it.err = err
	}
}
