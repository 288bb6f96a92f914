package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// runGroups dispatches `runnel groups <command>`.
func runGroups(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return subcommands(ctx, "groups", "Inspects consumer groups (runnel groups are consumer groups too) and moves their offsets.", []command{
		{"list", "list consumer groups with their states", runGroupsList},
		{"describe", "show groups' members, assignments, committed offsets and lag", runGroupsDescribe},
		{"reset-offsets", "move an inactive group's committed offsets on a topic", runGroupsResetOffsets},
	}, args, stdout, stderr)
}

// groupSummary is a row of groups list.
type groupSummary struct {
	Group        string `json:"group"`
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	Protocol     string `json:"protocol"`
	Members      int    `json:"members"`
}

func runGroupsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel groups list", "runnel groups list [flags]", "Lists the consumer groups, by name, with their states and member counts.", stderr)
	conn := addConnFlags(fs, adminTimeout)
	out := addOutputFlag(fs)
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
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("list groups: %w", contextErr(ctx, err))
	}
	list := []groupSummary{}
	if names := listed.Groups(); len(names) > 0 {
		described, err := adm.DescribeGroups(ctx, names...)
		if err != nil {
			return fmt.Errorf("describe groups: %w", contextErr(ctx, err))
		}
		for _, lg := range listed.Sorted() {
			s := groupSummary{Group: lg.Group, State: lg.State, ProtocolType: lg.ProtocolType}
			// A group may go between the listing and the description.
			if d, ok := described[lg.Group]; ok && d.Err == nil {
				s.State, s.Protocol, s.Members = d.State, d.Protocol, len(d.Members)
			}
			list = append(list, s)
		}
	}
	if *out == outputJSON {
		return writeJSON(stdout, list)
	}
	t := newTable(stdout, "GROUP", "STATE", "TYPE", "PROTOCOL", "MEMBERS")
	for _, s := range list {
		t.row(printable(s.Group), printable(s.State), printable(s.ProtocolType), printable(s.Protocol), itoa(s.Members))
	}
	return t.flush()
}

// groupDescription is a group as groups describe shows it.
type groupDescription struct {
	Group        string        `json:"group"`
	State        string        `json:"state"`
	ProtocolType string        `json:"protocol_type"`
	Protocol     string        `json:"protocol"`
	Members      []groupMember `json:"members"`
	Offsets      []groupOffset `json:"offsets"`
	// Transactions are the open transactions writing to a partition the
	// group reads: until they end, read_committed members cannot read past
	// their first records there.
	Transactions []openTransaction `json:"transactions"`
}

// openTransaction is a transaction that is not finished yet.
type openTransaction struct {
	TransactionalID string            `json:"transactional_id"`
	ProducerID      int64             `json:"producer_id"`
	ProducerEpoch   int16             `json:"producer_epoch"`
	State           string            `json:"state"`
	StartedMs       int64             `json:"started_ms"`
	TimeoutMs       int32             `json:"timeout_ms"`
	Partitions      []topicPartitions `json:"partitions"`
}

// openTransactions lists the transactions open on the cluster: Ongoing,
// or decided and being written (PrepareCommit, PrepareAbort).
func openTransactions(ctx context.Context, adm *kadm.Client) ([]openTransaction, error) {
	states := []string{"Ongoing", "PrepareCommit", "PrepareAbort"}
	listed, err := adm.ListTransactions(ctx, nil, states)
	if err != nil {
		return nil, fmt.Errorf("list transactions: %w", contextErr(ctx, err))
	}
	ids := listed.TransactionalIDs()
	if len(ids) == 0 {
		return nil, nil
	}
	described, err := adm.DescribeTransactions(ctx, ids...)
	if err != nil {
		return nil, fmt.Errorf("describe transactions: %w", contextErr(ctx, err))
	}
	var out []openTransaction
	for _, d := range described.Sorted() {
		if d.Err != nil || !slices.Contains(states, d.State) {
			continue // ended between the two calls
		}
		o := openTransaction{TransactionalID: d.TxnID, ProducerID: d.ProducerID, ProducerEpoch: d.ProducerEpoch,
			State: d.State, StartedMs: d.StartTimestamp, TimeoutMs: d.TimeoutMillis}
		for _, t := range d.Topics.Sorted() {
			o.Partitions = append(o.Partitions, topicPartitions{Topic: t.Topic, Partitions: t.Partitions})
		}
		out = append(out, o)
	}
	return out, nil
}

