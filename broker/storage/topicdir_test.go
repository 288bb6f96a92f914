package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/runnel-io/runnel/broker/storage/internal/vfs"
)

// Every name Kafka allows is a topic that can be created, survives a
// restart, and is deleted for good. Names of 219-235 characters once
// half-deleted ("file name too long" renaming them into deleting/) and came
// back after a restart; 236-249 could not be created.
func TestTopicNameLengths(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{1, 200, 201, 219, 235, 249} {
		name := strings.Repeat("x", n-1) + string(rune('a'+n%26))
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			l := openLog(t, dir, Options{})
			tp := mustCreate(t, l, name, 2, map[string]string{ConfigRetentionMs: "-1"})
			mustAppend(t, tp.Partition(1), mustBatch(t, 1000, kv("k", "v")))
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			for _, e := range dirNames(t, filepath.Join(dir, "topics")) {
				if len(e) > maxPlainDirName {
					t.Fatalf("topic directory name of %d characters", len(e))
				}
			}

			l = openLog(t, dir, Options{})
			tp = l.Topic(name)
			if tp == nil || tp.NumPartitions() != 2 || tp.Overrides()[ConfigRetentionMs] != "-1" {
				t.Fatalf("after a restart the topic is %v", tp)
			}
			if _, recs := readAll(t, tp.Partition(1), 0); len(recs) != 1 {
				t.Fatalf("after a restart partition 1 holds %d records, want 1", len(recs))
			}
			if err := l.DeleteTopic(name); err != nil {
				t.Fatalf("delete: %v", err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}

			l = openLog(t, dir, Options{})
			if l.Topic(name) != nil {
				t.Fatal("a deleted topic came back after a restart")
			}
			if got := dirNames(t, filepath.Join(dir, "topics")); len(got) > 0 {
				t.Fatalf("topics/ holds %v after the delete", got)
			}
			mustCreate(t, l, name, 1, nil)
			if err := l.DeleteTopic(name); err != nil {
				t.Fatal(err)
			}
			l.Close()
		})
	}
}

// A data directory written before long names were hashed keeps its
// topics: the directory is found by topic.json's name either way.
func TestLongTopicInPlainDirectoryOpens(t *testing.T) {
	dir := t.TempDir()
	name := strings.Repeat("y", 210)
	l := openLog(t, dir, Options{})
	mustAppend(t, mustCreate(t, l, name, 1, nil).Partition(0), mustBatch(t, 1000, kv("k", "v")))
	l.Close()
	topics := filepath.Join(dir, "topics")
	if err := os.Rename(filepath.Join(topics, topicDirName(name)), filepath.Join(topics, name)); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, Options{})
	tp := l.Topic(name)
	if tp == nil {
		t.Fatal("the topic in a plain directory did not open")
	}
	if _, recs := readAll(t, tp.Partition(0), 0); len(recs) != 1 {
		t.Fatalf("partition holds %d records, want 1", len(recs))
	}
	if err := l.DeleteTopic(name); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, topics); len(got) > 0 {
		t.Fatalf("topics/ holds %v after the delete", got)
	}
}

// buildDeleteImage returns a MemFS holding a log, closed cleanly or not,
// with topics "keep" and "gone" of two partitions and a few records each.
func buildDeleteImage(t *testing.T, clean bool) *vfs.MemFS {
	t.Helper()
	l, m := newMemLog(t, Options{Durability: DurabilityAlways})
	for _, name := range []string{"keep", "gone"} {
		tp := mustCreate(t, l, name, 2, nil)
		for i := range 3 {
			mustAppend(t, tp.Partition(int32(i%2)), mustBatch(t, 1000, kv("k", name)))
		}
	}
	if clean {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return m.Restart()
	}
	disk := m.Restart() // kill -9
	l.Close()
	return disk
}

