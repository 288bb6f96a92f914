// Package runtime runs topologies: it connects to the log (starting the
// embedded one when no brokers are given), makes sure the topology's topics
// exist with the right partition counts and cleanup policies, joins one
// consumer group per processor group with a co-partitioning assignment,
// restores each assigned table partition from its changelog (from the
// store's checkpoint on), runs records through the handlers one partition at
// a time, writes table changes to the local store and the changelog, and
// commits an input offset only once every write the record caused is
// acknowledged (at-least-once). Emitter and View are the typed ways in and
// out of a running topology. Options.Metrics gives the runtime's Prometheus
// metrics to a registry (metrics.go lists them), and Options.HTTPAddr
// serves them with a monitor page: the topology as a graph, the partitions
// this instance owns with their offsets, lag and state, and a table query
// box (monitor.go lists its endpoints).
package runtime
