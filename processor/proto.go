package processor

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Proto returns the codec for the protobuf message type T, a generated
// message pointer such as *wrapperspb.StringValue. Messages are encoded
// deterministically (map entries sorted), so a message can serve as a key.
func Proto[T proto.Message]() ProtoCodec[T] { return ProtoCodec[T]{} }

// ProtoCodec encodes protobuf messages of type T in the binary wire format.
// Get one with [Proto].
type ProtoCodec[T proto.Message] struct{}

// Encode implements Codec. It never returns nil: an empty message (or a nil
// one) encodes to an empty value, not a null.
func (c ProtoCodec[T]) Encode(m T) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%s codec: %w", c, err)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// Decode implements Codec. A nil slice decodes to T's zero value, a nil
// message pointer, which the generated getters read as an empty message.
func (c ProtoCodec[T]) Decode(b []byte) (T, error) {
	var zero T
	if b == nil {
		return zero, nil
	}
	// A typed nil message still reflects its type, which can make a new one.
	m, ok := zero.ProtoReflect().New().Interface().(T)
	if !ok {
		return zero, fmt.Errorf("%s codec: cannot create a %T", c, zero)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return zero, fmt.Errorf("%s codec: %w", c, err)
	}
	return m, nil
}

// String returns "proto(full.message.Name)".
func (ProtoCodec[T]) String() string {
	var zero T
	return "proto(" + string(zero.ProtoReflect().Descriptor().FullName()) + ")"
}
