package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// consumedRecord is a record as --format templates see it.
type consumedRecord struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       string
	Value     string
	Timestamp time.Time
	// Headers maps each header key to its value (the last one, if a key
	// repeats).
	Headers map[string]string
}

// jsonRecord is a record as --format json prints it, one per line. Key and
// value are null for a Kafka null (no key; a tombstone).
type jsonRecord struct {
	Topic     string       `json:"topic"`
	Partition int32        `json:"partition"`
	Offset    int64        `json:"offset"`
	Key       *string      `json:"key"`
	Value     *string      `json:"value"`
	Timestamp time.Time    `json:"timestamp"`
	Headers   []jsonHeader `json:"headers"`
}

type jsonHeader struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// positionFlag is a flag.Value of a position, so that a bad one is a usage
// mistake that flag reports.
type positionFlag struct {
	text string
	pos  position
}

// String implements flag.Value.
func (f *positionFlag) String() string { return f.text }

// Set implements flag.Value.
func (f *positionFlag) Set(s string) error {
	p, err := parsePosition(s)
	if err != nil {
		return err
	}
	f.text, f.pos = s, p
	return nil
}

func runConsume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel consume", "runnel consume [flags] TOPIC", `
Prints the records of TOPIC, one per line, as they arrive, until -n records
are printed or it is interrupted (SIGINT): both exit 0.

With --group the records are consumed as a member of that consumer group,
which commits the offset of every record once printed; --from applies only
to partitions the group has not committed an offset for. Without --group
every partition is read, from --from.`, stderr)
	conn := addConnFlags(fs, 0)
	group := fs.String("group", "", "consume as a member of this consumer `group`, committing what is printed")
	from := &positionFlag{text: "beginning", pos: position{kind: positionStart}}
	fs.Var(from, "from", "`POSITION` to start at: beginning, end, "+positionHelp+"; an offset out of a partition's range starts at its nearer end")
	format := fs.String("format", "{{.Value}}", "Go text/template `TEMPLATE` of each record's line, over .Topic .Partition .Offset .Key .Value (strings) .Timestamp (time.Time) .Headers (map of strings); \\t and \\n are a tab and a newline; \"json\" prints each record as a JSON object")
	limit := fs.Int("n", 0, "stop after `N` records; 0 for no limit")
	wantProgress := progressFlag(fs)
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fs, "want one topic, got %d arguments", len(pos))
	}
	topic := pos[0]
	if *limit < 0 {
		return usageError(fs, "-n %d: want a count", *limit)
	}
	var tmpl *template.Template
	if *format != "json" {
		// The escapes people type in a shell-quoted --format become the
		// characters they mean.
		escapes := strings.NewReplacer(`\\`, `\`, `\t`, "\t", `\n`, "\n", `\r`, "\r")
		tmpl, err = template.New("format").Option("missingkey=zero").Parse(escapes.Replace(*format))
		if err != nil {
			return usageError(fs, "--format: %v", err)
		}
	}

	opts := []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(from.pos.kgoOffset())}
	if *group != "" {
		// Commits are made by hand once records are printed; rebalances
		// wait for them, so that a partition moves with its offset
		// committed.
		opts = append(opts, kgo.ConsumerGroup(*group), kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll())
	}
	cl, err := conn.connect(ctx, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	defer cl.AllowRebalance()
	if _, err := topicDetails(ctx, kadm.NewClient(cl), topic); err != nil {
		return err
	}

	w := bufio.NewWriter(stdout)
	var consumed atomic.Int64
	prog := startProgress(ctx, stderr, *wantProgress, func() string {
		if *limit > 0 {
			return fmt.Sprintf("consumed %d of %d records", consumed.Load(), *limit)
		}
		return fmt.Sprintf("consumed %d records", consumed.Load())
	})
	err = consumeLoop(ctx, cl, w, tmpl, *group != "", *limit, &consumed)
	prog.stop(fmt.Sprintf("consumed %d records", consumed.Load()))
	return err
}

// consumeLoop prints records until limit (if > 0) is reached or ctx ends,
// and, if commit, commits what it printed after each batch.
func consumeLoop(ctx context.Context, cl *kgo.Client, w *bufio.Writer, tmpl *template.Template, commit bool, limit int, consumed *atomic.Int64) error {
	for {
		n := -1
		if limit > 0 {
			n = limit - int(consumed.Load())
		}
		fetches := cl.PollRecords(ctx, n)
		if ctx.Err() != nil {
			return nil
		}
		var errs []error
		fetches.EachError(func(topic string, p int32, err error) {
			errs = append(errs, fmt.Errorf("fetch %s partition %d: %w", topic, p, err))
		})
		if err := errors.Join(errs...); err != nil {
			return err
		}
		var printed []*kgo.Record
		var printErr error
		fetches.EachRecord(func(r *kgo.Record) {
			if printErr != nil || (limit > 0 && consumed.Load() >= int64(limit)) {
				return
			}
			if printErr = printRecord(w, tmpl, r); printErr == nil {
				printed = append(printed, r)
				consumed.Add(1)
			}
		})
		if err := w.Flush(); err != nil && printErr == nil {
			printErr = fmt.Errorf("write: %w", err)
		}
		if commit && len(printed) > 0 {
			// Commit even when ctx has just ended: what was printed was
			// consumed.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := cl.CommitRecords(cctx, printed...)
			cancel()
			if err != nil {
				return fmt.Errorf("commit offsets: %w", err)
			}
		}
		cl.AllowRebalance()
		if printErr != nil {
			return printErr
		}
		if limit > 0 && consumed.Load() >= int64(limit) {
			return nil
		}
	}
}

// printRecord writes r as tmpl says, or as JSON if tmpl is nil, and a
// newline.
func printRecord(w io.Writer, tmpl *template.Template, r *kgo.Record) error {
	if tmpl == nil {
		jr := jsonRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp, Headers: []jsonHeader{}}
		if r.Key != nil {
			k := string(r.Key)
			jr.Key = &k
		}
		if r.Value != nil {
			v := string(r.Value)
			jr.Value = &v
		}
		for _, h := range r.Headers {
			jr.Headers = append(jr.Headers, jsonHeader{h.Key, string(h.Value)})
		}
		b, err := json.Marshal(jr)
		if err != nil {
			return fmt.Errorf("record at %s partition %d offset %d: %w", r.Topic, r.Partition, r.Offset, err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	cr := consumedRecord{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Key: string(r.Key), Value: string(r.Value), Timestamp: r.Timestamp,
		Headers: make(map[string]string, len(r.Headers)),
	}
	for _, h := range r.Headers {
		cr.Headers[h.Key] = string(h.Value)
	}
	if err := tmpl.Execute(w, cr); err != nil {
		return fmt.Errorf("--format, record at %s partition %d offset %d: %w", r.Topic, r.Partition, r.Offset, err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}
