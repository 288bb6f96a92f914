package kafka

import (
	"fmt"
	"testing"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMurmur2JavaVectors checks murmur2 against the values of Kafka's own
// test of Utils.murmur2 (as Java ints).
func TestMurmur2JavaVectors(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		if got := int32(murmur2([]byte(key))); got != want {
			t.Errorf("murmur2(%q) = %d, want %d", key, got, want)
		}
	}
}

// TestPartitionForMatchesClients checks PartitionFor against sarama's
// murmur2 partitioner and franz-go's default key partitioner, which place
// keys as the Java client does.
func TestPartitionForMatchesClients(t *testing.T) {
	t.Parallel()
	kp := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	sp := sarama.NewMurmur2Partitioner("t")
	keys := [][]byte{{}, {0}, {0xff, 0xfe, 0xfd}, []byte("user-1"), []byte("a-little-bit-longer-string")}
	for i := range 500 {
		keys = append(keys, fmt.Appendf(nil, "key-%d", i*7919))
	}
	for _, n := range []int32{1, 2, 3, 8, 12, 100, 1 << 20} {
		for _, key := range keys {
			got := PartitionFor(key, n)
			if want := int32(kp.Partition(&kgo.Record{Key: key}, int(n))); got != want {
				t.Fatalf("PartitionFor(%q, %d) = %d, franz-go says %d", key, n, got, want)
			}
			want, err := sp.Partition(&sarama.ProducerMessage{Key: sarama.ByteEncoder(key)}, n)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("PartitionFor(%q, %d) = %d, sarama says %d", key, n, got, want)
			}
		}
	}
}
