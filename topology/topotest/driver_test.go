package topotest_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnel-io/runnel/processor"
	"github.com/runnel-io/runnel/topology"
	"github.com/runnel-io/runnel/topology/topotest"
)

type Click struct{ URL string }

type Alert struct {
	User   string
	Clicks int64
}

var (
	clicks = topology.NewTopic("clicks", processor.String, processor.JSON[Click]())
	alerts = topology.NewTopic("alerts", processor.String, processor.JSON[Alert]())
)

// clickCounter counts clicks per user and alerts on every third.
func clickCounter() (*topology.Group[string, int64], *topology.Topology, error) {
	g := topology.NewGroup("click-counter", processor.String, processor.Int64)
	out := topology.Output(g, alerts)
	topology.Input(g, clicks, func(ctx processor.Context[string, int64], user string, c Click) error {
		n, _ := ctx.Value()
		n++
		if err := ctx.SetValue(n); err != nil {
			return err
		}
		if n%3 == 0 {
			return out.Emit(ctx, user, Alert{User: user, Clicks: n})
		}
		return nil
	})
	topo, err := topology.New(g)
	return g, topo, err
}

func feed[K, V any](t *testing.T, d *topotest.Driver, topic topology.Topic[K, V], key K, value V, opts ...topotest.Option) {
	t.Helper()
	if err := topotest.Feed(d, topic, key, value, opts...); err != nil {
		t.Fatal(err)
	}
}

func TestClickCounter(t *testing.T) {
	g, topo, err := clickCounter()
	if err != nil {
		t.Fatal(err)
	}
	d := topotest.New(t, topo)
	for _, user := range []string{"alice", "bob", "alice", "alice", "alice"} {
		feed(t, d, clicks, user, Click{URL: "/"})
	}
	if n, ok := topotest.Get(d, g, "alice"); !ok || n != 4 {
		t.Errorf("alice: %d, %v; want 4", n, ok)
	}
	if n, ok := topotest.Get(d, g, "bob"); !ok || n != 1 {
		t.Errorf("bob: %d, %v; want 1", n, ok)
	}
	if n, ok := topotest.Get(d, g, "carol"); ok || n != 0 {
		t.Errorf("carol: %d, %v; want a missing row", n, ok)
	}
	got := topotest.Emitted(d, alerts)
	if len(got) != 1 || got[0].Key != "alice" || got[0].Value != (Alert{User: "alice", Clicks: 3}) || got[0].Group != "click-counter" {
		t.Errorf("alerts %+v", got)
	}
	// Every table write went to the changelog, keyed by the input's key.
	var log []string
	for _, r := range d.Records("click-counter-table") {
		n, _ := processor.Int64.Decode(r.Value)
		log = append(log, fmt.Sprintf("%s=%d", r.Key, n))
	}
	if want := []string{"alice=1", "bob=1", "alice=2", "alice=3", "alice=4"}; !slices.Equal(log, want) {
		t.Errorf("changelog %q, want %q", log, want)
	}
	if fed := d.Records("clicks"); len(fed) != 5 || fed[4].Offset != 4 || fed[4].Group != "" {
		t.Errorf("fed records %+v", fed)
	}
}

func TestTimestampsAndHeaders(t *testing.T) {
	g := topology.NewStatelessGroup("echo", processor.String)
	out := topology.Output(g, alerts)
	var seen []string
	topology.Input(g, clicks, func(ctx processor.Context[string, processor.NoTable], user string, c Click) error {
		seen = append(seen, fmt.Sprintf("%s %s/%d@%d %v", ctx.Timestamp().Format(time.RFC3339), ctx.Topic(), ctx.Partition(), ctx.Offset(), ctx.Headers()))
		if ctx.Context().Err() != nil {
			t.Error("the handler's context is done")
		}
		return out.Emit(ctx, user, Alert{User: user}, processor.Header{Key: "from", Value: []byte("echo")})
	})
	d := topotest.New(t, must(topology.New(g)))
	at := time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)
	feed(t, d, clicks, "alice", Click{}, topotest.At(at), topotest.WithHeaders(processor.Header{Key: "h", Value: []byte("1")}))
	feed(t, d, clicks, "bob", Click{})
	want := []string{"2024-02-03T04:05:06Z clicks/0@0 [{h [49]}]", "2000-01-01T00:00:00Z clicks/0@1 []"}
	if !slices.Equal(seen, want) {
		t.Errorf("handler saw\n%q\nwant\n%q", seen, want)
	}
	got := topotest.Emitted(d, alerts)
	if len(got) != 2 || !got[0].Timestamp.Equal(at) || !got[1].Timestamp.Equal(topotest.DefaultTime()) ||
		len(got[0].Headers) != 1 || got[0].Headers[0].Key != "from" {
		t.Errorf("emitted %+v", got)
	}
}

