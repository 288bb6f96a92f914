package storage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dirNames lists a directory, or nothing if it does not exist.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// A topic past the partition limits is refused before anything is
// written: a CreateTopics of 20,000 (or 2^31-1) partitions once ran the
// broker out of descriptors halfway and left a topic.json that kept it
// from starting.
func TestPartitionLimits(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, Options{MaxPartitionsPerTopic: 8, MaxPartitions: 12})
	checkRefused := func(err error, limit string) {
		t.Helper()
		wantErr(t, err, ErrInvalidPartitions, "over "+limit)
		if !strings.Contains(err.Error(), limit) {
			t.Fatalf("error %q does not name the limit %q", err, limit)
		}
		if got := dirNames(t, filepath.Join(dir, "deleting")); len(got) > 0 {
			t.Fatalf("a refused request left %v in deleting/", got)
		}
	}
	_, err := l.CreateTopic("big", 9, nil)
	checkRefused(err, "limit of 8 per topic")
	_, err = l.CreateTopic("huge", 1<<31-1, nil)
	checkRefused(err, "limit of 8 per topic")
	if got := dirNames(t, filepath.Join(dir, "topics")); len(got) > 0 {
		t.Fatalf("refused creates left %v in topics/", got)
	}

	mustCreate(t, l, "a", 8, nil)
	_, err = l.CreateTopic("b", 5, nil)
	checkRefused(err, "limit of 12 in the log")
	mustCreate(t, l, "b", 2, nil)
	checkRefused(l.CreatePartitions("b", 9), "limit of 8 per topic")
	checkRefused(l.CreatePartitions("b", 5), "limit of 12 in the log")
	if got := dirNames(t, filepath.Join(dir, "topics", "b")); len(got) != 3 { // topic.json, 0, 1
		t.Fatalf("topic b holds %v after refused additions, want topic.json, 0 and 1", got)
	}
	if err := l.CreatePartitions("b", 4); err != nil {
		t.Fatalf("add partitions within the limits: %v", err)
	}
	// Deleting a topic gives its partitions back.
	if err := l.DeleteTopic("a"); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, l, "c", 8, nil)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// The count is rebuilt when the log opens.
	l = openLog(t, dir, Options{MaxPartitionsPerTopic: 8, MaxPartitions: 12})
	_, err = l.CreateTopic("d", 1, nil)
	checkRefused(err, "limit of 12 in the log")
}

func TestPartitionLimitDefaults(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{})
	_, err := l.CreateTopic("t", DefaultMaxPartitionsPerTopic+1, nil)
	wantErr(t, err, ErrInvalidPartitions, "default per-topic limit")
}
