package processor_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/runnel-io/runnel/processor"
)

// fakeRC is a RawContext that logs the writes it is given.
type fakeRC struct {
	row      []byte
	hasRow   bool
	readErr  error // returned by every read
	writeErr error // returned by every write
	joins    map[string]string
	lookups  map[string]string // "group/key" -> value
	writes   []string
}

var _ processor.RawContext = (*fakeRC)(nil)

var ts = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func (f *fakeRC) Context() context.Context { return context.Background() }
func (f *fakeRC) Topic() string            { return "in" }
func (f *fakeRC) Partition() int32         { return 3 }
func (f *fakeRC) Offset() int64            { return 42 }
func (f *fakeRC) Timestamp() time.Time     { return ts }
func (f *fakeRC) Headers() []processor.Header {
	return []processor.Header{{Key: "trace", Value: []byte("t1")}}
}

func (f *fakeRC) Row() ([]byte, bool, error) { return f.row, f.hasRow, f.readErr }
func (f *fakeRC) SetRow(v []byte) error {
	return f.write(fmt.Sprintf("set %x (nil=%v)", v, v == nil))
}
func (f *fakeRC) DeleteRow() error { return f.write("delete") }
func (f *fakeRC) JoinRow(group string) ([]byte, bool, error) {
	v, ok := f.joins[group]
	return []byte(v), ok, f.readErr
}
func (f *fakeRC) LookupRow(group string, key []byte) ([]byte, bool, error) {
	v, ok := f.lookups[group+"/"+string(key)]
	return []byte(v), ok, f.readErr
}
func (f *fakeRC) Emit(topic string, key, value []byte, hs []processor.Header) error {
	return f.write(fmt.Sprintf("emit %s %s=%x %v", topic, key, value, hs))
}
func (f *fakeRC) Loopback(key, value []byte) error {
	return f.write(fmt.Sprintf("loop %s=%x", key, value))
}
func (f *fakeRC) SetTimestamp(time.Time)                          {}
func (f *fakeRC) StreamTime() time.Time                           { return ts }
func (f *fakeRC) WallClock() time.Time                            { return ts }
func (f *fakeRC) Rows(func(k, v []byte) error) error              { return nil }
func (f *fakeRC) StateGet([]byte) ([]byte, bool, error)           { return nil, false, f.readErr }
func (f *fakeRC) StateScan([]byte, func(k, v []byte) error) error { return f.readErr }
func (f *fakeRC) StateSet(k, v []byte) error                      { return f.write(fmt.Sprintf("state %x=%x", k, v)) }
func (f *fakeRC) StateDelete(k []byte) error                      { return f.write(fmt.Sprintf("state delete %x", k)) }
func (f *fakeRC) SetTimer(t processor.RawTimer) error             { return f.write("timer " + t.Name) }
func (f *fakeRC) DeleteTimer(t processor.RawTimer) error          { return f.write("untimer " + t.Name) }
func (f *fakeRC) Late()                                           {}

func (f *fakeRC) write(op string) error {
	if f.writeErr != nil {
		return f.writeErr
	}
	f.writes = append(f.writes, op)
	return nil
}

// Handles and scope of a group "g" keyed by string with an int64 table.
var (
	out     = processor.NewOutput("out", processor.String, processor.String)
	other   = processor.NewOutput("other", processor.String, processor.String)
	loop    = processor.NewLoop("g-loop", processor.String, processor.Int64)
	users   = processor.NewJoin("users", processor.String)
	regions = processor.NewLookup("regions", processor.String, processor.String)
	scope   = processor.Scope[int64]{
		Group: "g", Table: processor.Int64, Outputs: []string{"out"},
		Joins: []string{"users"}, Lookups: []string{"regions"}, Loop: "g-loop",
	}
)

type handler = processor.Handler[string, int64, string]

// run runs h for a record with key "k" and value "v" against rc.
func run(rc *fakeRC, h handler) error {
	return processor.Adapt(scope, processor.String, processor.String, h)(rc, []byte("k"), []byte("v"))
}

func int64Bytes(n int64) []byte {
	b, _ := processor.Int64.Encode(n)
	return b
}

func TestContextMetadata(t *testing.T) {
	rc := &fakeRC{}
	err := run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		if ctx.Key() != "k" || key != "k" || value != "v" {
			t.Errorf("key %q/%q, value %q", ctx.Key(), key, value)
		}
		if ctx.Topic() != "in" || ctx.Partition() != 3 || ctx.Offset() != 42 || !ctx.Timestamp().Equal(ts) {
			t.Errorf("metadata %s/%d@%d %v", ctx.Topic(), ctx.Partition(), ctx.Offset(), ctx.Timestamp())
		}
		if hs := ctx.Headers(); len(hs) != 1 || hs[0].Key != "trace" {
			t.Errorf("headers %v", hs)
		}
		if ctx.Context() == nil || ctx.Err() != nil {
			t.Errorf("Context() %v, Err() %v", ctx.Context(), ctx.Err())
		}
		return nil
	})
	if err != nil || len(rc.writes) != 0 {
		t.Fatalf("err %v, writes %q", err, rc.writes)
	}
}

