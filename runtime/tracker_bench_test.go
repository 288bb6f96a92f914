package runtime

import "testing"

// BenchmarkTracker adds records of two writes each on one goroutine, as
// the processing loop does, while another acknowledges them in batches, as
// the producer's callbacks do, with a commit every 4096 records.
func BenchmarkTracker(b *testing.B) {
	tr := newTracker(0, nil)
	batches := make(chan []func(error), 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for batch := range batches {
			for _, ack := range batch {
				ack(nil)
			}
		}
	}()
	var batch []func(error)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ack := tr.add(int64(i), 2)
		batch = append(batch, ack, ack)
		if len(batch) == 512 {
			batches <- batch
			batch = make([]func(error), 0, 512)
		}
		if i%4096 == 0 {
			tr.committable()
		}
	}
	batches <- batch
	close(batches)
	<-done
	b.StopTimer()
	if off, err := tr.committable(); off != int64(b.N) || err != nil {
		b.Fatalf("committable %d, %v; want %d", off, err, b.N)
	}
}
