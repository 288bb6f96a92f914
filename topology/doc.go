// Package topology declares what runs: topics with their codecs, and groups
// of handlers with their edges (inputs, the group table, joins, lookups,
// outputs, a loop) and error policy. Declarations are typed: a handler gets
// keys and values of its topic's types, and the handles it emits and reads
// through are typed by their topic or table. [New] validates a declaration
// as a whole, naming the culprit of every problem, and turns it into a
// [Topology]: the byte-level description ([GroupSpec]) a runtime runs,
// [Topology.Validate] for the checks that need the topics' partition counts,
// and [Topology.Describe] and [Topology.DOT] for people. Package topotest
// runs a Topology in memory for unit tests.
package topology
