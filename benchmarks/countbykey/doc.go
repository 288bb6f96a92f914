// Package countbykey benchmarks stateful count-by-key, runnel against goka, on
// the bundled log: an input topic of 8 partitions is pre-filled with N records
// over a fixed set of keys, then one instance of each framework counts the
// records per key in a goleveldb-backed group table, and the benchmark reports
// the records processed per second from the processor's start until every
// count is in the table and its changelog. Both frameworks share one broker in
// the test process but use their own input topic, group and changelog, and each
// run is checked for exact counts afterwards, outside the timer. The package
// holds tests only; BENCHMARKS.md at the repository root records the figures
// and the command that produced them.
package countbykey
