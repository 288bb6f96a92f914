// Package runtime runs topologies: it connects to the log (starting the
// embedded one when no brokers are given), makes sure the topology's topics
// exist with the right partition counts and cleanup policies, joins one
// consumer group per processor group with a co-partitioning assignment,
// restores each assigned table partition from its changelog (from the
// store's checkpoint on), runs records through the handlers one partition at
// a time, writes table changes to the local store and the changelog, and
// commits an input offset only once every write the record caused is
// acknowledged (at-least-once). Emitter and View are the typed ways in and
// out of a running topology.
package runtime