// touching returns the transactions that write to one of the group's
// partitions.
func touching(txns []openTransaction, offsets []groupOffset) []openTransaction {
	reads := map[string]map[int32]bool{}
	for _, o := range offsets {
		if reads[o.Topic] == nil {
			reads[o.Topic] = map[int32]bool{}
		}
		reads[o.Topic][o.Partition] = true
	}
	out := []openTransaction{}
	for _, x := range txns {
		if slices.ContainsFunc(x.Partitions, func(tp topicPartitions) bool {
			return slices.ContainsFunc(tp.Partitions, func(p int32) bool { return reads[tp.Topic][p] })
		}) {
			out = append(out, x)
		}
	}
	return out
}

// groupMember is a member of a described group.
type groupMember struct {
	MemberID    string            `json:"member_id"`
	InstanceID  *string           `json:"instance_id"`
	ClientID    string            `json:"client_id"`
	ClientHost  string            `json:"client_host"`
	Assignments []topicPartitions `json:"assignments"`
}

// topicPartitions are partitions of one topic.
type topicPartitions struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

// groupOffset is a partition a group has committed an offset for or has
// assigned to a member.
type groupOffset struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Committed is null if the group has committed no offset.
	Committed *int64 `json:"committed"`
	LogStart  int64  `json:"log_start_offset"`
	LogEnd    int64  `json:"log_end_offset"`
	// Lag is how many records are between the committed offset (or the log
	// start, without one) and the log end; -1 if unknown, see Error.
	Lag      int64  `json:"lag"`
	MemberID string `json:"member_id,omitempty"`
	Error    string `json:"error,omitempty"`
}

