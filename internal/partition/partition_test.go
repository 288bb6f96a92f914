package partition

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMurmur2JavaVectors checks murmur2 against the values of Kafka's own
// test of Utils.murmur2 (as Java ints).
func TestMurmur2JavaVectors(t *testing.T) {
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

// TestForMatchesClients checks For against franz-go's default key
// partitioner and sarama's murmur2 partitioner, which place keys as the
// Java client does, on many keys of every length up to 64 and every tail
// length: what the runtime and topotest must both do.
func TestForMatchesClients(t *testing.T) {
	kp := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	sp := sarama.NewMurmur2Partitioner("t")
	keys := [][]byte{nil, {}, {0}, {0xff, 0xfe, 0xfd}, []byte("user-1")}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		keys = append(keys, fmt.Appendf(nil, "key-%d", i))
		k := make([]byte, rng.IntN(65))
		for j := range k {
			k[j] = byte(rng.Uint32())
		}
		keys = append(keys, k)
	}
	for _, n := range []int32{1, 2, 3, 8, 12, 100, 1 << 20} {
		for _, key := range keys {
			if key == nil {
				continue // both clients spread nil keys at random
			}
			got := For(key, n)
			if want := int32(kp.Partition(&kgo.Record{Key: key}, int(n))); got != want {
				t.Fatalf("For(%x, %d) = %d, franz-go says %d", key, n, got, want)
			}
			want, err := sp.Partition(&sarama.ProducerMessage{Key: sarama.ByteEncoder(key)}, n)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("For(%x, %d) = %d, sarama says %d", key, n, got, want)
			}
		}
	}
	if For(nil, 100) != For([]byte{}, 100) {
		t.Errorf("a nil key is not placed like an empty one")
	}
}
