package storage

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runnel-io/runnel/broker/storage/internal/vfs"
)

// newMemLog opens a log in /log of a fresh MemFS.
func newMemLog(t *testing.T, opts Options) (*Log, *vfs.MemFS) {
	t.Helper()
	m := vfs.NewMemFS()
	if err := m.MkdirAll("/log", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.SyncDir("/"); err != nil {
		t.Fatal(err)
	}
	opts.fs = m
	l, err := Open("/log", opts)
	if err != nil {
		t.Fatal(err)
	}
	return l, m
}

// failOnce returns a fault that fails the first op on a file whose name
// contains part, with err.
func failOnce(op, part string, err error) func(string, string) error {
	var done atomic.Bool
	return func(o, name string) error {
		if o == op && strings.Contains(name, part) && done.CompareAndSwap(false, true) {
			return err
		}
		return nil
	}
}

var errEIO = errors.New("injected EIO")

// A failed fdatasync or write takes the partition offline for good: the
// sync is never retried into a success (on Linux a retried fsync can
// succeed after the kernel dropped the dirty pages, which is what MemFS
// does too), nothing after the failure is acknowledged or served, other
// partitions carry on, and the log reopens with recovery, with everything
// acknowledged before the failure intact.
func TestDiskErrorTakesPartitionOffline(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy Durability
		op     string
	}{
		{"fdatasync/interval", DurabilityInterval, "sync"},
		{"fdatasync/always", DurabilityAlways, "sync"},
		{"write/interval", DurabilityInterval, "write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Durability: tc.policy, FlushInterval: time.Millisecond, LazyFlushInterval: time.Millisecond}
			l, m := newMemLog(t, opts)
			tp := mustCreate(t, l, "t", 2, nil)
			p, q := tp.Partition(0), tp.Partition(1)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ack := func(p *Partition, v string) (AppendResult, error) {
				res, err := p.Append(mustBatch(t, 1000, kv("k", v)))
				if err == nil {
					err = p.WaitDurable(ctx, res.LastOffset)
				}
				return res, err
			}
			if _, err := ack(p, "acked-1"); err != nil {
				t.Fatal(err)
			}
			if _, err := ack(p, "acked-2"); err != nil {
				t.Fatal(err)
			}
			hw := p.HighWatermark()

			m.SetFault(failOnce(tc.op, "/t/0/", errEIO))
			_, err := ack(p, "lost")
			wantErr(t, err, ErrStorage, "append when the disk fails")
			if !p.Offline() || l.OfflinePartitions() != 1 {
				t.Fatalf("Offline() = %v, OfflinePartitions() = %d after a disk error", p.Offline(), l.OfflinePartitions())
			}
			// Later syncs would succeed, and must not be used.
			for i := range 3 {
				_, err := ack(p, "after")
				wantErr(t, err, ErrStorage, "append to an offline partition")
				_, err = p.Read(0, 1<<20, -1)
				wantErr(t, err, ErrStorage, "read of an offline partition")
				if i == 0 {
					// Give the flusher rounds in which it could retry.
					if _, err := ack(q, "other"); err != nil {
						t.Fatalf("another partition after the failure: %v", err)
					}
				}
			}
			wantErr(t, p.SyncTo(hw+1), ErrStorage, "sync of an offline partition")
			if got := p.HighWatermark(); got != hw {
				t.Fatalf("high watermark moved from %d to %d after the failure", hw, got)
			}
			if err := l.Close(); !errors.Is(err, ErrStorage) {
				t.Fatalf("close with an offline partition: %v, want ErrStorage", err)
			}

			// The power goes: what was acknowledged is on the disk, and
			// the log comes back with recovery (no clean-shutdown marker).
			disk := m.Crash(nil)
			if _, err := disk.Stat("/log/" + cleanShutdownFile); err == nil {
				t.Fatal("a log closed with an offline partition was marked clean")
			}
			opts.fs = disk
			l2, err := Open("/log", opts)
			if err != nil {
				t.Fatalf("reopen after the disk error: %v", err)
			}
			defer l2.Close()
			p2, _ := l2.Partition("t", 0)
			if p2.Offline() {
				t.Fatal("partition still offline after reopening")
			}
			_, recs := readAll(t, p2, 0)
			var vals []string
			for _, r := range recs {
				vals = append(vals, string(r.value))
			}
			if got := strings.Join(vals, ","); got != "acked-1,acked-2" {
				t.Fatalf("after the crash partition 0 holds %q, want acked-1,acked-2", got)
			}
			res, err := p2.Append(mustBatch(t, 1000, kv("k", "again")))
			if err == nil {
				err = p2.WaitDurable(ctx, res.LastOffset)
			}
			if err != nil || res.BaseOffset != 2 {
				t.Fatalf("append after recovery: offset %d, %v; want offset 2", res.BaseOffset, err)
			}
		})
	}
}
