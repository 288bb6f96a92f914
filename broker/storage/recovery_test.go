package storage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// appendN appends n one-record batches and returns the log position (byte
// offset in the active segment) at which each batch starts.
func appendN(t *testing.T, p *Partition, n int) []int64 {
	t.Helper()
	var pos []int64
	for i := range n {
		p.mu.RLock()
		pos = append(pos, p.segs[len(p.segs)-1].size)
		p.mu.RUnlock()
		mustAppend(t, p, mustBatch(t, int64(i), kv(fmt.Sprintf("k%d", i), fmt.Sprintf("value-%d", i))))
	}
	return pos
}

// crashCopy simulates an unclean stop: it closes the log (so the files are
// complete), then removes the clean-shutdown marker so the next Open
// recovers as if the process had died.
func crashCopy(t *testing.T, l *Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(l.Dir(), cleanShutdownFile)); err != nil {
		t.Fatal(err)
	}
}

func activeSegmentPath(t *testing.T, dir, topic string, part int) string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "topics", topic, strconv.Itoa(part), "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(matches) == 0 {
		t.Fatal("no segment files")
	}
	return matches[len(matches)-1]
}

// tailDamages are what a crash or a power cut may leave at the end of a
// segment whose last batch starts at lastPos and which is size bytes long.
var tailDamages = []struct {
	name   string
	damage func(t *testing.T, path string, lastPos, size int64)
}{
	{"torn last batch", func(t *testing.T, path string, lastPos, size int64) {
		if err := os.Truncate(path, lastPos+(size-lastPos)/2); err != nil {
			t.Fatal(err)
		}
	}},
	{"last batch lost whole", func(t *testing.T, path string, lastPos, size int64) {
		if err := os.Truncate(path, lastPos); err != nil {
			t.Fatal(err)
		}
	}},
	{"flipped byte in last batch", func(t *testing.T, path string, lastPos, size int64) {
		b := make([]byte, 1)
		readAtFile(t, path, b, size-3)
		b[0] ^= 0x40
		writeAtFile(t, path, b, size-3)
	}},
	{"zeros after the last batch", func(t *testing.T, path string, lastPos, size int64) {
		// What a filesystem may show after power loss: the size grew
		// but the data never landed. Here the last batch itself is
		// zeroed, and zeros follow it.
		writeAtFile(t, path, make([]byte, size-lastPos+500), lastPos)
	}},
	{"header length runs past the file", func(t *testing.T, path string, lastPos, size int64) {
		writeAtFile(t, path, []byte{0x7f, 0, 0, 0}, lastPos+offBatchLength)
	}},
}

func readAtFile(t *testing.T, path string, b []byte, pos int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(b, pos); err != nil {
		t.Fatalf("read %s at %d: %v", path, pos, err)
	}
}

func writeAtFile(t *testing.T, path string, b []byte, pos int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, pos); err != nil {
		t.Fatalf("write %s at %d: %v", path, pos, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRecoveryTruncatesTornTail(t *testing.T) {
	for _, c := range tailDamages {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, Options{Durability: DurabilityAlways})
			mustCreate(t, l, "t", 1, nil)
			p, _ := l.Partition("t", 0)
			pos := appendN(t, p, 10)
			size := p.Size()
			crashCopy(t, l)
			path := activeSegmentPath(t, dir, "t", 0)
			c.damage(t, path, pos[9], size)

			l = openLog(t, dir, Options{})
			p, _ = l.Partition("t", 0)
			if leo := p.LogEndOffset(); leo != 9 {
				t.Fatalf("log end offset after recovery %d, want 9 (cut exactly at the damaged batch)", leo)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != pos[9] {
				t.Fatalf("segment is %d bytes after recovery, want %d (start of the damaged batch)", st.Size(), pos[9])
			}
			_, recs := readAll(t, p, 0)
			if len(recs) != 9 {
				t.Fatalf("%d records survive, want the 9 intact ones", len(recs))
			}
			for i, r := range recs {
				if string(r.value) != fmt.Sprintf("value-%d", i) {
					t.Fatalf("record %d reads %q", i, r.value)
				}
			}
			res := mustAppend(t, p, mustBatch(t, 1, kv("after", "recovery")))
			if res.BaseOffset != 9 {
				t.Fatalf("first append after recovery got offset %d, want 9", res.BaseOffset)
			}
		})
	}
}

