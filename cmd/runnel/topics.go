package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// runTopics dispatches `runnel topics <command>`.
func runTopics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return subcommands(ctx, "topics", "Manages the topics of runnel serve or a Kafka cluster.", []command{
		{"list", "list topics with their partition counts", runTopicsList},
		{"describe", "show topics' partitions, offsets and configs", runTopicsDescribe},
		{"create", "create topics", runTopicsCreate},
		{"delete", "delete topics", runTopicsDelete},
		{"alter", "change a topic's configs or add partitions", runTopicsAlter},
	}, args, stdout, stderr)
}

// admin connects for one command: it returns ctx bounded by --timeout and
// an admin client; done closes the client and releases the context.
func (c *connFlags) admin(ctx context.Context) (context.Context, *kadm.Client, func(), error) {
	ctx, cancel := c.withTimeout(ctx)
	cl, err := c.connect(ctx)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, kadm.NewClient(cl), func() { cl.Close(); cancel() }, nil
}

// topicSummary is a row of topics list.
type topicSummary struct {
	Topic             string `json:"topic"`
	Partitions        int    `json:"partitions"`
	ReplicationFactor int    `json:"replication_factor"`
	Internal          bool   `json:"internal"`
}

func runTopicsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel topics list", "runnel topics list [flags]",
		"Lists the topics with their partition counts and replication factors, by name.", stderr)
	conn := addConnFlags(fs, adminTimeout)
	out := addOutputFlag(fs)
	internal := fs.Bool("internal", false, "include internal topics (committed offsets, transaction state)")
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected arguments %q", pos)
	}
	ctx, adm, done, err := conn.admin(ctx)
	if err != nil {
		return err
	}
	defer done()
	tds, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		return fmt.Errorf("list topics: %w", contextErr(ctx, err))
	}
	if !*internal {
		tds.FilterInternal()
	}
	if err := tds.Error(); err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	list := []topicSummary{}
	for _, td := range tds.Sorted() {
		s := topicSummary{Topic: td.Topic, Partitions: len(td.Partitions), Internal: td.IsInternal}
		if p, ok := td.Partitions[0]; ok {
			s.ReplicationFactor = len(p.Replicas)
		}
		list = append(list, s)
	}
	if *out == outputJSON {
		return writeJSON(stdout, list)
	}
	t := newTable(stdout, "TOPIC", "PARTITIONS", "REPLICATION")
	for _, s := range list {
		name := printable(s.Topic)
		if s.Internal {
			name += " (internal)"
		}
		t.row(name, itoa(s.Partitions), itoa(s.ReplicationFactor))
	}
	return t.flush()
}

// topicDescription is a topic as topics describe shows it.
type topicDescription struct {
	Topic      string                 `json:"topic"`
	Internal   bool                   `json:"internal"`
	Partitions []partitionDescription `json:"partitions"`
	Configs    []configEntry          `json:"configs"`
}

// partitionDescription is one partition of a described topic.
type partitionDescription struct {
	Partition      int32   `json:"partition"`
	Leader         int32   `json:"leader"`
	Replicas       []int32 `json:"replicas"`
	ISR            []int32 `json:"isr"`
	LogStartOffset int64   `json:"log_start_offset"`
	LogEndOffset   int64   `json:"log_end_offset"`
}

// configEntry is one config of a described topic.
type configEntry struct {
	Name      string  `json:"name"`
	Value     *string `json:"value"` // nil for a sensitive or unset config
	Source    string  `json:"source"`
	Sensitive bool    `json:"sensitive,omitempty"`
}

