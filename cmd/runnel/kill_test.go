package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// killBinary builds the runnel binary once per test run.
func killBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "runnel")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

var listenRE = regexp.MustCompile(`listening.*addr=(\S+)`)

// killServe starts `runnel serve` on a free port and returns the process and
// the address it logged.
func killServe(t *testing.T, bin, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--data", dir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil && !sent {
				addr <- m[1]
				sent = true
			}
		}
		if !sent {
			close(addr)
		}
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("runnel serve exited without logging its address")
		}
		return cmd, a
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("runnel serve did not log its address within 30s")
	}
	return nil, ""
}

type acked struct {
	partition int32
	offset    int64
	value     string
}

// TestServeSurvivesKill9 kills `runnel serve` with SIGKILL while producers
// wait for acks=-1 and a group commits offsets, many times over. After each
// restart on the same data every acknowledged record is at its offset and
// the last acknowledged commit is what the group reads back.
func TestServeSurvivesKill9(t *testing.T) {
	rounds := 10
	if testing.Short() {
		rounds = 3
	}
	bin := killBinary(t)
	dir := t.TempDir()
	const topic, group = "kill-topic", "kill-group"
	var all []acked
	lastCommit := map[int32]int64{}
	rng := rand.New(rand.NewPCG(9, 9))
	for round := range rounds {
		cmd, addr := killServe(t, bin, dir)
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation(),
			kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
		if err != nil {
			t.Fatal(err)
		}
		adm := kadm.NewClient(cl)
		if round == 0 {
			if _, err := adm.CreateTopic(context.Background(), 3, 1, nil, topic); err != nil {
				t.Fatal(err)
			}
		}
		// Check what the previous round acknowledged before adding more.
		killVerify(t, cl, adm, topic, group, all, lastCommit, round)

		ctx, cancel := context.WithCancel(context.Background())
		// Kill after a random number of acknowledged records, so the kill
		// lands with produces and commits in flight.
		target := len(all) + 50 + rng.IntN(500)
		reached := make(chan struct{})
		var once sync.Once
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					v := fmt.Sprintf("round-%d-writer-%d-%d", round, w, i)
					r := &kgo.Record{Value: []byte(v), Partition: int32(i % 3)}
					res := cl.ProduceSync(ctx, r)
					if res.FirstErr() == nil {
						mu.Lock()
						all = append(all, acked{r.Partition, r.Offset, v})
						if len(all) >= target {
							once.Do(func() { close(reached) })
						}
						mu.Unlock()
					}
				}
			})
		}
		wg.Go(func() {
			for i := int64(1); ctx.Err() == nil; i++ {
				offs := kadm.Offsets{}
				for p := range int32(3) {
					offs.Add(kadm.Offset{Topic: topic, Partition: p, At: int64(round)*1_000_000 + i, LeaderEpoch: -1})
				}
				resp, err := adm.CommitOffsets(ctx, group, offs)
				if err == nil && resp.Ok() {
					mu.Lock()
					for p := range int32(3) {
						lastCommit[p] = int64(round)*1_000_000 + i
					}
					mu.Unlock()
				}
			}
		})
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-reached:
		case err := <-exited:
			t.Fatalf("round %d: runnel serve exited by itself: %v", round, err)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		cancel()
		// Close before waiting: an idempotent produce in flight at the kill
		// cannot be failed by its context while the broker is down (its
		// outcome is unknown), so ProduceSync would wait forever; Close
		// fails it.
		cl.Close()
		wg.Wait()
	}
	cmd, addr := killServe(t, bin, dir)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	killVerify(t, cl, kadm.NewClient(cl), topic, group, all, lastCommit, rounds)
	t.Logf("%d kills, %d acknowledged records and every acknowledged commit verified", rounds, len(all))
}

func killVerify(t *testing.T, cl *kgo.Client, adm *kadm.Client, topic, group string, all []acked, lastCommit map[int32]int64, round int) {
	t.Helper()
	if len(all) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32]map[int64]string{}
	for p := range int32(3) {
		got[p] = map[int64]string{}
		end, _ := ends.Lookup(topic, p)
		c, err := kgo.NewClient(kgo.SeedBrokers(cl.OptValue(kgo.SeedBrokers).([]string)...),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().AtStart()}}))
		if err != nil {
			t.Fatal(err)
		}
		for n := int64(0); n < end.Offset; {
			fs := c.PollFetches(ctx)
			if err := fs.Err(); err != nil {
				c.Close()
				t.Fatalf("round %d: consume partition %d: %v", round, p, err)
			}
			fs.EachRecord(func(r *kgo.Record) { got[p][r.Offset] = string(r.Value); n = r.Offset + 1 })
		}
		c.Close()
	}
	for _, a := range all {
		if got[a.partition][a.offset] != a.value {
			t.Fatalf("round %d: acknowledged record %q at partition %d offset %d reads back as %q", round, a.value, a.partition, a.offset, got[a.partition][a.offset])
		}
	}
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range lastCommit {
		o, _ := offs.Lookup(topic, p)
		// A commit in flight at the kill may have landed without its answer
		// arriving, so the stored offset may be one commit ahead.
		if o.At != want && o.At != want+1 {
			t.Fatalf("round %d: group %s partition %d committed offset %d, last acknowledged commit was %d", round, group, p, o.At, want)
		}
	}
}
