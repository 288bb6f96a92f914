package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/runtime"
	"github.com/runnel-io/runnel/topology"
)

// runTables dispatches `runnel tables <command>`.
func runTables(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return subcommands(ctx, "tables", `
Reads a group's table: its changelog topic <GROUP>-table is read from the
start into memory, as a runnel view does, and the rows are looked up there.
Keys are shown as strings; --value-format says how to show values.`, []command{
		{"get", "print the value of one key", runTablesGet},
		{"scan", "print every row, in key byte order", runTablesScan},
	}, args, stdout, stderr)
}

// tableTimeout is the default --timeout of the tables commands, which read
// a whole changelog before they answer.
const tableTimeout = 5 * time.Minute

// valueFormat is how tables commands show the bytes of a value.
type valueFormat string

// String implements flag.Value.
func (f *valueFormat) String() string { return string(*f) }

// Set implements flag.Value.
func (f *valueFormat) Set(s string) error {
	switch s {
	case "string", "hex", "base64", "int64":
		*f = valueFormat(s)
		return nil
	}
	return fmt.Errorf("%q is not one of string, hex, base64, int64", s)
}

// format shows b as f says.
func (f valueFormat) format(b []byte) (string, error) {
	switch f {
	case "hex":
		return hex.EncodeToString(b), nil
	case "base64":
		return base64.StdEncoding.EncodeToString(b), nil
	case "int64":
		// processor.Int64's encoding: 8 bytes big-endian.
		if len(b) != 8 {
			return "", fmt.Errorf("value of %d bytes is not an int64 (8 bytes big-endian)", len(b))
		}
		return fmt.Sprint(int64(binary.BigEndian.Uint64(b))), nil
	}
	return string(b), nil
}

// tableFlags are the flags both tables commands take.
type tableFlags struct {
	conn     *connFlags
	out      *outputFormat
	values   valueFormat
	progress *bool
}

func addTableFlags(fs *flag.FlagSet, conn *connFlags, out *outputFormat, progress *bool) *tableFlags {
	t := &tableFlags{conn: conn, out: out, values: "string", progress: progress}
	fs.Var(&t.values, "value-format", "`FORMAT` of values: string (their bytes as they are), hex, base64, or int64 (8 bytes big-endian, runnel's processor.Int64)")
	return t
}

// tableRow is a row of a table as the tables commands print it in JSON.
type tableRow struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func runTablesGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel tables get", "runnel tables get [flags] GROUP KEY", `
Prints the value of KEY in the table of GROUP (its string encoding: the
key's bytes as they are). A key with no row is an error.`, stderr)
	tf := addTableFlags(fs, addConnFlags(fs, tableTimeout), addOutputFlag(fs), progressFlag(fs))
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError(fs, "want a group and a key, got %d arguments", len(pos))
	}
	group, key := pos[0], pos[1]
	ctx, cancel := tf.conn.withTimeout(ctx)
	defer cancel()
	view, closeView, err := openTable(ctx, tf.conn, group, stderr, *tf.progress)
	if err != nil {
		return err
	}
	defer closeView()
	b, ok, err := view.Get(key)
	if err != nil {
		return fmt.Errorf("table of group %q: %w", group, err)
	}
	if !ok {
		return fmt.Errorf("table of group %q has no row for key %q", group, key)
	}
	v, err := tf.values.format(b)
	if err != nil {
		return fmt.Errorf("table of group %q, key %q: %w", group, key, err)
	}
	if *tf.out == outputJSON {
		return writeJSON(stdout, tableRow{Key: key, Value: v})
	}
	_, err = fmt.Fprintln(stdout, v)
	return err
}