func runGroupsDescribe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel groups describe", "runnel groups describe [flags] GROUP...", `
Shows each group's state, its members (client ids, hosts, assigned
partitions), and for every partition it has committed an offset for or
assigned: the committed offset, the log start and end offsets and the lag;
then the open transactions writing to those partitions, which hold back
read_committed members until they end.`, stderr)
	conn := addConnFlags(fs, adminTimeout)
	out := addOutputFlag(fs)
	groups, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(groups) == 0 {
		return usageError(fs, "no group given")
	}
	ctx, adm, done, err := conn.admin(ctx)
	if err != nil {
		return err
	}
	defer done()
	// Lag reorders the slice it is given; the output keeps the order asked.
	lags, err := adm.Lag(ctx, slices.Clone(groups)...)
	if err != nil {
		return fmt.Errorf("describe groups: %w", contextErr(ctx, err))
	}
	var descs []groupDescription
	var errs []error
	for _, g := range groups {
		d, err := describeGroup(g, lags[g])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		descs = append(descs, d)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	txns, err := openTransactions(ctx, adm)
	if err != nil {
		// The groups are described all the same: a cluster too old for
		// ListTransactions (Kafka before 3.0) has groups worth seeing.
		fmt.Fprintf(stderr, "runnel groups describe: open transactions not shown: %v\n", err)
		txns = nil
	}
	for i := range descs {
		descs[i].Transactions = touching(txns, descs[i].Offsets)
	}
	if *out == outputJSON {
		return writeJSON(stdout, descs)
	}
	for i, d := range descs {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		if err := printGroup(stdout, d); err != nil {
			return err
		}
	}
	return nil
}

// describeGroup turns kadm's description and lag of a group into ours.
func describeGroup(name string, l kadm.DescribedGroupLag) (groupDescription, error) {
	switch {
	case l.Group == "", errors.Is(l.DescribeErr, kerr.GroupIDNotFound), l.DescribeErr == nil && l.State == "Dead":
		return groupDescription{}, fmt.Errorf("group %q does not exist", name)
	case l.DescribeErr != nil:
		return groupDescription{}, fmt.Errorf("describe group %q: %w", name, l.DescribeErr)
	case l.FetchErr != nil:
		return groupDescription{}, fmt.Errorf("committed offsets of group %q: %w", name, l.FetchErr)
	}
	d := groupDescription{
		Group: name, State: l.State, ProtocolType: l.ProtocolType, Protocol: l.Protocol,
		Members: []groupMember{}, Offsets: []groupOffset{},
	}
	for _, m := range l.Members {
		gm := groupMember{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID, ClientHost: m.ClientHost, Assignments: []topicPartitions{}}
		if a, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range a.Topics {
				gm.Assignments = append(gm.Assignments, topicPartitions{Topic: t.Topic, Partitions: slices.Sorted(slices.Values(t.Partitions))})
			}
			slices.SortFunc(gm.Assignments, func(a, b topicPartitions) int { return strings.Compare(a.Topic, b.Topic) })
		}
		d.Members = append(d.Members, gm)
	}
	for _, ml := range l.Lag.Sorted() {
		o := groupOffset{Topic: ml.Topic, Partition: ml.Partition, LogStart: ml.Start.Offset, LogEnd: ml.End.Offset, Lag: ml.Lag}
		if ml.Commit.At >= 0 {
			at := ml.Commit.At
			o.Committed = &at
		}
		if ml.Member != nil {
			o.MemberID = ml.Member.MemberID
		}
		if ml.Err != nil {
			o.Error = ml.Err.Error()
		}
		d.Offsets = append(d.Offsets, o)
	}
	return d, nil
}

func printGroup(w io.Writer, d groupDescription) error {
	fmt.Fprintf(w, "Group: %s\nState: %s\n", printable(d.Group), d.State)
	if d.ProtocolType != "" {
		proto := d.ProtocolType
		if d.Protocol != "" {
			proto += " (" + d.Protocol + ")"
		}
		fmt.Fprintf(w, "Protocol: %s\n", proto)
	}
	fmt.Fprintln(w)
	if len(d.Members) == 0 {
		fmt.Fprintln(w, "No members.")
	} else {
		t := newTable(w, "MEMBER", "INSTANCE", "CLIENT-ID", "HOST", "ASSIGNED")
		for _, m := range d.Members {
			instance := ""
			if m.InstanceID != nil {
				instance = *m.InstanceID
			}
			var as []string
			for _, a := range m.Assignments {
				ps := make([]string, len(a.Partitions))
				for i, p := range a.Partitions {
					ps[i] = itoa(p)
				}
				as = append(as, a.Topic+":"+strings.Join(ps, ","))
			}
			t.row(printable(m.MemberID), printable(instance), printable(m.ClientID), printable(m.ClientHost), printable(strings.Join(as, " ")))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	if len(d.Offsets) == 0 {
		fmt.Fprintln(w, "No committed offsets.")
		return nil
	}
	if err := printOffsets(w, d.Offsets); err != nil {
		return err
	}
	if len(d.Transactions) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Open transactions on the group's partitions:")
	t := newTable(w, "TRANSACTIONAL-ID", "PRODUCER", "EPOCH", "STATE", "OPEN-FOR", "TIMEOUT", "PARTITIONS")
	now := time.Now()
	for _, x := range d.Transactions {
		var ps []string
		for _, tp := range x.Partitions {
			ns := make([]string, len(tp.Partitions))
			for i, p := range tp.Partitions {
				ns[i] = itoa(p)
			}
			ps = append(ps, tp.Topic+":"+strings.Join(ns, ","))
		}
		open := "-"
		if x.StartedMs > 0 {
			open = now.Sub(time.UnixMilli(x.StartedMs)).Round(time.Millisecond).String()
		}
		t.row(printable(x.TransactionalID), itoa(x.ProducerID), itoa(x.ProducerEpoch), x.State, open,
			(time.Duration(x.TimeoutMs) * time.Millisecond).String(), printable(strings.Join(ps, " ")))
	}
	return t.flush()
}

// printOffsets prints a group's offsets table.
func printOffsets(w io.Writer, offsets []groupOffset) error {
	t := newTable(w, "TOPIC", "PARTITION", "COMMITTED", "LOG-START", "LOG-END", "LAG", "MEMBER")
	for _, o := range offsets {
		committed, lag := "-", "-"
		if o.Committed != nil {
			committed = itoa(*o.Committed)
		}
		if o.Lag >= 0 {
			lag = itoa(o.Lag)
		}
		member := o.MemberID
		if o.Error != "" {
			member = "error: " + o.Error
		}
		t.row(printable(o.Topic), itoa(o.Partition), committed, itoa(o.LogStart), itoa(o.LogEnd), lag, printable(member))
	}
	return t.flush()
}

// offsetReset is one partition's move by groups reset-offsets.
type offsetReset struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Old is null if the group had committed no offset.
	Old *int64 `json:"old"`
	New int64  `json:"new"`
}

func runGroupsResetOffsets(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel groups reset-offsets", "runnel groups reset-offsets [flags] GROUP --topic T --to POSITION", `
Commits new offsets for GROUP on every partition of topic T, so that its
consumers resume there. The group must have no members: stop its consumers
(or runnel instances) first. A group that does not exist yet is created with
these offsets. An offset outside a partition's log is moved to its nearer
end.`, stderr)
	conn := addConnFlags(fs, adminTimeout)
	out := addOutputFlag(fs)
	topic := fs.String("topic", "", "the `topic` whose offsets to reset (required)")
	to := &positionFlag{}
	fs.Var(to, "to", "`POSITION` to move to: earliest, latest, "+positionHelp+" (required)")
	dryRun := fs.Bool("dry-run", false, "show the new offsets without committing them")
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fs, "want one group, got %d arguments", len(pos))
	}
	group := pos[0]
	if *topic == "" {
		return usageError(fs, "--topic is required")
	}
	if to.text == "" {
		return usageError(fs, "--to is required")
	}
	ctx, adm, done, err := conn.admin(ctx)
	if err != nil {
		return err
	}
	defer done()

	if err := checkInactive(ctx, adm, group); err != nil {
		return err
	}
	tds, err := topicDetails(ctx, adm, *topic)
	if err != nil {
		return err
	}
	resets, err := resetTargets(ctx, adm, *topic, partitionsOf(tds[*topic]), to.pos)
	if err != nil {
		return err
	}
	committed, err := adm.FetchOffsetsForTopics(ctx, group, *topic)
	if err != nil {
		return fmt.Errorf("committed offsets of group %q: %w", group, contextErr(ctx, err))
	}
	offsets := kadm.Offsets{}
	for i := range resets {
		r := &resets[i]
		if c, ok := committed.Lookup(*topic, r.Partition); ok && c.Err == nil && c.At >= 0 {
			old := c.At
			r.Old = &old
		}
		offsets.Add(kadm.Offset{Topic: *topic, Partition: r.Partition, At: r.New, LeaderEpoch: -1})
	}
	if !*dryRun {
		resps, err := adm.CommitOffsets(ctx, group, offsets)
		if err == nil {
			err = resps.Error()
		}
		if err != nil {
			if errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.RebalanceInProgress) {
				return fmt.Errorf("group %q got members while its offsets were being reset: stop its consumers and retry: %w", group, err)
			}
			return fmt.Errorf("commit offsets of group %q: %w", group, contextErr(ctx, err))
		}
	}
	if *out == outputJSON {
		return writeJSON(stdout, resets)
	}
	t := newTable(stdout, "TOPIC", "PARTITION", "OLD", "NEW")
	for _, r := range resets {
		old := "-"
		if r.Old != nil {
			old = itoa(*r.Old)
		}
		t.row(printable(r.Topic), itoa(r.Partition), old, itoa(r.New))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if *dryRun {
		fmt.Fprintln(stderr, "dry run: no offsets committed")
	}
	return nil
}

// checkInactive returns an error unless group has no members: offsets
// committed under an active group's feet would be overwritten by its
// members' next commits, or refused by the coordinator.
func checkInactive(ctx context.Context, adm *kadm.Client, group string) error {
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return fmt.Errorf("describe group %q: %w", group, contextErr(ctx, err))
	}
	d, ok := described[group]
	switch {
	case !ok, errors.Is(d.Err, kerr.GroupIDNotFound):
		return nil
	case d.Err != nil:
		return fmt.Errorf("describe group %q: %w", group, d.Err)
	case d.State == "Empty", d.State == "Dead":
		return nil
	}
	members := fmt.Sprintf("%d members", len(d.Members))
	if len(d.Members) == 1 {
		members = "1 member"
	}
	return fmt.Errorf("group %q is not empty (state %s, %s): stop its consumers before resetting its offsets", group, d.State, members)
}

// resetTargets computes the new offset of each partition of topic.
func resetTargets(ctx context.Context, adm *kadm.Client, topic string, partitions []int32, to position) ([]offsetReset, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("log start offsets of %q: %w", topic, contextErr(ctx, err))
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("log end offsets of %q: %w", topic, contextErr(ctx, err))
	}
	var byTime kadm.ListedOffsets
	if to.kind == positionTime {
		if byTime, err = adm.ListOffsetsAfterMilli(ctx, to.millis, topic); err != nil {
			return nil, fmt.Errorf("offsets of %q by time: %w", topic, contextErr(ctx, err))
		}
	}
	resets := make([]offsetReset, 0, len(partitions))
	for _, p := range partitions {
		start, _ := starts.Lookup(topic, p)
		end, _ := ends.Lookup(topic, p)
		if err := errors.Join(start.Err, end.Err); err != nil {
			return nil, fmt.Errorf("offsets of %q partition %d: %w", topic, p, err)
		}
		r := offsetReset{Topic: topic, Partition: p}
		switch to.kind {
		case positionStart:
			r.New = start.Offset
		case positionEnd:
			r.New = end.Offset
		case positionOffset:
			r.New = min(max(to.offset, start.Offset), end.Offset)
		case positionTime:
			lo, ok := byTime.Lookup(topic, p)
			switch {
			case !ok:
				return nil, fmt.Errorf("offset of %q partition %d by time: no answer", topic, p)
			case lo.Err != nil:
				return nil, fmt.Errorf("offset of %q partition %d by time: %w", topic, p, lo.Err)
			case lo.Offset < 0:
				r.New = end.Offset // no record at or after the time
			default:
				r.New = lo.Offset
			}
		}
		resets = append(resets, r)
	}
	return resets, nil
}
