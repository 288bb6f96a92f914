// Package storage is the bundled log's storage engine: topics of
// partitions, each partition a directory of segment files holding Kafka v2
// record batches byte for byte as producers sent them, with a sparse offset
// index and a time index per segment. It assigns offsets on append, serves
// reads as file ranges that the wire server can copy or sendfile to a
// socket, makes appends durable by group commit (or per append), recovers a
// torn or corrupt tail of any segment after a crash, and deletes
// (retention) or compacts (cleanup.policy=compact) closed segments in the
// background. It knows nothing of the wire protocol or of consumer groups.
//
// Every file operation goes through internal/vfs, whose contract is that
// of a POSIX filesystem after a power cut: data is durable once its file
// is synced, a directory entry once its directory is. The engine is
// written to that contract, and tested against it: powercut_test.go runs
// the log on vfs.MemFS, which keeps only what was synced, and cuts the
// power at many points.
//
// Resources are bounded: segment files are opened when used and closed
// least recently used first past Options.MaxOpenFiles (filecache.go), and
// partition counts are limited per topic and per log. A failed write or
// sync takes its partition offline (ErrStorage) until the log reopens and
// recovers it, never to be retried into a success (Partition.Offline).
//
// Idempotent producers are de-duplicated per partition (producerstate.go),
// and Kafka transactions are kept as the log's part of them (txn.go):
// transactional batches and commit/abort markers, the last stable offset,
// the aborted transactions a read_committed fetch needs (per segment, in
// .txnindex files) and compaction that respects them. Read takes an offset
// limit so that a read_committed fetch can stop at the last stable offset.
package storage