type User struct{ Name, Region string }
type Order struct {
	Item   string
	Amount int64
}
type Enriched struct {
	Order
	Name, Region string
}

var (
	userUpdates = topology.NewTopic("user-updates", processor.String, processor.JSON[User]())
	orders      = topology.NewTopic("orders", processor.String, processor.JSON[Order]())
	enriched    = topology.NewTopic("enriched-orders", processor.String, processor.JSON[Enriched]())
)

// usersGroup keeps the latest User of each user id; an empty name deletes.
func usersGroup() *topology.Group[string, User] {
	users := topology.NewGroup("users", processor.String, processor.JSON[User]())
	topology.Input(users, userUpdates, func(ctx processor.Context[string, User], id string, u User) error {
		if u.Name == "" {
			return ctx.Delete()
		}
		return ctx.SetValue(u)
	})
	return users
}

func TestJoinAndLookup(t *testing.T) {
	users := usersGroup()
	// regions runs in another program: its table is filled by the test.
	regions := topology.NewGroup("regions", processor.String, processor.String)

	g := topology.NewStatelessGroup("enricher", processor.String)
	userTable := topology.Join(g, users)
	regionNames := topology.Lookup(g, regions)
	out := topology.Output(g, enriched)
	topology.Input(g, orders, func(ctx processor.Context[string, processor.NoTable], id string, o Order) error {
		u, ok := userTable.Get(ctx)
		if !ok {
			return errors.New("unknown user")
		}
		region, _ := regionNames.Get(ctx, u.Region)
		return out.Emit(ctx, id, Enriched{Order: o, Name: u.Name, Region: region})
	})
	g.OnError(processor.Skip())

	d := topotest.New(t, must(topology.New(users, g)))
	topotest.Set(d, regions, "eu", "Europe")
	feed(t, d, userUpdates, "u1", User{Name: "Alice", Region: "eu"})
	feed(t, d, orders, "u1", Order{Item: "book", Amount: 12})
	feed(t, d, orders, "u2", Order{Item: "pen", Amount: 1}) // no such user: skipped
	feed(t, d, userUpdates, "u1", User{})                   // deletes u1
	feed(t, d, orders, "u1", Order{Item: "lamp", Amount: 30})

	got := topotest.Emitted(d, enriched)
	want := Enriched{Order: Order{Item: "book", Amount: 12}, Name: "Alice", Region: "Europe"}
	if len(got) != 1 || got[0].Key != "u1" || got[0].Value != want {
		t.Errorf("enriched %+v, want one %+v", got, want)
	}
	if n := d.Skipped("enricher"); n != 2 {
		t.Errorf("skipped %d, want 2", n)
	}
	if _, ok := topotest.Get(d, users, "u1"); ok {
		t.Error("u1 still in the users table after its delete")
	}
	log := d.Records("users-table")
	if len(log) != 2 || log[1].Value != nil {
		t.Errorf("the delete did not write a tombstone to the changelog: %+v", log)
	}
}