func runTopicsDescribe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel topics describe", "runnel topics describe [flags] TOPIC...", `
Shows each topic's partitions (leader, replicas, in-sync replicas, log start
and end offsets) and the configs set on it; --all-configs adds every config
with its value from the broker's defaults.`, stderr)
	conn := addConnFlags(fs, adminTimeout)
	out := addOutputFlag(fs)
	allConfigs := fs.Bool("all-configs", false, "show every config, not only those set on the topic")
	topics, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(topics) == 0 {
		return usageError(fs, "no topic given")
	}
	ctx, adm, done, err := conn.admin(ctx)
	if err != nil {
		return err
	}
	defer done()
	descs, err := describeTopics(ctx, adm, topics, *allConfigs)
	if err != nil {
		return err
	}
	if *out == outputJSON {
		return writeJSON(stdout, descs)
	}
	for i, d := range descs {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		internal := ""
		if d.Internal {
			internal = " (internal)"
		}
		fmt.Fprintf(stdout, "Topic: %s%s\n", printable(d.Topic), internal)
		t := newTable(stdout, "PARTITION", "LEADER", "REPLICAS", "ISR", "LOG-START", "LOG-END")
		for _, p := range d.Partitions {
			t.row(itoa(p.Partition), itoa(p.Leader), int32List(p.Replicas), int32List(p.ISR), itoa(p.LogStartOffset), itoa(p.LogEndOffset))
		}
		if err := t.flush(); err != nil {
			return err
		}
		fmt.Fprintln(stdout)
		if len(d.Configs) == 0 {
			fmt.Fprintln(stdout, "No configs set on the topic (--all-configs shows the defaults).")
			continue
		}
		t = newTable(stdout, "CONFIG", "VALUE", "SOURCE")
		for _, c := range d.Configs {
			v := "-"
			switch {
			case c.Sensitive:
				v = "(sensitive)"
			case c.Value != nil:
				v = printable(*c.Value)
			}
			t.row(c.Name, v, c.Source)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	return nil
}

// describeTopics gathers the metadata, offsets and configs of topics, in
// the order given. All must exist.
func describeTopics(ctx context.Context, adm *kadm.Client, topics []string, allConfigs bool) ([]topicDescription, error) {
	tds, err := topicDetails(ctx, adm, topics...)
	if err != nil {
		return nil, err
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list log start offsets: %w", contextErr(ctx, err))
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list log end offsets: %w", contextErr(ctx, err))
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("describe configs: %w", contextErr(ctx, err))
	}
	configs := map[string][]configEntry{}
	for _, rc := range rcs {
		if rc.Err != nil {
			return nil, fmt.Errorf("configs of topic %q: %w", rc.Name, rc.Err)
		}
		for _, c := range rc.Configs {
			if !allConfigs && c.Source != kmsg.ConfigSourceDynamicTopicConfig {
				continue
			}
			configs[rc.Name] = append(configs[rc.Name], configEntry{Name: c.Key, Value: c.Value, Source: c.Source.String(), Sensitive: c.Sensitive})
		}
	}
	var descs []topicDescription
	for _, topic := range topics {
		td := tds[topic]
		d := topicDescription{Topic: topic, Internal: td.IsInternal, Partitions: []partitionDescription{}, Configs: configs[topic]}
		if d.Configs == nil {
			d.Configs = []configEntry{}
		}
		slices.SortFunc(d.Configs, func(a, b configEntry) int { return cmp.Compare(a.Name, b.Name) })
		for _, p := range partitionsOf(td) {
			pd := td.Partitions[p]
			if pd.Err != nil {
				return nil, fmt.Errorf("topic %q partition %d: %w", topic, p, pd.Err)
			}
			start, _ := starts.Lookup(topic, p)
			end, _ := ends.Lookup(topic, p)
			for _, lo := range []kadm.ListedOffset{start, end} {
				if lo.Err != nil {
					return nil, fmt.Errorf("offsets of topic %q partition %d: %w", topic, p, lo.Err)
				}
			}
			d.Partitions = append(d.Partitions, partitionDescription{
				Partition: p, Leader: pd.Leader, Replicas: nonNil(pd.Replicas), ISR: nonNil(pd.ISR),
				LogStartOffset: start.Offset, LogEndOffset: end.Offset,
			})
		}
		descs = append(descs, d)
	}
	return descs, nil
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func runTopicsCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel topics create", "runnel topics create [flags] TOPIC...", `
Creates topics, all with the same partition count, replication factor and
configs. A topic that exists already is an error; the others are created.`, stderr)
	conn := addConnFlags(fs, adminTimeout)
	partitions := fs.Int("partitions", -1, "partition `count`; -1 takes the broker's default (runnel serve --partitions, Kafka's num.partitions)")
	replication := fs.Int("replication-factor", -1, "replica `count` per partition; -1 takes the broker's default (runnel serve has one node, so 1)")
	var configs keyValues
	fs.Var(&configs, "config", "topic config `key=value`, such as cleanup.policy=compact or retention.ms=86400000; repeat for more")
	topics, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(topics) == 0 {
		return usageError(fs, "no topic given")
	}
	if *partitions == 0 || *partitions < -1 {
		return usageError(fs, "--partitions %d: want a count of at least 1, or -1", *partitions)
	}
	if *replication == 0 || *replication < -1 || *replication > 1<<15-1 {
		return usageError(fs, "--replication-factor %d: want at least 1, or -1", *replication)
	}
	cfg := map[string]*string{}
	for _, kv := range configs {
		cfg[kv.key] = &kv.value
	}
	ctx, adm, done, err := conn.admin(ctx)
	if err != nil {
		return err
	}
	defer done()
	resps, err := adm.CreateTopics(ctx, int32(*partitions), int16(*replication), cfg, topics...)
	if err != nil {
		return fmt.Errorf("create topics: %w", contextErr(ctx, err))
	}
	var errs []error
	for _, topic := range topics {
		r, ok := resps[topic]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("topic %q: no answer from the broker", topic))
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
			errs = append(errs, fmt.Errorf("topic %q already exists", topic))
		case r.Err != nil:
			errs = append(errs, fmt.Errorf("create topic %q: %w", topic, withMessage(r.Err, r.ErrMessage)))
		default:
			n := r.NumPartitions
			if n <= 0 {
				n = int32(*partitions)
			}
			fmt.Fprintf(stdout, "created topic %s with %d partitions\n", topic, n)
		}
	}
	return errors.Join(errs...)
}

// withMessage adds a broker's error message, which often says more than the
// error code, to err. A Kafka error code's own text is then left out: the
// message replaces its generic description.
func withMessage(err error, msg string) error {
	if msg == "" || strings.Contains(err.Error(), msg) {
		return err
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return &brokerError{code: ke, msg: msg}
	}
	return fmt.Errorf("%w: %s", err, msg)
}

// brokerError is a Kafka error code with the broker's message about it.
type brokerError struct {
	code *kerr.Error
	msg  string
}

func (e *brokerError) Error() string { return e.code.Message + ": " + e.msg }
func (e *brokerError) Unwrap() error { return e.code }

// deleteBatch is how many topics one DeleteTopics request names: small
// enough that deleting many topics shows progress.
const deleteBatch = 10

func runTopicsDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel topics delete", "runnel topics delete [flags] TOPIC...", `
Deletes topics and their records. A topic that does not exist is an error;
the others are deleted. Many topics are deleted a batch at a time, with
progress on stderr.`, stderr)
	conn := addConnFlags(fs, adminTimeout)
	wantProgress := progressFlag(fs)
	topics, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(topics) == 0 {
		return usageError(fs, "no topic given")
	}
	ctx, adm, done, err := conn.admin(ctx)
	if err != nil {
		return err
	}
	defer done()

	var deleted atomic.Int64
	prog := startProgress(ctx, stderr, *wantProgress, func() string {
		return fmt.Sprintf("deleted %d of %d topics", deleted.Load(), len(topics))
	})
	var errs []error
	for batch := range slices.Chunk(topics, deleteBatch) {
		resps, err := adm.DeleteTopics(ctx, batch...)
		if err != nil {
			errs = append(errs, fmt.Errorf("delete topics: %w", contextErr(ctx, err)))
			break
		}
		for _, topic := range batch {
			r, ok := resps[topic]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("topic %q: no answer from the broker", topic))
			case errors.Is(r.Err, kerr.UnknownTopicOrPartition):
				errs = append(errs, fmt.Errorf("topic %q does not exist", topic))
			case r.Err != nil:
				errs = append(errs, fmt.Errorf("delete topic %q: %w", topic, withMessage(r.Err, r.ErrMessage)))
			default:
				deleted.Add(1)
				fmt.Fprintf(stdout, "deleted topic %s\n", topic)
			}
		}
	}
	prog.stop(fmt.Sprintf("deleted %d of %d topics", deleted.Load(), len(topics)))
	return errors.Join(errs...)
}

func runTopicsAlter(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel topics alter", "runnel topics alter [flags] TOPIC", `
Changes a topic: sets or removes configs, and adds partitions. Keys are
partitioned by the partition count, so adding partitions moves keys: a
group's table is then partitioned unlike its inputs' old records.`, stderr)
	conn := addConnFlags(fs, adminTimeout)
	var set keyValues
	fs.Var(&set, "config", "set topic config `key=value`; repeat for more")
	var remove stringList
	fs.Var(&remove, "delete-config", "remove the topic's own value of config `key`, so that the broker's default applies; repeat for more")
	partitions := fs.Int("partitions", 0, "the new partition `count`, more than the topic has (partitions can only be added)")
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fs, "want one topic, got %d arguments", len(pos))
	}
	topic := pos[0]
	if len(set) == 0 && len(remove) == 0 && *partitions == 0 {
		return usageError(fs, "nothing to change: give --config, --delete-config or --partitions")
	}
	if *partitions < 0 {
		return usageError(fs, "--partitions %d: want a count", *partitions)
	}
	ctx, adm, done, err := conn.admin(ctx)
	if err != nil {
		return err
	}
	defer done()
	tds, err := topicDetails(ctx, adm, topic)
	if err != nil {
		return err
	}
	have := len(tds[topic].Partitions)
	if *partitions > 0 && *partitions < have {
		return fmt.Errorf("topic %q has %d partitions: partitions can only be added, not removed (--partitions %d)", topic, have, *partitions)
	}

	var changes []string
	if len(set) > 0 || len(remove) > 0 {
		var alter []kadm.AlterConfig
		for _, kv := range set {
			alter = append(alter, kadm.AlterConfig{Op: kadm.SetConfig, Name: kv.key, Value: &kv.value})
			changes = append(changes, "set "+kv.key+"="+kv.value)
		}
		for _, k := range remove {
			alter = append(alter, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
			changes = append(changes, "removed "+k)
		}
		resps, err := adm.AlterTopicConfigs(ctx, alter, topic)
		if err != nil {
			return fmt.Errorf("alter configs of topic %q: %w", topic, contextErr(ctx, err))
		}
		for _, r := range resps {
			if r.Err != nil {
				return fmt.Errorf("alter configs of topic %q: %w", topic, withMessage(r.Err, r.ErrMessage))
			}
		}
	}
	if *partitions > have {
		resps, err := adm.UpdatePartitions(ctx, *partitions, topic)
		if err != nil {
			return fmt.Errorf("add partitions to topic %q: %w", topic, contextErr(ctx, err))
		}
		for _, r := range resps {
			if r.Err != nil {
				return fmt.Errorf("add partitions to topic %q: %w", topic, withMessage(r.Err, r.ErrMessage))
			}
		}
		changes = append(changes, fmt.Sprintf("partitions %d -> %d", have, *partitions))
	} else if *partitions == have {
		changes = append(changes, fmt.Sprintf("partitions already %d", have))
	}
	fmt.Fprintf(stdout, "altered topic %s: %s\n", topic, strings.Join(changes, ", "))
	return nil
}
