package topology

import (
	"fmt"

	"github.com/runnel-io/runnel/processor"
)

// Topic is a topic with the codecs of its keys and values. It is a plain
// value, declared once and used in any number of edges.
type Topic[K, V any] struct {
	name    string
	keys    processor.Codec[K]
	values  processor.Codec[V]
	extract processor.TimestampExtractor[K, V] // nil: the record's timestamp
}

// NewTopic returns the topic name whose keys and values use the given
// codecs. Problems (an invalid name, a nil codec) are reported by [New].
func NewTopic[K, V any](name string, keys processor.Codec[K], values processor.Codec[V]) Topic[K, V] {
	return Topic[K, V]{name: name, keys: keys, values: values}
}

// Name returns the topic's name.
func (t Topic[K, V]) Name() string { return t.name }

// Keys returns the codec of the topic's keys.
func (t Topic[K, V]) Keys() processor.Codec[K] { return t.keys }

// Values returns the codec of the topic's values.
func (t Topic[K, V]) Values() processor.Codec[V] { return t.values }

// decl returns the topic without its types.
func (t Topic[K, V]) decl() topicDecl {
	d := topicDecl{name: t.name}
	if t.keys != nil {
		d.keys = t.keys
	}
	if t.values != nil {
		d.values = t.values
	}
	return d
}

// topicDecl is a topic without its types. A nil codec is a nil any, not an
// any holding a nil Codec, so that it can be tested.
type topicDecl struct {
	name         string
	keys, values any
}

// TableTopic returns the changelog topic of group's table, "<group>-table".
// It is compacted and has as many partitions as the group's inputs.
func TableTopic(group string) string { return group + "-table" }

// LoopTopic returns the loop topic of group, "<group>-loop". It has as many
// partitions as the group's inputs.
func LoopTopic(group string) string { return group + "-loop" }

// maxTopicName is Kafka's limit on the length of a topic name.
const maxTopicName = 249

// checkTopicName reports whether name is valid as a Kafka topic name:
// 1 to 249 characters among ASCII letters, digits, '.', '_' and '-', and
// neither "." nor "..".
func checkTopicName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty name")
	case len(name) > maxTopicName:
		return fmt.Errorf("name %q is longer than %d characters", name, maxTopicName)
	case name == "." || name == "..":
		return fmt.Errorf("name %q is reserved", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("name %q has %q; only ASCII letters, digits, '.', '_' and '-' are allowed", name, c)
		}
	}
	return nil
}
