package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func runACLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return subcommands(ctx, "acls", `
Manages the ACLs of runnel serve (with --sasl or --tls-client-ca) or a Kafka
cluster, through the Kafka APIs (CreateAcls, DescribeAcls, DeleteAcls). An
ACL allows or denies a principal (User:alice), from a host (* for any), an
operation on a topic, group, transactional id or the cluster, by literal
name or by prefix. A resource that no ACL allows is denied to all but the
super users. This needs a super user or Alter (Describe, to list) on the
cluster.`, []command{
		{"add", "add ACLs", runACLsAdd},
		{"remove", "remove the ACLs a filter matches", runACLsRemove},
		{"list", "list the ACLs a filter matches", runACLsList},
	}, args, stdout, stderr)
}

// aclFlags select ACLs or describe new ones.
type aclFlags struct {
	principal, host  string
	ops              stringList
	deny, prefixed   bool
	topic, group, tx string
	cluster          bool
}

func addACLFlags(fs *flag.FlagSet, filter bool) *aclFlags {
	f := &aclFlags{}
	any := ""
	if filter {
		any = " (default: any)"
	}
	fs.StringVar(&f.principal, "principal", "", "`principal` the ACL is for, as User:alice, or User:* for everyone"+any)
	fs.StringVar(&f.host, "host", "", "client IP `address` the ACL applies to, * for any (default: * when adding, any when filtering)")
	fs.Var(&f.ops, "operation", "`operation`: read, write, create, delete, alter, describe, clusteraction, describeconfigs, alterconfigs, idempotentwrite or all; repeat or comma-separate for more"+any)
	fs.BoolVar(&f.deny, "deny", false, "a deny ACL, which overrides any allow (default: allow)")
	fs.StringVar(&f.topic, "topic", "", "topic `name` (with --prefixed, a prefix of names)")
	fs.StringVar(&f.group, "group", "", "consumer group `id` (with --prefixed, a prefix)")
	fs.StringVar(&f.tx, "transactional-id", "", "transactional `id` (with --prefixed, a prefix)")
	fs.BoolVar(&f.cluster, "cluster", false, "the cluster resource (topic creation, ACL and user management, ...)")
	fs.BoolVar(&f.prefixed, "prefixed", false, "the name is a prefix: the ACL applies to every resource whose name starts with it")
	return f
}

// builder returns the kadm ACL builder of the flags; filter allows what is
// left unset to match anything.
func (f *aclFlags) builder(filter bool) (*kadm.ACLBuilder, error) {
	b := kadm.NewACLs()
	n := 0
	if f.topic != "" {
		b.Topics(f.topic)
		n++
	}
	if f.group != "" {
		b.Groups(f.group)
		n++
	}
	if f.tx != "" {
		b.TransactionalIDs(f.tx)
		n++
	}
	if f.cluster {
		b.Clusters()
		n++
	}
	switch {
	case n > 1:
		return nil, errors.New("give one of --topic, --group, --transactional-id and --cluster")
	case n == 0 && !filter:
		return nil, errors.New("no resource: give --topic, --group, --transactional-id or --cluster")
	case n == 0:
		b.AnyResource()
	}
	var ops []kadm.ACLOperation
	for _, o := range f.ops {
		for s := range strings.SplitSeq(o, ",") {
			op, err := kmsg.ParseACLOperation(strings.TrimSpace(s))
			if err != nil || op == kmsg.ACLOperationUnknown || (op == kmsg.ACLOperationAny && !filter) {
				return nil, fmt.Errorf("--operation %q: unknown operation", s)
			}
			ops = append(ops, op)
		}
	}
	if len(ops) == 0 && !filter {
		return nil, errors.New("no --operation given")
	}
	b.Operations(ops...) // none: any
	host := f.host
	if host == "" && !filter {
		host = "*"
	}
	hosts := []string{}
	if host != "" {
		hosts = []string{host}
	}
	if !filter && f.principal == "" {
		return nil, errors.New("no --principal given")
	}
	principals := []string{}
	if f.principal != "" {
		principals = []string{f.principal}
	}
	if f.deny {
		b.Deny(principals...).DenyHosts(hosts...)
	} else {
		b.Allow(principals...).AllowHosts(hosts...)
		if filter {
			// A filter without --deny matches both kinds.
			b.Deny(principals...).DenyHosts(hosts...)
		}
	}
	switch {
	case f.prefixed:
		b.ResourcePatternType(kadm.ACLPatternPrefixed)
	case filter && n == 0:
		b.ResourcePatternType(kadm.ACLPatternAny)
	default:
		b.ResourcePatternType(kadm.ACLPatternLiteral)
	}
	return b, nil
}

func runACLsAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel acls add", "runnel acls add [flags]", `
Adds ACLs: one per operation given. For example, to let alice produce to and
consume from topic orders in group billing:

  runnel acls add --principal User:alice --operation write,read --topic orders
  runnel acls add --principal User:alice --operation read --group billing`, stderr)
	conn := addConnFlags(fs, adminTimeout)
	f := addACLFlags(fs, false)
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected arguments %q", pos)
	}
	b, err := f.builder(false)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	ctx, adm, done, err := conn.admin(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := adm.CreateACLs(ctx, b)
	if err != nil {
		return fmt.Errorf("create ACLs: %w", contextErr(ctx, err))
	}
	var errs []error
	for _, r := range res {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("%s %s on %s %s: %w %s", r.Permission, r.Operation, r.Type, r.Name, r.Err, r.ErrMessage))
			continue
		}
		fmt.Fprintf(stdout, "added: %s %s %s %s %s:%s host %s\n", r.Principal, strings.ToLower(r.Permission.String()),
			strings.ToLower(r.Operation.String()), strings.ToLower(r.Type.String()), strings.ToLower(r.Pattern.String()), r.Name, r.Host)
	}
	return errors.Join(errs...)
}

func runACLsRemove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel acls remove", "runnel acls remove [flags]", `
Removes every ACL the flags match; a flag left out matches anything, so that
"runnel acls remove --principal User:alice" removes all of alice's ACLs. At
least one flag is needed.`, stderr)
	conn := addConnFlags(fs, adminTimeout)
	f := addACLFlags(fs, true)
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected arguments %q", pos)
	}
	if f.principal == "" && f.topic == "" && f.group == "" && f.tx == "" && !f.cluster && len(f.ops) == 0 && f.host == "" {
		return usageError(fs, "no filter: give at least one of --principal, --topic, --group, --transactional-id, --cluster, --operation, --host")
	}
	b, err := f.builder(true)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	ctx, adm, done, err := conn.admin(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := adm.DeleteACLs(ctx, b)
	if err != nil {
		return fmt.Errorf("delete ACLs: %w", contextErr(ctx, err))
	}
	var errs []error
	n := 0
	for _, r := range res {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("delete ACLs: %w %s", r.Err, r.ErrMessage))
			continue
		}
		for _, d := range r.Deleted {
			if d.Err != nil {
				errs = append(errs, fmt.Errorf("delete ACL: %w", d.Err))
				continue
			}
			n++
		}
	}
	fmt.Fprintf(stdout, "removed %d ACLs\n", n)
	return errors.Join(errs...)
}

// aclRow is a row of acls list.
type aclRow struct {
	Principal    string `json:"principal"`
	Host         string `json:"host"`
	Permission   string `json:"permission"`
	Operation    string `json:"operation"`
	ResourceType string `json:"resource_type"`
	Pattern      string `json:"pattern"`
	Name         string `json:"name"`
}

func runACLsList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel acls list", "runnel acls list [flags]", `
Lists the ACLs the flags match; with none, every ACL.`, stderr)
	conn := addConnFlags(fs, adminTimeout)
	out := addOutputFlag(fs)
	f := addACLFlags(fs, true)
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError(fs, "unexpected arguments %q", pos)
	}
	b, err := f.builder(true)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	ctx, adm, done, err := conn.admin(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := adm.DescribeACLs(ctx, b)
	if err != nil {
		return fmt.Errorf("describe ACLs: %w", contextErr(ctx, err))
	}
	rows := []aclRow{}
	seen := map[aclRow]bool{}
	for _, r := range res {
		if r.Err != nil {
			return fmt.Errorf("describe ACLs: %w %s", r.Err, r.ErrMessage)
		}
		for _, d := range r.Described {
			row := aclRow{Principal: d.Principal, Host: d.Host, Permission: strings.ToLower(d.Permission.String()),
				Operation: strings.ToLower(d.Operation.String()), ResourceType: strings.ToLower(d.Type.String()),
				Pattern: strings.ToLower(d.Pattern.String()), Name: d.Name}
			if !seen[row] {
				seen[row] = true
				rows = append(rows, row)
			}
		}
	}
	slices.SortFunc(rows, func(a, b aclRow) int {
		return strings.Compare(a.ResourceType+"\x00"+a.Name+"\x00"+a.Principal+"\x00"+a.Operation, b.ResourceType+"\x00"+b.Name+"\x00"+b.Principal+"\x00"+b.Operation)
	})
	if *out == outputJSON {
		return writeJSON(stdout, rows)
	}
	t := newTable(stdout, "RESOURCE", "PATTERN", "NAME", "PRINCIPAL", "HOST", "PERMISSION", "OPERATION")
	for _, r := range rows {
		t.row(r.ResourceType, r.Pattern, printable(r.Name), printable(r.Principal), printable(r.Host), r.Permission, r.Operation)
	}
	return t.flush()
}