func runTablesScan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel tables scan", "runnel tables scan [flags] GROUP", `
Prints every row of the table of GROUP, in key byte order. Reading a large
table's changelog takes a while: progress goes to stderr.`, stderr)
	tf := addTableFlags(fs, addConnFlags(fs, tableTimeout), addOutputFlag(fs), progressFlag(fs))
	prefix := fs.String("prefix", "", "only rows whose key starts with `P`")
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fs, "want one group, got %d arguments", len(pos))
	}
	group := pos[0]
	ctx, cancel := tf.conn.withTimeout(ctx)
	defer cancel()
	view, closeView, err := openTable(ctx, tf.conn, group, stderr, *tf.progress)
	if err != nil {
		return err
	}
	defer closeView()
	rows := []tableRow{}
	var formatErr error
	err = view.Iterate(func(k string, b []byte) bool {
		if !strings.HasPrefix(k, *prefix) {
			return true
		}
		v, err := tf.values.format(b)
		if err != nil {
			formatErr = fmt.Errorf("key %q: %w", k, err)
			return false
		}
		rows = append(rows, tableRow{Key: k, Value: v})
		return true
	})
	if err == nil {
		err = formatErr
	}
	if err != nil {
		return fmt.Errorf("table of group %q: %w", group, err)
	}
	if *tf.out == outputJSON {
		return writeJSON(stdout, rows)
	}
	t := newTable(stdout, "KEY", "VALUE")
	for _, r := range rows {
		// An empty value is a value: shown as one, not as printable's "-"
		// for nothing.
		v := printable(r.Value)
		if r.Value == "" {
			v = `""`
		}
		t.row(printable(r.Key), v)
	}
	return t.flush()
}

// openTable starts a view of group's table and waits until it has read the
// changelog as it was at the start, reporting progress on stderr. closeView
// stops the view and disconnects.
func openTable(ctx context.Context, conn *connFlags, group string, stderr io.Writer, wantProgress bool) (view *runtime.View[string, []byte], closeView func(), err error) {
	topic := topology.TableTopic(group)
	records, err := changelogSize(ctx, conn, group, topic)
	if err != nil {
		return nil, nil, err
	}
	seeds, err := conn.seeds()
	if err != nil {
		return nil, nil, err
	}

	// runtime.NewView needs a Runtime, and a Runtime a topology: this one
	// only names the changelog, which exists, so that runtime.New creates
	// no topic. It is never run, so it joins no group.
	reader := topology.NewStatelessGroup("runnel-cli-tables", processor.String)
	topology.Input(reader, topology.NewTopic(topic, processor.String, processor.Bytes),
		func(processor.Context[string, processor.NoTable], string, []byte) error { return nil })
	topo, err := topology.New(reader)
	if err != nil {
		return nil, nil, fmt.Errorf("table of group %q: %w", group, err)
	}
	rt, err := runtime.New(ctx, topo, runtime.Options{Brokers: seeds})
	if err != nil {
		return nil, nil, fmt.Errorf("table of group %q: %w", group, contextErr(ctx, err))
	}
	viewCtx, cancelView := context.WithCancel(ctx)
	closeView = func() {
		cancelView()
		rt.Close()
	}
	view, err = runtime.NewView(viewCtx, rt, topology.NewGroup(group, processor.String, processor.Bytes))
	if err != nil {
		closeView()
		return nil, nil, fmt.Errorf("table of group %q: %w", group, contextErr(ctx, err))
	}
	rows := func() int {
		n := 0
		view.Iterate(func(string, []byte) bool { n++; return true })
		return n
	}
	prog := startProgress(ctx, stderr, wantProgress, func() string {
		return fmt.Sprintf("reading the table of group %s: %d rows so far, from up to %d changelog records", group, rows(), records)
	})
	err = view.WaitCaughtUp(ctx)
	if err != nil {
		prog.stop("")
		closeView()
		return nil, nil, fmt.Errorf("table of group %q: %w", group, contextErr(ctx, err))
	}
	prog.stop(fmt.Sprintf("read the table of group %s: %d rows", group, rows()))
	return view, closeView, nil
}

// changelogSize checks that group's changelog exists and returns how many
// records it holds, at most (compaction leaves gaps in the offsets).
func changelogSize(ctx context.Context, conn *connFlags, group, topic string) (int64, error) {
	cl, err := conn.connect(ctx)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := topicDetails(ctx, adm, topic); err != nil {
		return 0, fmt.Errorf("group %q has no table: %w", group, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("log start offsets of %q: %w", topic, contextErr(ctx, err))
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("log end offsets of %q: %w", topic, contextErr(ctx, err))
	}
	var n int64
	ends.Each(func(end kadm.ListedOffset) {
		if start, ok := starts.Lookup(topic, end.Partition); ok && end.Err == nil && start.Err == nil {
			n += end.Offset - start.Offset
		}
	})
	return n, nil
}
