// Package latency benchmarks end-to-end latency on the bundled log embedded
// in the test process: records produced to an input topic at a fixed rate go
// through a runnel group that writes its table and emits one record for each,
// and a consumer of the output topic measures, for every record, the time
// from its produce call to its arrival. The package holds tests only;
// BENCHMARKS.md at the repository root records the figures and the command
// that produced them.
package latency
