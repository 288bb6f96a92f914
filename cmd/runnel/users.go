package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
)

func runUsers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return subcommands(ctx, "users", `
Manages the SASL/SCRAM users of runnel serve or a Kafka cluster, through
the Kafka APIs (AlterUserScramCredentials, DescribeUserScramCredentials):
the broker keeps only salted, hashed credentials. With authorization on,
this needs a super user or Alter (Describe, to list) on the cluster.`, []command{
		{"create", "create a user, or set its password", runUsersCreate},
		{"delete", "delete users", runUsersDelete},
		{"list", "list users and their SCRAM mechanisms", runUsersList},
	}, args, stdout, stderr)
}

// userPasswordEnv is where users create reads the new password, unless it
// is piped on stdin.
const userPasswordEnv = "RUNNEL_USER_PASSWORD"

func runUsersCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel users create", "runnel users create [flags] USER", `
Creates a SCRAM user, or replaces its password. The password is read from
the environment variable named by --password-env or, if that is not set,
from the first line of stdin, so that it is not on the command line.`, stderr)
	conn := addConnFlags(fs, adminTimeout)
	mechs := fs.String("mechanisms", "SCRAM-SHA-256,SCRAM-SHA-512", "comma-separated SCRAM `mechanisms` to store a credential for")
	iterations := fs.Int("iterations", 8192, "PBKDF2 `iterations` of the salted password (4096 to 16384, as Kafka allows)")
	passEnv := fs.String("password-env", userPasswordEnv, "environment `variable` holding the new password")
	pos, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError(fs, "want one user, got %d arguments", len(pos))
	}
	ms, err := parseScramMechanisms(*mechs)
	if err != nil {
		return usageError(fs, "--mechanisms: %v", err)
	}
	pass, ok := os.LookupEnv(*passEnv)
	if !ok {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read the password from stdin: %w", err)
		}
		pass = strings.TrimRight(line, "\r\n")
	}
	if pass == "" {
		return fmt.Errorf("no password: set $%s or pipe it on stdin", *passEnv)
	}
	var ups []kadm.UpsertSCRAM
	for _, m := range ms {
		ups = append(ups, kadm.UpsertSCRAM{User: pos[0], Mechanism: m, Iterations: int32(*iterations), Password: pass})
	}
	ctx, adm, done, err := conn.admin(ctx)
	if err != nil {
		return err
	}
	defer done()
	res, err := adm.AlterUserSCRAMs(ctx, nil, ups)
	if err != nil {
		return fmt.Errorf("alter SCRAM credentials: %w", contextErr(ctx, err))
	}
	if err := scramErr(res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "user %s: %s\n", pos[0], *mechs)
	return nil
}

func runUsersDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel users delete", "runnel users delete [flags] USER...", `
Deletes users: every SCRAM credential each one has.`, stderr)
	conn := addConnFlags(fs, adminTimeout)
	users, err := parseArgs(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(users) == 0 {
		return usageError(fs, "no user given")
	}
	ctx, adm, done, err := conn.admin(ctx)
	if err != nil {
		return err
	}
	defer done()
	described, err := adm.DescribeUserSCRAMs(ctx, users...)
	if err != nil {
		return fmt.Errorf("describe SCRAM credentials: %w", contextErr(ctx, err))
	}
	var dels []kadm.DeleteSCRAM
	var errs []error
	for _, u := range users {
		d := described[u]
		if d.Err != nil {
			errs = append(errs, fmt.Errorf("user %s: %w", u, d.Err))
			continue
		}
		for _, ci := range d.CredInfos {
			dels = append(dels, kadm.DeleteSCRAM{User: u, Mechanism: ci.Mechanism})
		}
	}
	if len(dels) > 0 {
		res, err := adm.AlterUserSCRAMs(ctx, dels, nil)
		if err != nil {
			return fmt.Errorf("alter SCRAM credentials: %w", contextErr(ctx, err))
		}
		if err := scramErr(res); err != nil {
			errs = append(errs, err)
		}
		for _, u := range users {
			if r, ok := res[u]; ok && r.Err == nil {
				fmt.Fprintf(stdout, "deleted user %s\n", u)
			}
		}
	}
	return errors.Join(errs...)
}

// userRow is a row of users list.
type userRow struct {
	User       string   `json:"user"`
	Mechanisms []string `json:"mechanisms"`
	Iterations []int32  `json:"iterations"`
}

func runUsersList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("runnel users list", "runnel users list [flags]", "Lists the SCRAM users, with their mechanisms and iteration counts.", stderr)
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
	described, err := adm.DescribeUserSCRAMs(ctx)
	if err != nil {
		return fmt.Errorf("describe SCRAM credentials: %w", contextErr(ctx, err))
	}
	rows := []userRow{}
	for _, d := range described {
		if d.Err != nil {
			return fmt.Errorf("user %s: %w", d.User, d.Err)
		}
		r := userRow{User: d.User}
		for _, ci := range d.CredInfos {
			r.Mechanisms = append(r.Mechanisms, ci.Mechanism.String())
			r.Iterations = append(r.Iterations, ci.Iterations)
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b userRow) int { return strings.Compare(a.User, b.User) })
	if *out == outputJSON {
		return writeJSON(stdout, rows)
	}
	t := newTable(stdout, "USER", "MECHANISMS", "ITERATIONS")
	for _, r := range rows {
		its := make([]string, len(r.Iterations))
		for i, n := range r.Iterations {
			its[i] = itoa(n)
		}
		t.row(printable(r.User), strings.Join(r.Mechanisms, ","), strings.Join(its, ","))
	}
	return t.flush()
}

// parseScramMechanisms parses a comma-separated list of SCRAM mechanisms.
func parseScramMechanisms(s string) ([]kadm.ScramMechanism, error) {
	var ms []kadm.ScramMechanism
	for m := range strings.SplitSeq(s, ",") {
		switch strings.ToUpper(strings.TrimSpace(m)) {
		case "SCRAM-SHA-256":
			ms = append(ms, kadm.ScramSha256)
		case "SCRAM-SHA-512":
			ms = append(ms, kadm.ScramSha512)
		case "":
		default:
			return nil, fmt.Errorf("%q: want SCRAM-SHA-256 or SCRAM-SHA-512", m)
		}
	}
	if len(ms) == 0 {
		return nil, errors.New("no mechanism")
	}
	return ms, nil
}

// scramErr joins the errors of an AlterUserScramCredentials.
func scramErr(res kadm.AlteredUserSCRAMs) error {
	var errs []error
	for u, r := range res {
		if r.Err != nil {
			msg := ""
			if r.ErrMessage != "" {
				msg = ": " + r.ErrMessage
			}
			errs = append(errs, fmt.Errorf("user %s: %w%s", u, r.Err, msg))
		}
	}
	return errors.Join(errs...)
}
