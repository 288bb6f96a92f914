// Package kafka is the runtime's whole view of Kafka: producing records to
// chosen partitions, reading a partition between two offsets or tailing it,
// membership of a consumer group with explicit offset commits, and the few
// admin calls the runtime needs (ensure a topic, partition counts, offset
// bounds, committed offsets). The seam is kept small on purpose, as the
// [Producer], [Admin], [Reader] and [Group] interfaces, so that the runtime
// depends on what it uses rather than on a client library: [Client] is
// built on franz-go (kgo, kadm, kmsg), and every blocking call takes the
// caller's context. Produce, offset commits and the admin calls retry
// through a broker outage up to [Config.DeliveryTimeout]; reads and group
// membership resume after one. The one piece of
// group logic that is ours, not the client's, is the co-partitioning balance
// strategy (balance.go): partition p of every topic a group consumes goes to
// the same member, and partitions stay with their owners across rebalances
// where balance allows.
package kafka
