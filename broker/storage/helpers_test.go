package storage

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// openLog opens a log in dir with test-friendly defaults and closes it when
// the test ends (a second Close is harmless).
func openLog(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func mustCreate(t testing.TB, l *Log, name string, partitions int32, cfg map[string]string) *Topic {
	t.Helper()
	tp, err := l.CreateTopic(name, partitions, cfg)
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	return tp
}

// kv makes a record; a nil value is a tombstone.
func kv(key, value string) Record {
	r := Record{Key: []byte(key)}
	if value != "\x00tombstone" {
		r.Value = []byte(value)
	}
	return r
}

const tombstone = "\x00tombstone"

func mustBatch(t testing.TB, ts int64, recs ...Record) []byte {
	t.Helper()
	b, err := NewBatch(CompressionNone, ts, recs...)
	if err != nil {
		t.Fatalf("build batch: %v", err)
	}
	return b
}

func mustAppend(t testing.TB, p *Partition, b []byte) AppendResult {
	t.Helper()
	res, err := p.Append(b)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return res
}

// readAll reads a partition from offset to its high watermark and decodes
// every batch, checking that batches come in offset order.
func readAll(t testing.TB, p *Partition, from int64) ([]BatchHeader, []offsetRecord) {
	t.Helper()
	var hdrs []BatchHeader
	var recs []offsetRecord
	next := from
	hw := p.HighWatermark()
	for next < hw {
		r, err := p.Read(next, 1<<20, -1)
		if err != nil {
			t.Fatalf("read %s at %d: %v", p, next, err)
		}
		if r.Len() == 0 {
			break
		}
		b, err := r.AppendTo(nil)
		if err != nil {
			t.Fatalf("copy records: %v", err)
		}
		for len(b) > 0 {
			h, recsOf, err := DecodeRecords(b[:batchSizeOf(t, b)])
			if err != nil {
				t.Fatalf("decode batch read from %s: %v", p, err)
			}
			if len(hdrs) > 0 && h.BaseOffset <= hdrs[len(hdrs)-1].LastOffset() {
				t.Fatalf("batch at %d follows batch ending at %d", h.BaseOffset, hdrs[len(hdrs)-1].LastOffset())
			}
			if h.LastOffset() >= next {
				hdrs = append(hdrs, h)
				for _, rec := range recsOf {
					off := h.BaseOffset + int64(rec.OffsetDelta)
					if off >= next {
						recs = append(recs, offsetRecord{off, string(rec.Key), rec.Value})
					}
				}
				next = h.LastOffset() + 1
			}
			b = b[h.Size():]
		}
	}
	return hdrs, recs
}

type offsetRecord struct {
	offset int64
	key    string
	value  []byte
}

func batchSizeOf(t testing.TB, b []byte) int {
	h, err := ParseBatchHeader(b)
	if err != nil {
		t.Fatalf("parse header: %v", err)
	}
	return h.Size()
}

// clock is a settable test clock, safe to read from the log's goroutines.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func wantErr(t testing.TB, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %v", what, err, target)
	}
}