func TestWritesAreMadeAfterSuccessInOrder(t *testing.T) {
	rc := &fakeRC{row: int64Bytes(4), hasRow: true}
	err := run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		n, ok := ctx.Value()
		if !ok || n != 4 {
			t.Errorf("Value() = %d, %v; want 4, true", n, ok)
		}
		if err := out.Emit(ctx, "a", "1"); err != nil {
			return err
		}
		if err := ctx.SetValue(n + 1); err != nil {
			return err
		}
		if n, _ := ctx.Value(); n != 5 {
			t.Errorf("Value() after SetValue = %d, want 5", n)
		}
		if err := loop.Emit(ctx, "x", 7); err != nil {
			return err
		}
		if err := out.Emit(ctx, "b", "2", processor.Header{Key: "h", Value: []byte("v")}); err != nil {
			return err
		}
		if len(rc.writes) != 0 {
			t.Errorf("writes made while the handler runs: %q", rc.writes)
		}
		return ctx.SetValue(n + 2)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"set 0000000000000006 (nil=false)", // the row's final state, once
		"emit out a=31 []",
		"loop x=0000000000000007",
		"emit out b=32 [{h [118]}]",
	}
	if !slices.Equal(rc.writes, want) {
		t.Errorf("writes\n got %q\nwant %q", rc.writes, want)
	}
}

func TestDeleteAfterSet(t *testing.T) {
	rc := &fakeRC{}
	err := run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		if _, ok := ctx.Value(); ok {
			t.Error("missing row reads as present")
		}
		ctx.SetValue(1)
		if err := ctx.Delete(); err != nil {
			return err
		}
		if n, ok := ctx.Value(); ok || n != 0 {
			t.Errorf("Value() after Delete = %d, %v", n, ok)
		}
		return nil
	})
	if err != nil || !slices.Equal(rc.writes, []string{"delete"}) {
		t.Fatalf("err %v, writes %q", err, rc.writes)
	}
}

func TestFailedHandlerWritesNothing(t *testing.T) {
	rc := &fakeRC{}
	boom := errors.New("boom")
	err := run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		ctx.SetValue(1)
		out.Emit(ctx, "a", "1")
		loop.Emit(ctx, "a", 1)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	if len(rc.writes) != 0 {
		t.Errorf("a failed record made writes: %q", rc.writes)
	}
	var re *processor.RecordError
	if !errors.As(err, &re) || re.Group != "g" || re.Topic != "in" || re.Partition != 3 || re.Offset != 42 {
		t.Fatalf("err %#v is not a RecordError naming the record", err)
	}
	if want := `processor: group "g": topic "in" partition 3 offset 42: boom`; err.Error() != want {
		t.Errorf("err %q, want %q", err, want)
	}
}

func TestIgnoredErrorStillFailsRecord(t *testing.T) {
	rc := &fakeRC{}
	err := run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		other.Emit(ctx, "a", "1") // not an output of g; error dropped
		ctx.SetValue(1)
		if ctx.Err() == nil {
			t.Error("Err() is nil after a failed emit")
		}
		return nil
	})
	want := `emit to "other": not an output of group "g"`
	if err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("err %v, want one ending %q", err, want)
	}
	if len(rc.writes) != 0 {
		t.Errorf("writes %q", rc.writes)
	}
}

func TestHandlerErrorAndRecordedError(t *testing.T) {
	rc := &fakeRC{}
	err := run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		if err := other.Emit(ctx, "a", "1"); err != nil {
			return fmt.Errorf("wrapped: %w", err)
		}
		return nil
	})
	if err == nil || !strings.HasSuffix(err.Error(), `wrapped: emit to "other": not an output of group "g"`) {
		t.Errorf("a handler error wrapping the recorded one is returned as is: %v", err)
	}
	err = run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		other.Emit(ctx, "a", "1")
		return errors.New("unrelated")
	})
	if err == nil || !strings.HasSuffix(err.Error(), `emit to "other": not an output of group "g" (handler returned: unrelated)`) {
		t.Errorf("both errors are kept: %v", err)
	}
}

