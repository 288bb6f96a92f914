// Package group is the bundled broker's group coordinator for Kafka's classic group protocol,
// and the keeper of committed offsets. The wire server decodes JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup, DescribeGroups, ListGroups, DeleteGroups, OffsetCommit, OffsetFetch, OffsetDelete
// and TxnOffsetCommit requests with kmsg and hands them to a [Coordinator], which answers them
// as an Apache Kafka broker would: it runs each group's state machine (Empty, PreparingRebalance,
// CompletingRebalance, Stable, Dead), with session and rebalance timeouts, the initial rebalance
// delay, KIP-394 member ids and KIP-345 static membership. Committed offsets and group metadata
// are written through a [Store] to the compacted topic __consumer_offsets, in Kafka's own record
// layouts, before a request that changed them is answered, and [Coordinator.Load] rebuilds the
// coordinator from that topic when the broker starts, so commits survive restarts.
//
// TxnOffsetCommit writes the offsets of a transaction as a transactional batch of its producer
// and keeps them pending, invisible to OffsetFetch, until the broker reports the transaction's
// marker through [Coordinator.CompleteTxn]; replay does the same through [Coordinator.LoadTxn]
// and [Coordinator.LoadMarker].
package group