// A torn tail in a segment that is not the last (one that rolled before
// its tail reached the disk, on a disk that lies about syncs) is cut like
// the last segment's, and the segments after it are removed: the log stays
// one run of offsets, with no hole where the torn batches were.
func TestRecoveryTornTailOfClosedSegment(t *testing.T) {
	for _, c := range tailDamages {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir, Options{Durability: DurabilityAlways, IndexIntervalBytes: 64})
			mustCreate(t, l, "t", 1, map[string]string{ConfigSegmentBytes: "1000"})
			p, _ := l.Partition("t", 0)
			appendN(t, p, 40)
			p.mu.RLock()
			if len(p.segs) < 4 {
				t.Fatalf("want at least 4 segments, have %d", len(p.segs))
			}
			victim := p.segs[1]
			path, lastPos, size, cutAt := victim.path, victim.lastPos, victim.size, victim.lastOffset
			var later []string
			for _, s := range p.segs[2:] {
				later = append(later, s.path)
			}
			p.mu.RUnlock()
			crashCopy(t, l)
			c.damage(t, path, lastPos, size)

			l = openLog(t, dir, Options{IndexIntervalBytes: 64})
			p, _ = l.Partition("t", 0)
			if leo := p.LogEndOffset(); leo != cutAt {
				t.Fatalf("log end offset after recovery %d, want %d (cut at the damaged batch of the second segment)", leo, cutAt)
			}
			for _, path := range later {
				if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("segment %s after the torn one is still there (%v)", filepath.Base(path), err)
				}
			}
			_, recs := readAll(t, p, 0)
			if int64(len(recs)) != cutAt {
				t.Fatalf("%d records survive, want the %d before the damage", len(recs), cutAt)
			}
			for i, r := range recs {
				if r.offset != int64(i) || string(r.value) != fmt.Sprintf("value-%d", i) {
					t.Fatalf("record %d reads offset %d, %q", i, r.offset, r.value)
				}
			}
			res := mustAppend(t, p, mustBatch(t, 1, kv("after", "recovery")))
			if res.BaseOffset != cutAt {
				t.Fatalf("first append after recovery got offset %d, want %d", res.BaseOffset, cutAt)
			}
		})
	}
}

// Indexes that are missing or wrong are rebuilt from the log.
func TestRecoveryRebuildsBadIndexes(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{Durability: DurabilityAlways, IndexIntervalBytes: 64})
	mustCreate(t, l, "t", 1, map[string]string{ConfigSegmentBytes: "2000"})
	p, _ := l.Partition("t", 0)
	appendN(t, p, 100)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	idx, err := filepath.Glob(filepath.Join(dir, "topics", "t", "0", "*.index"))
	if err != nil {
		t.Fatal(err)
	}
	tidx, err := filepath.Glob(filepath.Join(dir, "topics", "t", "0", "*.timeindex"))
	if err != nil {
		t.Fatal(err)
	}
	if len(idx) < 3 || len(tidx) < 3 {
		t.Fatalf("want several segments, have %d index and %d time index files", len(idx), len(tidx))
	}
	if err := os.Remove(idx[0]); err != nil { // missing
		t.Fatal(err)
	}
	if err := os.WriteFile(idx[1], []byte{1, 2, 3}, 0o644); err != nil { // wrong size
		t.Fatal(err)
	}
	b, err := os.ReadFile(tidx[2]) // out of order entries
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2*timeEntrySize {
		t.Fatalf("time index %s has %d bytes, too few to put out of order", tidx[2], len(b))
	}
	copy(b, []byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	if err := os.WriteFile(tidx[2], b, 0o644); err != nil {
		t.Fatal(err)
	}

	l = openLog(t, dir, Options{IndexIntervalBytes: 64})
	p, _ = l.Partition("t", 0)
	_, recs := readAll(t, p, 0)
	if len(recs) != 100 {
		t.Fatalf("%d records after index rebuild, want 100", len(recs))
	}
	for i := range 100 {
		r, err := p.Read(int64(i), 1, -1)
		if err != nil {
			t.Fatal(err)
		}
		bb, err := r.AppendTo(nil)
		if err != nil {
			t.Fatal(err)
		}
		_, got, err := DecodeRecords(bb)
		if err != nil || len(got) != 1 || string(got[0].Value) != fmt.Sprintf("value-%d", i) {
			t.Fatalf("read at offset %d after rebuild: %v %v", i, got, err)
		}
		if off, _, err := p.OffsetForTimestamp(int64(i)); err != nil || off != int64(i) {
			t.Fatalf("offset for timestamp %d is %d after rebuild: %v", i, off, err)
		}
	}
	if st, err := os.Stat(idx[0]); err != nil || st.Size() == 0 {
		t.Fatalf("missing index was not rewritten: %v", err)
	}
}