func TestHandlesOfOtherGroupsFail(t *testing.T) {
	for name, tc := range map[string]struct {
		use  func(processor.Context[string, int64])
		want string
	}{
		"loop": {
			func(ctx processor.Context[string, int64]) {
				processor.NewLoop("h-loop", processor.String, processor.Int64).Emit(ctx, "a", 1)
			},
			`loopback to "h-loop": not the loop of group "g"`,
		},
		"join": {
			func(ctx processor.Context[string, int64]) { processor.NewJoin("orders", processor.String).Get(ctx) },
			`join of "orders": not joined by group "g"`,
		},
		"lookup": {
			func(ctx processor.Context[string, int64]) {
				processor.NewLookup("orders", processor.String, processor.String).Get(ctx, "a")
			},
			`lookup of "orders": not looked up by group "g"`,
		},
		"zero output": {
			func(ctx processor.Context[string, int64]) { processor.Output[string, string]{}.Emit(ctx, "a", "b") },
			`emit to "": not an output of group "g"`,
		},
		"zero loop": {
			func(ctx processor.Context[string, int64]) { processor.Loop[string, string]{}.Emit(ctx, "a", "b") },
			`loopback to "": not the loop of group "g"`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			err := run(&fakeRC{}, func(ctx processor.Context[string, int64], key, value string) error {
				tc.use(ctx)
				return nil
			})
			if err == nil || !strings.HasSuffix(err.Error(), tc.want) {
				t.Errorf("err %v, want one ending %q", err, tc.want)
			}
		})
	}
}

func TestJoinAndLookup(t *testing.T) {
	rc := &fakeRC{
		joins:   map[string]string{"users": "Alice"},
		lookups: map[string]string{"regions/eu": "Europe"},
	}
	err := run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		if u, ok := users.Get(ctx); !ok || u != "Alice" {
			t.Errorf("join: %q, %v", u, ok)
		}
		if r, ok := regions.Get(ctx, "eu"); !ok || r != "Europe" {
			t.Errorf("lookup eu: %q, %v", r, ok)
		}
		if r, ok := regions.Get(ctx, "us"); ok || r != "" {
			t.Errorf("lookup us: %q, %v", r, ok)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	rc = &fakeRC{joins: map[string]string{}}
	run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		if u, ok := users.Get(ctx); ok || u != "" {
			t.Errorf("missing join row: %q, %v", u, ok)
		}
		return nil
	})
}

func TestDecodeErrors(t *testing.T) {
	h := processor.Adapt(scope, processor.Int64, processor.String,
		func(ctx processor.Context[int64, int64], key int64, value string) error { return nil })
	err := h(&fakeRC{}, []byte("abc"), nil)
	if !errors.Is(err, processor.ErrDecode) || !strings.HasSuffix(err.Error(), "cannot decode key: int64 codec: need 8 bytes, got 3") {
		t.Errorf("bad key: %v", err)
	}
	h = processor.Adapt(scope, processor.String, processor.JSON[click](),
		func(ctx processor.Context[string, int64], key string, value click) error { return nil })
	err = h(&fakeRC{}, []byte("k"), []byte("{"))
	if !errors.Is(err, processor.ErrDecode) || !strings.Contains(err.Error(), "cannot decode value: json(processor_test.click) codec: ") {
		t.Errorf("bad value: %v", err)
	}

	// A row that does not decode fails the record the same way.
	rc := &fakeRC{row: []byte{1}, hasRow: true, joins: map[string]string{"users": "x"}}
	err = run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		if n, ok := ctx.Value(); ok || n != 0 {
			t.Errorf("Value() of a bad row = %d, %v", n, ok)
		}
		return nil
	})
	if !errors.Is(err, processor.ErrDecode) || !strings.HasSuffix(err.Error(), "cannot decode table row: int64 codec: need 8 bytes, got 1") {
		t.Errorf("bad row: %v", err)
	}
	badJoin := processor.NewJoin("users", processor.Int64)
	err = run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		badJoin.Get(ctx)
		return nil
	})
	if !errors.Is(err, processor.ErrDecode) || !strings.HasSuffix(err.Error(), `cannot decode row of joined table "users": int64 codec: need 8 bytes, got 1`) {
		t.Errorf("bad joined row: %v", err)
	}
}

func TestRuntimeErrorsAreWrapped(t *testing.T) {
	storeDown := errors.New("store closed")
	rc := &fakeRC{readErr: storeDown}
	err := run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		n, _ := ctx.Value() // error ignored
		return ctx.SetValue(n + 1)
	})
	if !errors.Is(err, storeDown) || errors.Is(err, processor.ErrDecode) {
		t.Errorf("read error: %v", err)
	}
	if len(rc.writes) != 0 {
		t.Errorf("a record whose read failed made writes: %q", rc.writes)
	}

	produceDown := errors.New("produce failed")
	rc = &fakeRC{writeErr: produceDown}
	err = run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		return out.Emit(ctx, "a", "b")
	})
	if !errors.Is(err, produceDown) || !strings.HasSuffix(err.Error(), `emit to "out": produce failed`) {
		t.Errorf("write error: %v", err)
	}
}

