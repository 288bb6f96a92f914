package storage

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// Benchmarks for the storage engine's hot paths, each beside its peer: a
// plain sequential file write of the same bytes, in the same run. Compare
// with:
//
//	go test ./broker/storage -run '^$' -bench 'Append|PlainWrite|Read' -benchtime 2s -count 5 | tee bench.txt
//
// Every write benchmark ends with its data durable (a final fsync or the
// wait for the covering group commit), so the figures compare like with
// like. BenchmarkAppend/interval appends with nobody waiting (acks=0), so
// its group commits are lazy; BenchmarkAppendAcked waits for each batch,
// as acks=all producers do.

const benchBatchSize = 16 << 10

func benchBatch(b *testing.B) []byte {
	b.Helper()
	// 16 records of ~1 KiB: a typical producer batch, uncompressed.
	var recs []Record
	for i := range 16 {
		recs = append(recs, Record{Key: []byte{byte(i)}, Value: bytes.Repeat([]byte{byte('a' + i)}, 1000)})
	}
	batch, err := NewBatch(CompressionNone, 1, recs...)
	if err != nil {
		b.Fatal(err)
	}
	// Pad the last value so the batch is exactly benchBatchSize.
	pad := benchBatchSize - len(batch)
	recs[15].Value = bytes.Repeat([]byte{'z'}, 1000+pad)
	if batch, err = NewBatch(CompressionNone, 1, recs...); err != nil {
		b.Fatal(err)
	}
	if len(batch) != benchBatchSize {
		// Varint lengths may shift by a byte; close enough, but say so.
		b.Logf("batch is %d bytes", len(batch))
	}
	return batch
}

func BenchmarkAppend(b *testing.B) {
	for _, mode := range []Durability{DurabilityInterval, DurabilityAlways} {
		b.Run(mode.String(), func(b *testing.B) {
			l := openLog(b, b.TempDir(), Options{Durability: mode})
			mustCreate(b, l, "bench", 1, nil)
			p, _ := l.Partition("bench", 0)
			batch := benchBatch(b)
			b.SetBytes(int64(len(batch)))
			b.ResetTimer()
			var last int64
			for range b.N {
				res, err := p.Append(batch)
				if err != nil {
					b.Fatal(err)
				}
				last = res.LastOffset
			}
			if err := p.WaitDurable(context.Background(), last); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkAppendAcked appends like producers with acks=all: 128
// goroutines each append a batch and wait until it is durable before the
// next, so every group commit has waiters and keeps its 5ms cadence.
func BenchmarkAppendAcked(b *testing.B) {
	l := openLog(b, b.TempDir(), Options{})
	mustCreate(b, l, "bench", 1, nil)
	p, _ := l.Partition("bench", 0)
	batch := benchBatch(b)
	b.SetBytes(int64(len(batch)))
	b.SetParallelism(64) // 128 producers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := p.Append(batch)
			if err == nil {
				err = p.WaitDurable(context.Background(), res.LastOffset)
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPlainWrite is the peer of BenchmarkAppend: the same bytes
// written to one file with write(2) and a final fsync, nothing else.
func BenchmarkPlainWrite(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "plain"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	batch := benchBatch(b)
	b.SetBytes(int64(len(batch)))
	b.ResetTimer()
	for range b.N {
		if _, err := f.Write(batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRead reads a partition of 16 KiB batches front to back, one
// fetch-sized read (1 MiB) at a time, copying the bytes out as the wire
// server does; its peer is BenchmarkPlainRead.
func BenchmarkRead(b *testing.B) {
	l := openLog(b, b.TempDir(), Options{Durability: DurabilityAlways})
	mustCreate(b, l, "bench", 1, nil)
	p, _ := l.Partition("bench", 0)
	batch := benchBatch(b)
	const n = 4096 // 64 MiB
	for range n {
		mustAppend(b, p, batch)
	}
	buf := make([]byte, 0, 2<<20)
	b.SetBytes(int64(n * len(batch)))
	b.ResetTimer()
	for range b.N {
		var off int64
		for off < p.HighWatermark() {
			r, err := p.Read(off, 1<<20, -1)
			if err != nil {
				b.Fatal(err)
			}
			if buf, err = r.AppendTo(buf[:0]); err != nil {
				b.Fatal(err)
			}
			off += int64(len(buf) / len(batch) * 16)
		}
	}
}

// BenchmarkPlainRead reads the same 64 MiB from a plain file with 1 MiB
// preads.
func BenchmarkPlainRead(b *testing.B) {
	path := filepath.Join(b.TempDir(), "plain")
	batch := benchBatch(b)
	data := bytes.Repeat(batch, 4096)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		for pos := int64(0); pos < int64(len(data)); pos += int64(len(buf)) {
			if _, err := f.ReadAt(buf, pos); err != nil {
				b.Fatal(err)
			}
		}
	}
}