// TestCrashChild is the child process of TestKillDuringAppends; it does
// nothing unless started by it.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("RUNNEL_CRASH_DIR")
	if dir == "" {
		t.Skip("child process of TestKillDuringAppends")
	}
	mode, _ := ParseDurability(os.Getenv("RUNNEL_CRASH_FSYNC"))
	l, err := Open(dir, Options{Durability: mode})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	if l.Topic("crash") == nil {
		if _, err := l.CreateTopic("crash", 3, map[string]string{ConfigSegmentBytes: "50000"}); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
	}
	out := bufio.NewWriter(os.Stdout)
	round := os.Getenv("RUNNEL_CRASH_ROUND")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for seq := 0; ; seq++ {
		pi := int32(rng.IntN(3))
		p, _ := l.Partition("crash", pi)
		recs := make([]Record, 1+rng.IntN(20))
		for i := range recs {
			recs[i] = kv("k"+strconv.Itoa(i), fmt.Sprintf("round %s seq %d rec %d %s", round, seq, i, strings.Repeat("x", rng.IntN(200))))
		}
		b, _ := NewBatch(Compression(rng.IntN(5)), time.Now().UnixMilli(), recs...)
		res, err := p.Append(b)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		if err := p.WaitDurable(context.Background(), res.LastOffset); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		h, _ := ParseBatchHeader(b)
		fmt.Fprintf(out, "durable %d %d %d %d\n", pi, res.BaseOffset, h.Size(), h.CRC)
		out.Flush()
	}
}

// A child process appends and reports each batch once durable; it is killed
// with SIGKILL at random moments. After every kill the log reopens, every
// reported batch is present and intact at its offset, and the log takes
// new appends.
func TestKillDuringAppends(t *testing.T) {
	rounds := 30
	if testing.Short() {
		rounds = 8
	}
	dir := t.TempDir()
	type durable struct {
		part int32
		off  int64
		size int
		crc  uint32
	}
	var all []durable
	rng := rand.New(rand.NewPCG(42, 42))
	for round := range rounds {
		fsync := "interval"
		if round%3 == 2 {
			fsync = "always"
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v=false")
		cmd.Env = append(os.Environ(), "RUNNEL_CRASH_DIR="+dir, "RUNNEL_CRASH_FSYNC="+fsync, "RUNNEL_CRASH_ROUND="+strconv.Itoa(round))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Kill after a random number of acknowledged batches, so the kill
		// lands while appends are in full flow.
		target := 5 + rng.IntN(200)
		n := 0
		for line := range lines {
			if strings.HasPrefix(line, "error") {
				t.Fatalf("round %d: child: %s", round, line)
			}
			var d durable
			if _, err := fmt.Sscanf(line, "durable %d %d %d %d", &d.part, &d.off, &d.size, &d.crc); err != nil {
				continue // test framework chatter
			}
			all = append(all, d)
			if n++; n == target {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		cmd.Wait()
		if n < target {
			t.Fatalf("round %d: child exited after %d batches, before the kill", round, n)
		}

		l, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		for _, d := range all {
			p, _ := l.Partition("crash", d.part)
			r, err := p.Read(d.off, 1, -1)
			if err != nil {
				t.Fatalf("round %d: batch at %s-%d reported durable: %v", round, "crash", d.off, err)
			}
			b, err := r.AppendTo(nil)
			if err != nil {
				t.Fatal(err)
			}
			h, err := ValidateBatch(b)
			if err != nil || h.BaseOffset != d.off || h.Size() != d.size || h.CRC != d.crc {
				t.Fatalf("round %d: batch reported durable at partition %d offset %d (size %d, crc %d) reads back as %+v, %v", round, d.part, d.off, d.size, d.crc, h, err)
			}
		}
		p, _ := l.Partition("crash", 0)
		leo := p.LogEndOffset()
		res, err := p.Append(mustBatch(t, 1, kv("after", "kill")))
		if err != nil || res.BaseOffset != leo {
			t.Fatalf("round %d: append after recovery: offset %d (log end was %d), %v", round, res.BaseOffset, leo, err)
		}
		all = append(all, durable{0, res.BaseOffset, 0, 0})
		all[len(all)-1].size, all[len(all)-1].crc = batchFacts(t, p, res.BaseOffset)
		if round%2 == 0 {
			// Half the time leave it for the child to recover.
			crashCopy(t, l)
		} else if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d rounds, %d durable batches checked after every kill", rounds, len(all))
}

func batchFacts(t *testing.T, p *Partition, off int64) (int, uint32) {
	t.Helper()
	if err := p.WaitDurable(context.Background(), off); err != nil {
		t.Fatal(err)
	}
	r, err := p.Read(off, 1, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseBatchHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	return h.Size(), h.CRC
}
