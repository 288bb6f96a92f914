package state

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syndtr/goleveldb/leveldb"
	"github.com/syndtr/goleveldb/leveldb/storage"
)

func TestLevelDB(t *testing.T) {
	testStore(t, func(t *testing.T) Store { return openTestLevelDB(t, t.TempDir(), LevelDBOptions{}) })
}

func openTestLevelDB(t testing.TB, dir string, opts LevelDBOptions) *LevelDB {
	t.Helper()
	s, err := OpenLevelDB(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestLevelDBReopen(t *testing.T) {
	dir := t.TempDir()
	// A small write buffer, so that rows reach table files, not only the
	// journal.
	opts := LevelDBOptions{WriteBufferSize: 64 << 10}
	s := openTestLevelDB(t, dir, opts)
	var b Batch
	for i := range 2000 {
		b.Reset()
		b.Set(fmt.Appendf(nil, "k%05d", i), bytes.Repeat([]byte{byte(i)}, 100))
		b.Delete(fmt.Appendf(nil, "k%05d", i-1000))
		b.SetCheckpoint(int64(i + 1))
		if err := s.Apply(&b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestLevelDB(t, dir, opts)
	wantCheckpoint(t, s, 2000, true)
	got := scan(t, s, nil, nil)
	if len(got) != 1000 || got[0].k != "k01000" || got[999].k != "k01999" {
		t.Fatalf("after reopen: %d rows, first %q", len(got), got[0].k)
	}
	wantValue(t, s, "k01999", string(bytes.Repeat([]byte{byte(1999 % 256)}, 100)))
}

// TestLevelDBInterruptedClear opens a store left as a crash during Clear
// leaves it: checkpoint gone, marker set, rows still there.
func TestLevelDBInterruptedClear(t *testing.T) {
	dir := t.TempDir()
	s := openTestLevelDB(t, dir, LevelDBOptions{})
	apply(t, s, func(b *Batch) {
		for i := range 10 {
			b.Set(fmt.Appendf(nil, "k%d", i), []byte("v"))
		}
		b.SetCheckpoint(10)
	})
	var lb leveldb.Batch
	lb.Delete(checkpointKey)
	lb.Put(clearingKey, nil)
	if err := s.db.Write(&lb, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTestLevelDB(t, dir, LevelDBOptions{})
	wantCheckpoint(t, s, 0, false)
	if got := scan(t, s, nil, nil); len(got) != 0 {
		t.Fatalf("rows left after an interrupted Clear: %q", got)
	}
	if ok, err := s.db.Has(clearingKey, nil); ok || err != nil {
		t.Fatalf("marker still set: %v, %v", ok, err)
	}
}

func TestLevelDBRefusesForeignDatabase(t *testing.T) {
	dir := t.TempDir()
	db, err := leveldb.OpenFile(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Put([]byte("hello"), []byte("world"), nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = OpenLevelDB(dir, LevelDBOptions{})
	if err == nil || errors.Is(err, ErrCorrupted) || !strings.Contains(err.Error(), "not a runnel state store") {
		t.Fatalf("OpenLevelDB on a foreign database: %v", err)
	}
}

func TestLevelDBRefusesUnknownFormat(t *testing.T) {
	dir := t.TempDir()
	s := openTestLevelDB(t, dir, LevelDBOptions{})
	if err := s.db.Put(formatKey, []byte{99}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLevelDB(dir, LevelDBOptions{}); err == nil || !strings.Contains(err.Error(), "unsupported layout version") {
		t.Fatalf("OpenLevelDB with format 99: %v", err)
	}
}

func TestLevelDBBadOptions(t *testing.T) {
	if _, err := OpenLevelDB(t.TempDir(), LevelDBOptions{BlockCacheSize: -1}); err == nil {
		t.Fatal("negative BlockCacheSize accepted")
	}
}

func TestOpeners(t *testing.T) {
	dir := t.TempDir()
	s, err := LevelDBOpener(LevelDBOptions{})(dir)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, func(b *Batch) { b.Set([]byte("a"), []byte("1")) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A failed open yields a nil Store, not a nil *LevelDB inside one.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := LevelDBOpener(LevelDBOptions{})(file); err == nil || s != nil {
		t.Fatalf("opening a file as a store: %v, %v", s, err)
	}

	m1, _ := MemoryOpener()(dir)
	apply(t, m1, func(b *Batch) { b.Set([]byte("a"), []byte("1")) })
	m2, _ := MemoryOpener()(dir)
	wantMissing(t, m2, "a")
}

// writeRows fills a store in dir with enough rows to make table files.
func writeRows(t *testing.T, dir string) {
	t.Helper()
	s := openTestLevelDB(t, dir, LevelDBOptions{WriteBufferSize: 64 << 10})
	r := rand.New(rand.NewPCG(3, 4))
	value := make([]byte, 100)
	var b Batch
	for i := range 3000 {
		for j := range value { // incompressible, so tables span many blocks
			value[j] = byte(r.Uint32())
		}
		b.Reset()
		b.Set(fmt.Appendf(nil, "k%05d", i), value)
		b.SetCheckpoint(int64(i + 1))
		if err := s.Apply(&b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func globOne(t *testing.T, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("glob %s: %v, %v", pattern, m, err)
	}
	return m[0]
}

// TestLevelDBCorruptManifest: a damaged MANIFEST fails the open with
// ErrCorrupted, and the documented remedy (remove, reopen) works.
func TestLevelDBCorruptManifest(t *testing.T) {
	dir := t.TempDir()
	writeRows(t, dir)
	manifest := globOne(t, filepath.Join(dir, "MANIFEST-*"))
	fi, err := os.Stat(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifest, bytes.Repeat([]byte{0xa5}, int(fi.Size())), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = OpenLevelDB(dir, LevelDBOptions{})
	if !errors.Is(err, ErrCorrupted) {
		t.Fatalf("OpenLevelDB with a damaged MANIFEST: %v, want ErrCorrupted", err)
	}
	t.Log(err)

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	s := openTestLevelDB(t, dir, LevelDBOptions{})
	wantCheckpoint(t, s, 0, false)
}

// TestLevelDBCorruptTable: a damaged table block is reported as
// ErrCorrupted by the reads that touch it. The damage spares the first
// blocks, where the bookkeeping keys sort, so that the open succeeds.
func TestLevelDBCorruptTable(t *testing.T) {
	dir := t.TempDir()
	writeRows(t, dir)
	table := globOne(t, filepath.Join(dir, "*.ldb"))
	data, err := os.ReadFile(table)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 32<<10 {
		t.Fatalf("table %s has only %d bytes", table, len(data))
	}
	for i := 16 << 10; i < len(data)/2; i += 64 { // data blocks come first
		data[i] ^= 0xff
	}
	if err := os.WriteFile(table, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s := openTestLevelDB(t, dir, LevelDBOptions{})
	it := s.Iterate(nil, nil)
	for it.Next() {
	}
	it.Close()
	if !errors.Is(it.Err(), ErrCorrupted) {
		t.Fatalf("Iterate over a damaged table: %v, want ErrCorrupted", it.Err())
	}
	t.Log(it.Err())
}

// faultStorage fails journal writes once armed, after writing half of the
// bytes, as a full disk or an I/O error would leave the journal.
type faultStorage struct {
	storage.Storage
	armed atomic.Bool
}

func (s *faultStorage) Create(fd storage.FileDesc) (storage.Writer, error) {
	w, err := s.Storage.Create(fd)
	if err != nil || fd.Type != storage.TypeJournal {
		return w, err
	}
	return &faultWriter{Writer: w, s: s}, nil
}

type faultWriter struct {
	storage.Writer
	s *faultStorage
}

var errInjected = errors.New("injected write error")

func (w *faultWriter) Write(p []byte) (int, error) {
	if w.s.armed.Load() {
		n, _ := w.Writer.Write(p[:len(p)/2])
		return n, errInjected
	}
	return w.Writer.Write(p)
}

// TestLevelDBFailedWriteLeavesNothing: an Apply whose journal write fails
// leaves none of its rows and not its checkpoint, neither in the open store
// nor after reopening, although half of it reached the journal.
func TestLevelDBFailedWriteLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	fs, err := storage.OpenFile(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	stor := &faultStorage{Storage: fs}
	s, err := openLevelDB(dir, stor, LevelDBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, func(b *Batch) {
		b.Set([]byte("before"), []byte("1"))
		b.SetCheckpoint(1)
	})
	stor.armed.Store(true)
	var b Batch
	for i := range 1000 { // larger than a journal block, so several writes
		b.Set(fmt.Appendf(nil, "k%04d", i), bytes.Repeat([]byte("x"), 100))
	}
	b.Delete([]byte("before"))
	b.SetCheckpoint(2)
	if err := s.Apply(&b); !errors.Is(err, errInjected) {
		t.Fatalf("Apply with a failing journal: %v", err)
	}
	check := func(s Store) {
		t.Helper()
		wantValue(t, s, "before", "1")
		wantMissing(t, s, "k0000")
		wantCheckpoint(t, s, 1, true)
		if got := scan(t, s, nil, nil); len(got) != 1 {
			t.Fatalf("%d rows, want 1", len(got))
		}
	}
	check(s)
	_ = s.Close() // may report the write error again

	s2 := openTestLevelDB(t, dir, LevelDBOptions{})
	check(s2)
}

const crashDirEnv = "RUNNEL_STATE_CRASH_DIR"

// TestLevelDBCrashChild is the child of TestLevelDBCrash: it writes batches
// to the store in $RUNNEL_STATE_CRASH_DIR, printing the number of each one
// Apply has returned, until it is killed.
//
// Batch i sets "n" to i, "slot/<i%64>" to i and a filler row, and sets the
// checkpoint to i. It continues from the checkpoint it finds.
func TestLevelDBCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestLevelDBCrash")
	}
	s, err := OpenLevelDB(dir, LevelDBOptions{WriteBufferSize: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	next, ok, err := s.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		next++
	}
	filler := bytes.Repeat([]byte("f"), 300)
	out := bufio.NewWriter(os.Stdout)
	var b Batch
	deadline := time.Now().Add(time.Minute) // never outlive a lost parent for long
	for i := next; time.Now().Before(deadline); i++ {
		b.Reset()
		n := strconv.AppendInt(nil, i, 10)
		b.Set([]byte("n"), n)
		b.Set(fmt.Appendf(nil, "slot/%02d", i%64), n)
		b.Set(fmt.Appendf(nil, "fill/%04d", i%3000), filler)
		b.SetCheckpoint(i)
		if err := s.Apply(&b); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(out, i)
		if i%16 == 0 {
			out.Flush()
		}
	}
}

// TestLevelDBCrash kills a writing process (kill -9) at random moments, with
// Sync off, and checks that every reopened store is consistent: its
// checkpoint is the number of the last batch it holds, every batch up to it
// is whole, and no batch whose Apply had returned is lost (the journal write
// reached the OS before Apply returned).
func TestLevelDBCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	acked := int64(-1)
	for round := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLevelDBCrashChild$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var last atomic.Int64
		last.Store(acked)
		var wg sync.WaitGroup
		wg.Go(func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if i, err := strconv.ParseInt(sc.Text(), 10, 64); err == nil {
					last.Store(i)
				}
			}
		})
		// Let the child get going, then kill it at a random moment.
		target := acked + 200 + rand.Int64N(3000)
		deadline := time.Now().Add(30 * time.Second)
		for last.Load() < target && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		_ = cmd.Wait() // killed: an error by design
		if last.Load() <= acked {
			t.Fatalf("round %d: child made no progress", round)
		}
		acked = last.Load()

		s, err := OpenLevelDB(dir, LevelDBOptions{})
		if err != nil {
			t.Fatalf("round %d: reopen after kill -9: %v", round, err)
		}
		cp, ok, err := s.Checkpoint()
		if err != nil || !ok {
			t.Fatalf("round %d: Checkpoint = %d, %v, %v", round, cp, ok, err)
		}
		if n := mustGet(t, s, "n"); string(n) != strconv.FormatInt(cp, 10) {
			t.Fatalf("round %d: checkpoint %d but n = %s", round, cp, n)
		}
		if cp < acked {
			t.Fatalf("round %d: checkpoint %d, but batch %d was acknowledged", round, cp, acked)
		}
		for slot := range int64(64) {
			want := cp - ((cp-slot)%64+64)%64 // the last batch <= cp that wrote slot
			got := mustGet(t, s, fmt.Sprintf("slot/%02d", slot))
			if want < 0 {
				if got != nil {
					t.Fatalf("round %d: slot %d = %s, never written", round, slot, got)
				}
				continue
			}
			if string(got) != strconv.FormatInt(want, 10) {
				t.Fatalf("round %d: checkpoint %d, slot %d = %s, want %d", round, cp, slot, got, want)
			}
		}
		t.Logf("round %d: killed after batch %d acknowledged; reopened at checkpoint %d", round, acked, cp)
		acked = cp
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
