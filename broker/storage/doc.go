// Package storage is the bundled log's storage engine: topics of
// partitions, each partition a directory of segment files holding Kafka v2
// record batches byte for byte as producers sent them, with a sparse offset
// index and a time index per segment. It assigns offsets on append, serves
// reads as file ranges that the wire server can copy or sendfile to a
// socket, makes appends durable by group commit (or per append), recovers a
// torn or corrupt tail after a crash, and deletes (retention) or compacts
// (cleanup.policy=compact) closed segments in the background. It knows
// nothing of the wire protocol or of consumer groups.
//
// Room is left for idempotent producers and transactions: BatchHeader
// carries the producer id, epoch, base sequence and the transactional and
// control bits, and Read takes an offset limit so that a read_committed
// fetch can stop at the last stable offset.
package storage
