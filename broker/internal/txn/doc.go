// Package txn is the bundled broker's transaction coordinator. The wire server decodes
// InitProducerId (with a transactional id), AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
// DescribeTransactions and ListTransactions with kmsg and hands them to a [Coordinator], which
// answers them as an Apache Kafka broker would. Each transactional id runs Kafka's state machine
// (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort), with producer
// epochs that fence older instances, KIP-360 recovery, producer id rotation when epochs run out,
// transaction timeouts, and KIP-890 part 2 (EndTxn v5 bumps the epoch of every transaction;
// Produce v12 adds partitions implicitly, through [Coordinator.CheckProduce]).
//
// Every state change is written through a [Store] to the compacted topic __transaction_state,
// in Kafka's own record layout, before the request that made it is answered. Commit and abort
// markers are written through [Markers] once the decision (PrepareCommit or PrepareAbort) is
// durable, and retried until they are. [Coordinator.Load] replays the topic when the broker
// starts and [Coordinator.Recover] then finishes every transaction that was past its decision
// and aborts every one that was not, so a crash at any instant loses no acknowledged commit and
// exposes no partial transaction.
package txn
