package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/runnel-io/runnel/broker"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files with the output the tests get")

// cliTimeout bounds each test's wait for a condition.
const cliTimeout = 60 * time.Second

// startBroker starts a broker in-process on a free port, with topics
// auto-created by nothing but the tests, and returns its address.
func startBroker(t *testing.T) string {
	t.Helper()
	b, err := broker.Start(t.Context(), broker.Config{
		Addr: "127.0.0.1:0", Dir: t.TempDir(), DisableAutoCreate: true,
		GroupInitialRebalanceDelay: -1,
	})
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return b.Addr()
}

// result is what one run of the CLI did.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the CLI in-process with args.
func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	return runCLIContext(t.Context(), t, args...)
}

func runCLIContext(ctx context.Context, t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// mustRun runs the CLI and fails the test unless it exits 0; it returns
// stdout.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := runCLI(t, args...)
	if r.code != 0 {
		t.Fatalf("runnel %s: exit status %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// wantFailure runs the CLI and checks its exit status and that stderr
// holds want.
func wantFailure(t *testing.T, code int, want string, args ...string) result {
	t.Helper()
	r := runCLI(t, args...)
	if r.code != code {
		t.Errorf("runnel %s: exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("runnel %s: stderr lacks %q:\n%s", strings.Join(args, " "), want, r.stderr)
	}
	return r
}

// checkGolden compares got with testdata/name.golden, or rewrites the file
// under -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update if the change is right)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// newClient returns a franz-go client of addr for setting up and checking
// what the CLI does.
func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// createTopic creates a topic with the given partitions and configs.
func createTopic(t *testing.T, addr, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	adm := kadm.NewClient(newClient(t, addr))
	if _, err := adm.CreateTopic(t.Context(), partitions, 1, configs, topic); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// produceTo produces records, each to the partition it names, and waits for
// their acknowledgements.
func produceTo(t *testing.T, addr string, recs ...*kgo.Record) {
	t.Helper()
	cl := newClient(t, addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// syncBuffer is an output a command writes from its goroutine while the
// test reads it, waiting for what it expects.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// await waits until cond holds of what was written, or fails the test
// after cliTimeout.
func (s *syncBuffer) await(t *testing.T, what string, cond func(string) bool) {
	t.Helper()
	deadline := time.NewTimer(cliTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		got, changed := s.b.String(), s.changed
		s.mu.Unlock()
		if cond(got) {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("waited %v for %s; output so far:\n%s", cliTimeout, what, got)
		}
	}
}