func TestPanicBecomesError(t *testing.T) {
	rc := &fakeRC{}
	err := run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		ctx.SetValue(1)
		panic("nil map")
	})
	if !errors.Is(err, processor.ErrPanic) || !strings.Contains(err.Error(), "handler panicked: nil map") {
		t.Errorf("err %v", err)
	}
	if len(rc.writes) != 0 {
		t.Errorf("writes %q", rc.writes)
	}
}

func TestContextAfterReturn(t *testing.T) {
	var kept processor.Context[string, int64]
	rc := &fakeRC{}
	if err := run(rc, func(ctx processor.Context[string, int64], key, value string) error {
		kept = ctx
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := kept.SetValue(1); err == nil || !strings.Contains(err.Error(), "used after its handler returned") {
		t.Errorf("SetValue after return: %v", err)
	}
	if err := out.Emit(kept, "a", "b"); err == nil {
		t.Error("Emit after return succeeded")
	}
	if len(rc.writes) != 0 {
		t.Errorf("writes %q", rc.writes)
	}
}

func TestStatelessGroup(t *testing.T) {
	s := processor.Scope[processor.NoTable]{Group: "f", Outputs: []string{"out"}}
	h := processor.Adapt(s, processor.String, processor.String,
		func(ctx processor.Context[string, processor.NoTable], key, value string) error {
			if _, ok := ctx.Value(); ok {
				t.Error("Value() found a row in a group without a table")
			}
			return out.Emit(ctx, key, value)
		})
	err := h(&fakeRC{}, []byte("k"), []byte("v"))
	if err == nil || !strings.HasSuffix(err.Error(), "the group has no table") {
		t.Errorf("err %v", err)
	}
}

// nilCodec encodes everything as nil.
type nilCodec struct{}

func (nilCodec) Encode(int64) ([]byte, error) { return nil, nil }
func (nilCodec) Decode([]byte) (int64, error) { return 0, nil }
func (nilCodec) String() string               { return "nil" }

func TestSetNeverWritesATombstone(t *testing.T) {
	s := scope
	s.Table = nilCodec{}
	rc := &fakeRC{}
	err := processor.Adapt(s, processor.String, processor.String, func(ctx processor.Context[string, int64], key, value string) error {
		return ctx.SetValue(1)
	})(rc, []byte("k"), []byte("v"))
	if err != nil || !slices.Equal(rc.writes, []string{"set  (nil=false)"}) {
		t.Errorf("err %v, writes %q", err, rc.writes)
	}
}

func TestPolicy(t *testing.T) {
	var zero processor.Policy
	for _, tc := range []struct {
		p     processor.Policy
		kind  processor.PolicyKind
		topic string
		str   string
	}{
		{zero, processor.PolicyStop, "", "stop"},
		{processor.Stop(), processor.PolicyStop, "", "stop"},
		{processor.Skip(), processor.PolicySkip, "", "skip"},
		{processor.DeadLetter("dlq"), processor.PolicyDeadLetter, "dlq", "dead-letter(dlq)"},
	} {
		if tc.p.Kind() != tc.kind || tc.p.Topic() != tc.topic || tc.p.String() != tc.str {
			t.Errorf("%v: kind %v topic %q", tc.p, tc.p.Kind(), tc.p.Topic())
		}
	}
}

func TestDeadLetterHeaders(t *testing.T) {
	e := &processor.RecordError{Group: "g", Topic: "in", Partition: 3, Offset: 42, Err: errors.New("boom")}
	got := e.DeadLetterHeaders([]processor.Header{
		{Key: "trace", Value: []byte("t1")},
		{Key: "runnel.error", Value: []byte("an older failure")},
	})
	want := []string{"trace=t1", "runnel.error=boom", "runnel.group=g", "runnel.topic=in", "runnel.partition=3", "runnel.offset=42"}
	var gotS []string
	for _, h := range got {
		gotS = append(gotS, h.Key+"="+string(h.Value))
	}
	if !slices.Equal(gotS, want) {
		t.Errorf("headers\n got %q\nwant %q", gotS, want)
	}
}

func TestContextAfterPanic(t *testing.T) {
	var kept processor.Context[string, int64]
	run(&fakeRC{}, func(ctx processor.Context[string, int64], key, value string) error {
		kept = ctx
		panic("boom")
	})
	if err := kept.SetValue(1); err == nil {
		t.Error("SetValue on the context of a handler that panicked succeeded")
	}
}
