package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produceSummary is produce's report.
type produceSummary struct {
	Topic   string `json:"topic"`
	Records int64  `json:"records"`
}

func runProduce(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel produce", "runnel produce [flags] TOPIC", `
Produces each line of stdin (or of --file) as a record to TOPIC, which must
exist, and reports how many records were produced once every one of them is
acknowledged by all in-sync replicas. Records with a key go to the partition
Kafka's default partitioner picks (murmur2 of the key), where runnel groups
expect them; records without a key are spread. Lines end at \n (a \r before
it is dropped too); an empty line is a record with an empty value.`, stderr)
	conn := addConnFlags(fs, 0)
	keySep := fs.String("key-sep", "", "split each line at the first `SEP` into key and value; a line without SEP is a value without key")
	var headers keyValues
	fs.Var(&headers, "header", "add header `key=value` to every record; repeat for more")
	partition := fs.Int("partition", -1, "produce every record to this `partition`; -1 partitions by key")
	file := fs.String("file", "-", "read lines from this `file`; - is stdin")
	out := addOutputFlag(fs)
	wantProgress := progressFlag(fs)
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fs, "want one topic, got %d arguments", len(pos))
	}
	topic := pos[0]
	if *partition < -1 {
		return usageError(fs, "--partition %d: want a partition, or -1", *partition)
	}

	in := io.Reader(os.Stdin)
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		in = f
	}

	opts := []kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(produceTimeout)}
	if *partition >= 0 {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	cl, err := conn.connect(ctx, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	// The topic must exist: franz-go would otherwise wait for it, retrying,
	// while every line waits behind it.
	tds, err := topicDetails(ctx, kadm.NewClient(cl), topic)
	if err != nil {
		return err
	}
	if n := len(tds[topic].Partitions); *partition >= n {
		return fmt.Errorf("--partition %d: topic %q has %d partitions", *partition, topic, n)
	}

	var hdrs []kgo.RecordHeader
	for _, h := range headers {
		hdrs = append(hdrs, kgo.RecordHeader{Key: h.key, Value: []byte(h.value)})
	}
	var (
		sent, acked atomic.Int64
		mu          sync.Mutex
		failed      error
	)
	prog := startProgress(ctx, stderr, *wantProgress, func() string {
		return fmt.Sprintf("produced %d records (%d acknowledged)", sent.Load(), acked.Load())
	})
	readErr := readLines(ctx, in, func(line []byte) bool {
		r := &kgo.Record{Value: line, Headers: hdrs, Partition: int32(*partition)}
		if *keySep != "" {
			if k, v, ok := bytes.Cut(line, []byte(*keySep)); ok {
				r.Key, r.Value = k, v
			}
		}
		sent.Add(1)
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err == nil {
				acked.Add(1)
				return
			}
			mu.Lock()
			if failed == nil {
				failed = err
			}
			mu.Unlock()
		})
		mu.Lock()
		defer mu.Unlock()
		return failed == nil
	})
	flushErr := cl.Flush(ctx)
	n := acked.Load()
	prog.stop(fmt.Sprintf("produced %d records", n))
	mu.Lock()
	err = failed
	mu.Unlock()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted after %d records were produced: %w", n, context.Cause(ctx))
	case readErr != nil:
		return fmt.Errorf("after producing %d records: read input: %w", n, readErr)
	case err != nil:
		return fmt.Errorf("after producing %d records: produce to %s: %w", n, topic, contextErr(ctx, err))
	case flushErr != nil:
		return fmt.Errorf("after producing %d records: %w", n, contextErr(ctx, flushErr))
	}
	if *out == outputJSON {
		return writeJSON(stdout, produceSummary{Topic: topic, Records: n})
	}
	fmt.Fprintf(stdout, "produced %d records to %s\n", n, topic)
	return nil
}

// readLines calls fn with each line of r, without its line ending, until
// fn returns false, r ends or ctx ends. A read blocked on a terminal does not
// see ctx end, so reads run on a goroutine of their own, which is left
// blocked when ctx ends first (the process is about to exit then).
func readLines(ctx context.Context, r io.Reader, fn func([]byte) bool) error {
	type line struct {
		b   []byte
		err error
	}
	lines := make(chan line, 256)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(lines)
		send := func(l line) bool {
			select {
			case lines <- l:
				return true
			case <-stop:
				return false
			}
		}
		br := bufio.NewReaderSize(r, 64<<10)
		for {
			b, err := br.ReadBytes('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				send(line{err: err})
				return
			}
			// The last line may lack its \n; an input ending in \n has no
			// empty line after it.
			if len(b) > 0 && !send(line{b: b}) {
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return nil
			}
			if l.err != nil {
				return l.err
			}
			b := l.b
			if len(b) > 0 && b[len(b)-1] == '\n' {
				b = b[:len(b)-1]
				if len(b) > 0 && b[len(b)-1] == '\r' {
					b = b[:len(b)-1]
				}
			}
			if !fn(b) {
				return nil
			}
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// produceTimeout bounds how long a record may wait for its acknowledgement,
// retries included, so that a broker gone away is an error, not a hang.
const produceTimeout = 30 * time.Second
