// Command copier is the transactional program of the end-to-end tests: a
// franz-go GroupTransactSession that copies every record of -in to the
// same partition of -out, value prefixed with "copy-", reading at
// read_committed and committing its input offsets in the same transaction
// as its output. Run against a log with working transactions, the output
// read at read_committed is the input exactly once, whatever crashes.
//
// When a transaction fails (the broker went away mid-transaction, or a
// restarted broker aborted the transaction it found open and fenced its
// producer), the program makes a new session with the same transactional
// id and goes on from the committed offsets, as an application must. It logs
// "msg=copied n=..." after each committed transaction and exits 0 on
// SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "bootstrap address")
	id := flag.String("id", "copier-0", "transactional id")
	group := flag.String("group", "e2e-copier", "consumer group")
	in := flag.String("in", "e2e-txn-in", "input topic")
	out := flag.String("out", "e2e-txn-out", "output topic")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var copied int64
	for ctx.Err() == nil {
		err := run(ctx, log, &copied, *brokers, *id, *group, *in, *out)
		if ctx.Err() != nil {
			break
		}
		log.Warn("session ended; starting a new one", "err", err)
	}
	log.Info("stopped", "copied", copied)
}

// run copies until ctx ends or the session cannot go on (the producer was
// fenced, or the client failed for good).
func run(ctx context.Context, log *slog.Logger, copied *int64, brokers, id, group, in, out string) error {
	s, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(brokers),
		kgo.TransactionalID(id),
		kgo.TransactionTimeout(10*time.Second),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(in),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.SessionTimeout(6*time.Second),
		kgo.RetryTimeout(time.Minute),
	)
	if err != nil {
		return fmt.Errorf("new session: %w", err)
	}
	defer s.Close()
	for ctx.Err() == nil {
		fs := s.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) { log.Warn("fetch failed", "topic", t, "partition", p, "err", err) })
		if fs.NumRecords() == 0 {
			continue
		}
		if err := s.Begin(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			s.Produce(ctx, &kgo.Record{Topic: out, Partition: r.Partition, Key: r.Key,
				Value: append([]byte("copy-"), r.Value...)}, nil)
		})
		// No error of End is retryable (the session's doc): the
		// transaction was aborted or its outcome is unknown, and a new
		// session takes over from the committed offsets.
		committed, err := s.End(ctx, kgo.TryCommit)
		switch {
		case err != nil:
			return fmt.Errorf("end: %w", err)
		case committed:
			*copied += int64(n)
			log.Info("copied", "n", n, "total", *copied)
		default:
			log.Info("transaction aborted by the session (a rebalance)", "n", n)
		}
	}
	return nil
}