func TestLoopback(t *testing.T) {
	type Transfer struct {
		To     string
		Amount int64
	}
	transfers := topology.NewTopic("transfers", processor.String, processor.JSON[Transfer]())
	accounts := topology.NewGroup("accounts", processor.String, processor.Int64)
	credit := topology.Loop(accounts, processor.Int64, func(ctx processor.Context[string, int64], account string, amount int64) error {
		balance, _ := ctx.Value()
		return ctx.SetValue(balance + amount)
	})
	topology.Input(accounts, transfers, func(ctx processor.Context[string, int64], from string, tr Transfer) error {
		balance, _ := ctx.Value()
		if balance < tr.Amount {
			return fmt.Errorf("balance %d is below %d", balance, tr.Amount)
		}
		if err := ctx.SetValue(balance - tr.Amount); err != nil {
			return err
		}
		// The credit is keyed by another account: it goes through the loop
		// to the instance that owns that account's row.
		return credit.Emit(ctx, tr.To, tr.Amount)
	})

	d := topotest.New(t, must(topology.New(accounts)))
	topotest.Set(d, accounts, "alice", 100)
	feed(t, d, transfers, "alice", Transfer{To: "bob", Amount: 30})
	feed(t, d, transfers, "bob", Transfer{To: "carol", Amount: 10})
	for account, want := range map[string]int64{"alice": 70, "bob": 20, "carol": 10} {
		if got, _ := topotest.Get(d, accounts, account); got != want {
			t.Errorf("%s: %d, want %d", account, got, want)
		}
	}
	if n := len(d.Records("accounts-loop")); n != 2 {
		t.Errorf("%d records on the loop topic, want 2", n)
	}

	// The default policy stops: the error names the record, and nothing of
	// it is written.
	err := topotest.Feed(d, transfers, "carol", Transfer{To: "alice", Amount: 50})
	want := `processor: group "accounts": topic "transfers" partition 0 offset 2: balance 10 is below 50`
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}
	var re *processor.RecordError
	if !errors.As(err, &re) || re.Topic != "transfers" || re.Partition != 0 || re.Offset != 2 {
		t.Errorf("error %#v", err)
	}
	// A stopped driver stays stopped, as the instance would.
	err = topotest.Feed(d, transfers, "alice", Transfer{To: "bob", Amount: 1})
	if err == nil || !strings.HasPrefix(err.Error(), "topotest: driver stopped by an earlier failure: "+want) {
		t.Errorf("feed after stop: %v", err)
	}
	if got, _ := topotest.Get(d, accounts, "alice"); got != 70 {
		t.Errorf("alice: %d after the failed transfers, want 70", got)
	}
}

func TestCascadeBetweenGroups(t *testing.T) {
	counter := topology.NewGroup("click-counter", processor.String, processor.Int64)
	out := topology.Output(counter, alerts)
	topology.Input(counter, clicks, func(ctx processor.Context[string, int64], user string, c Click) error {
		return out.Emit(ctx, user, Alert{User: user, Clicks: 1})
	})
	pages := topology.NewTopic("pages", processor.String, processor.String)
	pager := topology.NewStatelessGroup("pager", processor.String)
	page := topology.Output(pager, pages)
	topology.Input(pager, alerts, func(ctx processor.Context[string, processor.NoTable], user string, a Alert) error {
		return page.Emit(ctx, "oncall", "page about "+a.User)
	})
	d := topotest.New(t, must(topology.New(counter, pager)))
	feed(t, d, clicks, "alice", Click{})
	got := topotest.Emitted(d, pages)
	if len(got) != 1 || got[0].Value != "page about alice" || got[0].Group != "pager" {
		t.Errorf("pages %+v", got)
	}
}

// failing returns a topology whose group g fails on clicks of "/bad" and
// counts the others, with the policy p.
func failing(p processor.Policy) (*topology.Group[string, int64], *topology.Topology) {
	g := topology.NewGroup("g", processor.String, processor.Int64)
	out := topology.Output(g, alerts)
	topology.Input(g, clicks, func(ctx processor.Context[string, int64], user string, c Click) error {
		n, _ := ctx.Value()
		ctx.SetValue(n + 1)
		out.Emit(ctx, user, Alert{User: user})
		if c.URL == "/bad" {
			return errors.New("bad click")
		}
		return nil
	})
	g.OnError(p)
	return g, must(topology.New(g))
}

func TestPolicyStop(t *testing.T) {
	g, topo := failing(processor.Stop())
	d := topotest.New(t, topo)
	feed(t, d, clicks, "alice", Click{URL: "/"})
	err := topotest.Feed(d, clicks, "alice", Click{URL: "/bad"})
	if want := `processor: group "g": topic "clicks" partition 0 offset 1: bad click`; err == nil || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}
	if n, _ := topotest.Get(d, g, "alice"); n != 1 {
		t.Errorf("count %d, want 1: the failed record's write was made", n)
	}
	if n := len(topotest.Emitted(d, alerts)); n != 1 {
		t.Errorf("%d alerts, want 1: the failed record's emit was made", n)
	}
}

