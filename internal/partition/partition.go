// Package partition places keys in partitions as Kafka's default
// partitioner does: toPositive(murmur2(key)) % n, like the Java client,
// franz-go's default and librdkafka's murmur2_random. It imports nothing,
// so that every part of runnel that decides where a key lives (the runtime
// on a real log, topotest in memory) can share it, and a key lands where
// any of those producers would put it.
package partition

// For returns the partition of n that Kafka's default partitioner gives
// key. Kafka's partitioners spread records with a nil key at random; For
// hashes a nil key like an empty one, so its caller decides what a nil key
// means. n must be positive.
func For(key []byte, n int32) int32 {
	// toPositive clears the sign bit rather than taking an absolute value, so
	// that math.MinInt32 maps to 0 as it does in Java.
	return int32(murmur2(key)&0x7fffffff) % n
}

// murmur2 is Kafka's variant of MurmurHash2 (org.apache.kafka.common.utils
// .Utils.murmur2): 32 bits, seed 0x9747b28c, little-endian words.
func murmur2(data []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	n := len(data)
	h := uint32(seed) ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n&^3:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
