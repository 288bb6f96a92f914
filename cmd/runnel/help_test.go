package main

import (
	"strings"
	"testing"
)

// TestHelp asks every command for help: usage and flags on stdout, exit
// status 0, nothing on stderr.
func TestHelp(t *testing.T) {
	r := runCLI(t, "--help")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("runnel --help: status %d, stderr %q", r.code, r.stderr)
	}
	checkGolden(t, "usage", r.stdout)

	for _, c := range []struct {
		args  []string
		flags []string
	}{
		{[]string{"topics", "--help"}, []string{"list", "describe", "create", "delete", "alter"}},
		{[]string{"topics", "list", "--help"}, []string{"-brokers", "-output", "-internal", "-timeout"}},
		{[]string{"topics", "describe", "-h"}, []string{"-brokers", "-output", "-all-configs"}},
		{[]string{"topics", "create", "t", "--help"}, []string{"-partitions", "-replication-factor", "-config"}},
		{[]string{"topics", "delete", "--help"}, []string{"-progress"}},
		{[]string{"topics", "alter", "--help"}, []string{"-config", "-delete-config", "-partitions"}},
		{[]string{"produce", "--help"}, []string{"-key-sep", "-header", "-partition", "-file", "-output", "-progress"}},
		{[]string{"consume", "--help"}, []string{"-group", "-from", "-format", "-n", "-progress", "RFC 3339", "unix milliseconds"}},
		{[]string{"groups", "help"}, []string{"list", "describe", "reset-offsets"}},
		{[]string{"groups", "list", "--help"}, []string{"-output"}},
		{[]string{"groups", "describe", "--help"}, []string{"-output"}},
		{[]string{"groups", "reset-offsets", "--help"}, []string{"-topic", "-to", "-dry-run", "-output"}},
		{[]string{"serve", "--help"}, []string{"-max-inflight-bytes", "-max-fetch-bytes", "-max-connections", "-max-connections-per-ip",
			"-connections-max-idle", "-request-read-timeout", "-max-partitions", "-max-partitions-per-topic",
			"-tls-cert", "-tls-key", "-tls-client-ca", "-tls-addr", "-sasl", "-super-users", "-insecure"}},
		{[]string{"users", "create", "--help"}, []string{"-password-env", "-mechanisms", "-tls-ca", "-sasl-mechanism", "-sasl-user"}},
		{[]string{"acls", "add", "--help"}, []string{"-principal", "-operation", "-topic", "-group", "-prefixed", "-deny"}},
		{[]string{"topics", "list", "--help"}, []string{"-tls", "-tls-ca", "-tls-cert", "-tls-key", "-sasl-mechanism", "-sasl-user", "-sasl-password-env"}},
		{[]string{"tables", "--help"}, []string{"get", "scan", "<GROUP>-table"}},
		{[]string{"tables", "get", "--help"}, []string{"-value-format", "-output", "-progress"}},
		{[]string{"tables", "scan", "--help"}, []string{"-value-format", "-output", "-progress", "-prefix"}},
	} {
		r := runCLI(t, c.args...)
		name := strings.Join(c.args, " ")
		if r.code != 0 || r.stderr != "" {
			t.Errorf("runnel %s: status %d, stderr %q", name, r.code, r.stderr)
		}
		if !strings.HasPrefix(r.stdout, "Usage: runnel "+c.args[0]) {
			t.Errorf("runnel %s: stdout does not start with the usage:\n%s", name, r.stdout)
		}
		for _, f := range c.flags {
			if !strings.Contains(r.stdout, f) {
				t.Errorf("runnel %s: help lacks %s:\n%s", name, f, r.stdout)
			}
		}
	}
}

// TestParseArgs checks that flags may come anywhere among the positional
// arguments, and that "--" ends them.
func TestParseArgs(t *testing.T) {
	for _, c := range []struct {
		args, want []string
		n          int
	}{
		{[]string{"a", "b"}, []string{"a", "b"}, 0},
		{[]string{"-n", "3", "a"}, []string{"a"}, 3},
		{[]string{"a", "-n", "3", "b"}, []string{"a", "b"}, 3},
		{[]string{"a", "b", "-n=3"}, []string{"a", "b"}, 3},
		{[]string{"a", "--", "-n", "3"}, []string{"a", "-n", "3"}, 0},
		{[]string{"-n", "3", "--", "-x"}, []string{"-x"}, 3},
	} {
		fs := newFlagSet("runnel test", "runnel test", "", &strings.Builder{})
		n := fs.Int("n", 0, "")
		got, err := parseArgs(fs, c.args, &strings.Builder{})
		if err != nil || strings.Join(got, " ") != strings.Join(c.want, " ") || *n != c.n {
			t.Errorf("parseArgs(%q) = %q, n=%d, %v; want %q, n=%d", c.args, got, *n, err, c.want, c.n)
		}
	}
}

// TestParsePosition checks the positions --from and --to take.
func TestParsePosition(t *testing.T) {
	for _, c := range []struct {
		in   string
		want position
	}{
		{"beginning", position{kind: positionStart}},
		{"earliest", position{kind: positionStart}},
		{"end", position{kind: positionEnd}},
		{"latest", position{kind: positionEnd}},
		{"0", position{kind: positionOffset}},
		{"42", position{kind: positionOffset, offset: 42}},
		{"@1767366245000", position{kind: positionTime, millis: 1767366245000}},
		{"2026-01-02T15:04:05Z", position{kind: positionTime, millis: 1767366245000}},
		{"2026-01-02T16:04:05.5+01:00", position{kind: positionTime, millis: 1767366245500}},
	} {
		got, err := parsePosition(c.in)
		if err != nil || got != c.want {
			t.Errorf("parsePosition(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "-1", "@", "@-5", "@x", "2026-01-02", "tomorrow", "1.5"} {
		if _, err := parsePosition(bad); err == nil {
			t.Errorf("parsePosition(%q) took it", bad)
		}
	}
}