func TestPolicySkip(t *testing.T) {
	g, topo := failing(processor.Skip())
	d := topotest.New(t, topo)
	feed(t, d, clicks, "alice", Click{URL: "/"})
	feed(t, d, clicks, "alice", Click{URL: "/bad"})
	// A record that cannot be decoded goes by the policy too.
	if err := d.FeedRaw("clicks", []byte("alice"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	feed(t, d, clicks, "alice", Click{URL: "/"})
	if n := d.Skipped("g"); n != 2 {
		t.Errorf("skipped %d, want 2", n)
	}
	if n, _ := topotest.Get(d, g, "alice"); n != 2 {
		t.Errorf("count %d, want 2", n)
	}
	if n := len(topotest.Emitted(d, alerts)); n != 2 {
		t.Errorf("%d alerts, want 2", n)
	}
}

func TestPolicyDeadLetter(t *testing.T) {
	g, topo := failing(processor.DeadLetter("clicks-dlq"))
	d := topotest.New(t, topo)
	feed(t, d, clicks, "alice", Click{URL: "/"})
	feed(t, d, clicks, "bob", Click{URL: "/bad"}, topotest.WithHeaders(processor.Header{Key: "trace", Value: []byte("t-9")}))
	if err := d.FeedRaw("clicks", []byte("carol"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if n, _ := topotest.Get(d, g, "bob"); n != 0 {
		t.Errorf("bob's count %d, want 0", n)
	}
	dead := d.Records("clicks-dlq")
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dead))
	}
	fed := d.Records("clicks")
	for i, want := range []struct {
		offset  int
		headers string
	}{
		{1, `trace=t-9 runnel.error=bad click runnel.group=g runnel.topic=clicks runnel.partition=0 runnel.offset=1`},
		{2, `runnel.error=cannot decode value: json(topotest_test.Click) codec: invalid character 'n' looking for beginning of object key string runnel.group=g runnel.topic=clicks runnel.partition=0 runnel.offset=2`},
	} {
		r := dead[i]
		if string(r.Key) != string(fed[want.offset].Key) || string(r.Value) != string(fed[want.offset].Value) || r.Group != "g" {
			t.Errorf("dead letter %d: %q=%q from %q, want the original record", i, r.Key, r.Value, r.Group)
		}
		var hs []string
		for _, h := range r.Headers {
			hs = append(hs, h.Key+"="+string(h.Value))
		}
		if got := strings.Join(hs, " "); got != want.headers {
			t.Errorf("dead letter %d headers\n got %s\nwant %s", i, got, want.headers)
		}
	}
}

func TestFeedErrors(t *testing.T) {
	_, topo, err := clickCounter()
	if err != nil {
		t.Fatal(err)
	}
	d := topotest.New(t, topo)
	err = topotest.Feed(d, alerts, "alice", Alert{})
	if err == nil || err.Error() != `topotest: topic "alerts" is not an input of any group` {
		t.Errorf("feed of an output: %v", err)
	}
}

func TestEndlessLoop(t *testing.T) {
	g := topology.NewStatelessGroup("spin", processor.String)
	var again processor.Loop[string, int64]
	again = topology.Loop(g, processor.Int64, func(ctx processor.Context[string, processor.NoTable], key string, n int64) error {
		return again.Emit(ctx, key, n+1)
	})
	topology.Input(g, clicks, func(ctx processor.Context[string, processor.NoTable], key string, c Click) error {
		return again.Emit(ctx, key, 0)
	})
	d := topotest.New(t, must(topology.New(g)))
	err := topotest.Feed(d, clicks, "alice", Click{})
	if err == nil || !strings.Contains(err.Error(), "does a loop never end?") {
		t.Errorf("error %v", err)
	}
}

func must(topo *topology.Topology, err error) *topology.Topology {
	if err != nil {
		panic(err)
	}
	return topo
}
