package main

import (
	"bufio"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCLIProcess runs the built binary as people and scripts do: produce
// reads stdin, consume stops on SIGINT with exit status 0, and mistakes
// exit 1 or 2 with their message on stderr.
func TestCLIProcess(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build runnel with")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*cliTimeout)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "runnel")
	if out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addr := startBroker(t)
	createTopic(t, addr, "piped", 2, nil)

	cmd := exec.CommandContext(ctx, bin, "produce", "piped", "--key-sep", "=", "--brokers", addr)
	cmd.Stdin = strings.NewReader("a=1\nb=2\nc=3\n")
	out, err := cmd.Output()
	if err != nil || string(out) != "produced 3 records to piped\n" {
		t.Fatalf("produce from stdin: %v, stdout %q", err, out)
	}

	consume := exec.CommandContext(ctx, bin, "consume", "piped", "--format", "{{.Key}}={{.Value}}", "--brokers", addr)
	stdout, err := consume.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := consume.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var lines []string
	for len(lines) < 3 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 3 {
		consume.Process.Kill()
		consume.Wait()
		t.Fatalf("consume printed %q before its output ended: %v", lines, sc.Err())
	}
	if err := consume.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() { // drain, so that Wait does not race the pipe
	}
	if err := consume.Wait(); err != nil {
		t.Errorf("consume after SIGINT: %v, want exit status 0", err)
	}
	for _, want := range []string{"a=1", "b=2", "c=3"} {
		if !strings.Contains(strings.Join(lines, "\n"), want) {
			t.Errorf("consume printed %q, lacks %s", lines, want)
		}
	}

	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"topics", "describe", "nosuch", "--brokers", addr}, 1, "runnel topics describe: topic \"nosuch\" does not exist\n"},
		{[]string{"consume", "piped", "--from", "soon", "--brokers", addr}, 2, `invalid value "soon" for flag -from`},
		{[]string{"produce"}, 2, "runnel produce: want one topic"},
	} {
		cmd := exec.CommandContext(ctx, bin, c.args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != c.code || !strings.Contains(stderr.String(), c.stderr) {
			t.Errorf("runnel %s: %v, stderr %q; want exit status %d and %q", strings.Join(c.args, " "), err, stderr.String(), c.code, c.stderr)
		}
	}
}
