package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/broker"
	"github.com/runnel-io/runnel/runtime/internal/kafka"
	"github.com/runnel-io/runnel/state"
)

// BenchmarkRestore restores a changelog of RUNNEL_RESTORE_RECORDS records
// (default 400,000; 100-byte values, RUNNEL_RESTORE_KEYS keys, default
// 50,000) over 8 partitions of
// the bundled log into LevelDB stores, all partitions at once as Assigned
// does, and in the same run reads the same changelog with a bare franz-go
// consumer, which does nothing with the records. It reports both rates
// and their ratio (restore_vs_bare).
func BenchmarkRestore(b *testing.B) {
	total := 400_000
	if s := os.Getenv("RUNNEL_RESTORE_RECORDS"); s != "" {
		var err error
		if total, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	keys := 50_000
	if s := os.Getenv("RUNNEL_RESTORE_KEYS"); s != "" {
		var err error
		if keys, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	const partitions, topic = 8, "bench-table"
	ctx := b.Context()
	br, err := broker.Start(ctx, broker.Config{Addr: "127.0.0.1:0", Dir: b.TempDir(), GroupInitialRebalanceDelay: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	addrs := []string{br.Addr()}
	c, err := kafka.New(ctx, kafka.Config{Brokers: addrs})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.EnsureTopic(ctx, topic, partitions, map[string]string{"cleanup.policy": "compact"}); err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 100)
	for i := range total {
		key := fmt.Appendf(nil, "key-%d", i%keys)
		c.Send(&kafka.Record{Topic: topic, Partition: int32(i % partitions), Key: key, Value: value}, func(_ *kafka.Record, err error) {
			if err != nil {
				panic(err)
			}
		})
	}
	if err := c.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)

	var restoreTook, bareTook, restoreCPU, bareCPU time.Duration
	for b.Loop() {
		dir := b.TempDir()
		// Each side starts without the other's garbage to collect.
		goruntime.GC()
		began, cpu := time.Now(), processCPU()
		var wg sync.WaitGroup
		errs := make([]error, partitions)
		var restored [partitions]int64
		var stores [partitions]*state.LevelDB
		for p := range int32(partitions) {
			wg.Go(func() {
				st, err := state.OpenLevelDB(filepath.Join(dir, strconv.Itoa(int(p))), state.LevelDBOptions{})
				if err != nil {
					errs[p] = err
					return
				}
				stores[p] = st
				restored[p], errs[p] = restore(ctx, c, c.Offsets, st, topic, p, log, nil)
			})
		}
		wg.Wait()
		restoreTook += time.Since(began)
		// Closed outside the time: the runtime goes on using a restored
		// store, and a close waits for LevelDB's compactions.
		for _, st := range stores {
			if st != nil {
				st.Close()
			}
		}
		restoreCPU += processCPU() - cpu
		var n int64
		for p := range partitions {
			if errs[p] != nil {
				b.Fatal(errs[p])
			}
			n += restored[p]
		}
		if n != int64(total) {
			b.Fatalf("restored %d records, want %d", n, total)
		}

		goruntime.GC()
		began, cpu = time.Now(), processCPU()
		if err := bareRead(ctx, addrs, topic, partitions, total); err != nil {
			b.Fatal(err)
		}
		bareTook += time.Since(began)
		bareCPU += processCPU() - cpu
	}
	restoreRate := float64(total*b.N) / restoreTook.Seconds()
	bareRate := float64(total*b.N) / bareTook.Seconds()
	b.ReportMetric(restoreRate, "restore_records/s")
	b.ReportMetric(bareRate, "bare_records/s")
	b.ReportMetric(restoreRate/bareRate, "restore_vs_bare")
	// CPU time per record (the process's: broker included), which other
	// work on the machine disturbs less than wall-clock rates.
	b.ReportMetric(float64(restoreCPU.Nanoseconds())/float64(total*b.N), "restore_cpu_ns/rec")
	b.ReportMetric(float64(bareCPU.Nanoseconds())/float64(total*b.N), "bare_cpu_ns/rec")
}

// processCPU returns the CPU time, user and system, the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bareRead reads every partition of topic from the start with a franz-go
// consumer until it has seen total records.
func bareRead(ctx context.Context, addrs []string, topic string, partitions int32, total int) error {
	offsets := map[int32]kgo.Offset{}
	for p := range partitions {
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(16<<20))
	if err != nil {
		return err
	}
	defer cl.Close()
	seen := 0
	for seen < total {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return err
		}
		seen += fs.NumRecords()
	}
	return nil
}
