package state

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

const benchKeys = 100_000

var benchStores = []struct {
	name string
	open func(b *testing.B) Store
}{
	{"memory", func(b *testing.B) Store {
		s := NewMemory()
		b.Cleanup(func() { _ = s.Close() })
		return s
	}},
	{"leveldb", func(b *testing.B) Store { return openTestLevelDB(b, b.TempDir(), LevelDBOptions{}) }},
}

func benchKey(i int) []byte { return fmt.Appendf(nil, "user-%010d", i) }

// fill writes benchKeys rows of 100-byte values, 1000 to a batch.
func fill(b *testing.B, s Store) {
	var batch Batch
	value := make([]byte, 100)
	for i := range benchKeys {
		batch.Set(benchKey(i), value)
		if batch.Len() == 1000 {
			if err := s.Apply(&batch); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
	}
	if err := s.Apply(&batch); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkApply applies batches of 100 sets of 100-byte values to random
// keys among benchKeys, each with a checkpoint, as the runtime does.
func BenchmarkApply(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			s := bs.open(b)
			r := rand.New(rand.NewPCG(1, 1))
			keys := make([][]byte, benchKeys)
			for i := range keys {
				keys[i] = benchKey(i)
			}
			value := make([]byte, 100)
			var batch Batch
			var off int64
			b.ReportAllocs()
			for b.Loop() {
				batch.Reset()
				for range 100 {
					batch.Set(keys[r.IntN(benchKeys)], value)
				}
				off += 100
				batch.SetCheckpoint(off)
				if err := s.Apply(&batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/row")
		})
	}
}

// BenchmarkGet reads random keys of a store holding benchKeys rows: present
// keys (hit) and absent ones (miss), the common case for a stream's new keys.
func BenchmarkGet(b *testing.B) {
	for _, bs := range benchStores {
		for _, miss := range []bool{false, true} {
			name := bs.name + "/hit"
			if miss {
				name = bs.name + "/miss"
			}
			b.Run(name, func(b *testing.B) {
				s := bs.open(b)
				fill(b, s)
				r := rand.New(rand.NewPCG(2, 2))
				keys := make([][]byte, 4096)
				for i := range keys {
					keys[i] = benchKey(r.IntN(benchKeys))
					if miss { // sorts between two present keys
						keys[i] = append(keys[i], '~')
					}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					_, ok, err := s.Get(keys[i%len(keys)])
					if err != nil || ok == miss {
						b.Fatalf("Get: %v, %v", ok, err)
					}
					i++
				}
			})
		}
	}
}

// BenchmarkIterate scans all benchKeys rows of a store.
func BenchmarkIterate(b *testing.B) {
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			s := bs.open(b)
			fill(b, s)
			b.ReportAllocs()
			for b.Loop() {
				it := s.Iterate(nil, nil)
				n := 0
				for it.Next() {
					n++
				}
				it.Close()
				if it.Err() != nil || n != benchKeys {
					b.Fatalf("%d rows, %v", n, it.Err())
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchKeys), "ns/row")
		})
	}
}
