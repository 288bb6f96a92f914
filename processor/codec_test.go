package processor_test

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/runnel-io/runnel/processor"
)

type click struct {
	User string            `json:"user"`
	URL  string            `json:"url"`
	Tags map[string]string `json:"tags,omitempty"`
}

// roundTrip encodes and decodes v with c and returns the decoded value.
func roundTrip[T any](t *testing.T, c processor.Codec[T], v T) T {
	t.Helper()
	b, err := c.Encode(v)
	if err != nil {
		t.Fatalf("%s: Encode(%v): %v", processor.CodecName(c), v, err)
	}
	got, err := c.Decode(b)
	if err != nil {
		t.Fatalf("%s: Decode(%x): %v", processor.CodecName(c), b, err)
	}
	return got
}

func TestStringCodec(t *testing.T) {
	for _, s := range []string{"", "alice", "ünïcødé", "a\x00b"} {
		if got := roundTrip(t, processor.String, s); got != s {
			t.Errorf("round trip of %q gave %q", s, got)
		}
	}
	if b, _ := processor.String.Encode(""); b == nil {
		t.Error(`Encode("") is nil, which would be a null, not an empty value`)
	}
}

func TestBytesCodec(t *testing.T) {
	in := []byte{1, 2, 3}
	got := roundTrip(t, processor.Bytes, in)
	if !bytes.Equal(got, in) {
		t.Fatalf("round trip gave %x, want %x", got, in)
	}
	in[0] = 9
	if got[0] != 1 {
		t.Error("Decode did not copy its input: the runtime may reuse the buffer")
	}
	if got := roundTrip(t, processor.Bytes, nil); got != nil {
		t.Errorf("nil round trip gave %x, want nil", got)
	}
}

func TestInt64Codec(t *testing.T) {
	for _, n := range []int64{0, 1, -1, 42, math.MaxInt64, math.MinInt64} {
		if got := roundTrip(t, processor.Int64, n); got != n {
			t.Errorf("round trip of %d gave %d", n, got)
		}
	}
	// Kafka's LongSerializer: 8 bytes, big-endian, two's complement.
	b, _ := processor.Int64.Encode(258)
	if want := []byte{0, 0, 0, 0, 0, 0, 1, 2}; !bytes.Equal(b, want) {
		t.Errorf("Encode(258) = %x, want %x", b, want)
	}
	b, _ = processor.Int64.Encode(-2)
	if want := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}; !bytes.Equal(b, want) {
		t.Errorf("Encode(-2) = %x, want %x", b, want)
	}
	_, err := processor.Int64.Decode([]byte{1, 2, 3})
	if err == nil || err.Error() != "int64 codec: need 8 bytes, got 3" {
		t.Errorf("Decode of 3 bytes: %v", err)
	}
}

func TestJSONCodec(t *testing.T) {
	c := processor.JSON[click]()
	in := click{User: "alice", URL: "/a", Tags: map[string]string{"b": "2", "a": "1"}}
	got := roundTrip(t, c, in)
	if got.User != in.User || got.URL != in.URL || len(got.Tags) != 2 || got.Tags["a"] != "1" {
		t.Errorf("round trip gave %+v, want %+v", got, in)
	}
	// Keys must encode deterministically: map keys are sorted.
	b, _ := c.Encode(in)
	if want := `{"user":"alice","url":"/a","tags":{"a":"1","b":"2"}}`; string(b) != want {
		t.Errorf("Encode = %s, want %s", b, want)
	}
	if c.String() != "json(processor_test.click)" {
		t.Errorf("String() = %q", c.String())
	}
	_, err := c.Decode([]byte("{not json"))
	if err == nil || !strings.HasPrefix(err.Error(), "json(processor_test.click) codec: invalid character") {
		t.Errorf("Decode of bad JSON: %v", err)
	}
	if v, err := c.Decode(nil); err != nil || v.User != "" {
		t.Errorf("Decode(nil) = %+v, %v; want the zero value", v, err)
	}
	_, err = processor.JSON[func()]().Encode(func() {})
	if err == nil || !strings.HasPrefix(err.Error(), "json(func()) codec: ") {
		t.Errorf("Encode of a func: %v", err)
	}
}

func TestProtoCodec(t *testing.T) {
	c := processor.Proto[*wrapperspb.StringValue]()
	got := roundTrip(t, c, wrapperspb.String("hello"))
	if got.GetValue() != "hello" {
		t.Errorf("round trip gave %q", got.GetValue())
	}
	if c.String() != "proto(google.protobuf.StringValue)" {
		t.Errorf("String() = %q", c.String())
	}
	b, err := c.Encode(wrapperspb.String(""))
	if err != nil || b == nil || len(b) != 0 {
		t.Errorf("Encode of an empty message = %x (nil %v), %v; want empty, not nil", b, b == nil, err)
	}
	if got := roundTrip(t, c, &wrapperspb.StringValue{}); got == nil || got.GetValue() != "" {
		t.Errorf("round trip of an empty message gave %v", got)
	}
	_, err = c.Decode([]byte{0xff, 0xff})
	if err == nil || !strings.HasPrefix(err.Error(), "proto(google.protobuf.StringValue) codec: ") {
		t.Errorf("Decode of garbage: %v", err)
	}
	if m, err := c.Decode(nil); err != nil || m != nil {
		t.Errorf("Decode(nil) = %v, %v; want a nil message", m, err)
	}

	sc := processor.Proto[*structpb.Struct]()
	in, err := structpb.NewStruct(map[string]any{"user": "alice", "n": 3.0, "tags": []any{"x", "y"}, "z": true, "a": nil})
	if err != nil {
		t.Fatal(err)
	}
	out := roundTrip(t, sc, in)
	if !proto.Equal(in, out) {
		t.Errorf("round trip gave %v, want %v", out, in)
	}
	// Map fields encode deterministically, so a Struct can be a key.
	b1, _ := sc.Encode(in)
	for range 20 {
		if b2, _ := sc.Encode(out); !bytes.Equal(b1, b2) {
			t.Fatal("two encodings of one Struct differ")
		}
	}
}

type rot13 struct{}

func (rot13) Encode(s string) ([]byte, error) { return []byte(s), nil }
func (rot13) Decode(b []byte) (string, error) { return string(b), nil }

func TestCodecName(t *testing.T) {
	for _, tc := range []struct {
		c    any
		want string
	}{
		{processor.String, "string"},
		{processor.Bytes, "bytes"},
		{processor.Int64, "int64"},
		{processor.JSON[map[string]int](), "json(map[string]int)"},
		{rot13{}, "processor_test.rot13"},
	} {
		if got := processor.CodecName(tc.c); got != tc.want {
			t.Errorf("CodecName(%T) = %q, want %q", tc.c, got, tc.want)
		}
	}
}