// A delete is atomic across a power cut: after the cut at any point of a
// DeleteTopic, the log opens, the topic is whole or gone, gone if
// DeleteTopic returned, and the other topic untouched.
func TestDeleteTopicPowerCut(t *testing.T) {
	// Count the operations of a delete, then cut after each of them.
	var total int64
	{
		m := buildDeleteImage(t, true)
		l, err := Open("/log", Options{fs: m})
		if err != nil {
			t.Fatal(err)
		}
		before := m.Ops()
		if err := l.DeleteTopic("gone"); err != nil {
			t.Fatal(err)
		}
		total = m.Ops() - before
		l.Close()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for k := int64(1); k <= total+1; k++ {
		for _, clean := range []bool{true, false} {
			m := buildDeleteImage(t, clean)
			l, err := Open("/log", Options{fs: m})
			if err != nil {
				t.Fatal(err)
			}
			m.CutAfter(k)
			derr := l.DeleteTopic("gone")
			disk := m.Crash(rng)
			l.Close()
			l2, err := Open("/log", Options{fs: disk})
			if err != nil {
				t.Fatalf("cut after operation %d of the delete: open: %v", k, err)
			}
			if derr == nil && l2.Topic("gone") != nil {
				t.Fatalf("cut after operation %d: the deleted topic came back", k)
			}
			for _, name := range []string{"keep", "gone"} {
				tp := l2.Topic(name)
				if tp == nil {
					if name == "keep" {
						t.Fatalf("cut after operation %d: topic keep is gone", k)
					}
					continue
				}
				n := 0
				for _, p := range tp.Partitions() {
					_, recs := readAll(t, p, 0)
					n += len(recs)
				}
				if n != 3 {
					t.Fatalf("cut after operation %d: topic %s holds %d records, want 3", k, name, n)
				}
			}
			if got, _ := disk.ReadDir("/log/deleting"); len(got) > 0 {
				t.Fatalf("cut after operation %d: deleting/ holds %d entries after open", k, len(got))
			}
			l2.Close()
		}
	}
}

// Leftovers of an interrupted delete never keep the log from opening: a
// deleting/ directory that cannot be cleared, a topic directory without
// its topic.json.
func TestHalfDeletedTopicDoesNotBlockOpen(t *testing.T) {
	m := buildDeleteImage(t, true)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.MkdirAll("/log/deleting/leftover/0", 0o755))
	must(m.MkdirAll("/log/topics/half/0", 0o755))
	m.SetFault(func(op, name string) error {
		if op == "removeall" && strings.HasPrefix(name, "/log/deleting") {
			return syscall.EIO
		}
		return nil
	})
	l, err := Open("/log", Options{fs: m})
	if err != nil {
		t.Fatalf("open with leftovers: %v", err)
	}
	defer l.Close()
	if l.Topic("keep") == nil || l.Topic("gone") == nil || l.Topic("half") != nil {
		t.Fatalf("topics after open: %v", l.Topics())
	}
}

// A create that fails halfway, as one of 20,000 partitions did when the
// broker ran out of descriptors, takes back what it wrote: the topic does
// not exist, the log reopens, and the name can be created again.
func TestFailedCreateLeavesNothing(t *testing.T) {
	l, m := newMemLog(t, Options{})
	m.SetFault(failOnce("open", "/3/", syscall.EMFILE))
	if _, err := l.CreateTopic("t", 6, nil); !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("create with a failing open: %v, want EMFILE", err)
	}
	if l.Topic("t") != nil {
		t.Fatal("a failed create left the topic in the log")
	}
	if es, _ := m.ReadDir("/log/topics"); len(es) > 0 {
		t.Fatalf("a failed create left %d entries in topics/", len(es))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	disk := m.Crash(nil)
	l2, err := Open("/log", Options{fs: disk})
	if err != nil {
		t.Fatalf("open after a failed create: %v", err)
	}
	defer l2.Close()
	if l2.Topic("t") != nil {
		t.Fatal("a failed create came back after a restart")
	}
	mustCreate(t, l2, "t", 6, nil)
}
