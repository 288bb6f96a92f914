package processor

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// Codec turns values of type T into bytes and back. Keys and values are
// encoded when a handler writes them and decoded when it reads them, and
// nowhere else.
//
// A nil slice stands for a Kafka null (a tombstone, or a record without a
// value); every codec in this package decodes it to T's zero value. Encode
// should be deterministic when T is used as a key: equal keys must give equal
// bytes, because rows and partitions are found by the key's bytes.
//
// A codec may implement fmt.Stringer to name itself in errors and in
// topology descriptions; see [CodecName]. Decode errors should say what the
// codec expected, since they end up in logs and dead-letter headers.
type Codec[T any] interface {
	Encode(value T) ([]byte, error)
	Decode(data []byte) (T, error)
}

// ErrDecode marks errors caused by bytes a codec could not decode: a record's
// key or value, or a table row. Test for it with errors.Is. The runtime
// applies the group's error policy to such records as to handler errors.
var ErrDecode = errors.New("cannot decode")

// CodecName returns a codec's name for messages: its String method if it has
// one, else its Go type.
func CodecName(c any) string {
	if s, ok := c.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", c)
}

// String is the codec for strings: their bytes, unchanged (UTF-8 by
// convention, not checked). Its type holds no state, so String is a
// constant in all but syntax.
var String StringCodec

// StringCodec encodes strings as their bytes. Use the value [String].
type StringCodec struct{}

// Encode implements Codec. It never returns nil, so "" is an empty value,
// not a null.
func (StringCodec) Encode(s string) ([]byte, error) { return append([]byte{}, s...), nil }

// Decode implements Codec.
func (StringCodec) Decode(b []byte) (string, error) { return string(b), nil }

// String returns "string".
func (StringCodec) String() string { return "string" }

// Bytes is the codec for byte slices, passed through. Its type holds no
// state.
var Bytes BytesCodec

// BytesCodec passes byte slices through. Use the value [Bytes].
type BytesCodec struct{}

// Encode implements Codec. It returns b itself, not a copy: b must not be
// changed after it is emitted or set. A nil b encodes a null (a tombstone).
func (BytesCodec) Encode(b []byte) ([]byte, error) { return b, nil }

// Decode implements Codec. It copies b, because the runtime may reuse the
// buffer a record was read into once the handler returns.
func (BytesCodec) Decode(b []byte) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	return append([]byte{}, b...), nil
}

// String returns "bytes".
func (BytesCodec) String() string { return "bytes" }

// Int64 is the codec for int64 values as 8 bytes big-endian, the encoding of
// Kafka's LongSerializer, so that Java and kcat tools read the same numbers.
// Its type holds no state.
var Int64 Int64Codec

// Int64Codec encodes int64 as 8 bytes big-endian. Use the value [Int64].
type Int64Codec struct{}

// Encode implements Codec.
func (Int64Codec) Encode(n int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(n)), nil
}

// Decode implements Codec. A nil slice decodes to 0; any other length but 8
// is an error.
func (Int64Codec) Decode(b []byte) (int64, error) {
	if b == nil {
		return 0, nil
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("int64 codec: need 8 bytes, got %d", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// String returns "int64".
func (Int64Codec) String() string { return "int64" }

// JSON returns the codec for T as JSON, with encoding/json. Map keys are
// sorted when encoding, so a JSON key encodes deterministically.
func JSON[T any]() JSONCodec[T] { return JSONCodec[T]{} }

// JSONCodec encodes T as JSON. Get one with [JSON].
type JSONCodec[T any] struct{}

// Encode implements Codec.
func (c JSONCodec[T]) Encode(v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s codec: %w", c, err)
	}
	return b, nil
}

// Decode implements Codec. A nil slice decodes to T's zero value.
func (c JSONCodec[T]) Decode(b []byte) (T, error) {
	var v T
	if b == nil {
		return v, nil
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("%s codec: %w", c, err)
	}
	return v, nil
}

// String returns "json(T)", T the Go type.
func (JSONCodec[T]) String() string { return "json(" + reflect.TypeFor[T]().String() + ")" }
