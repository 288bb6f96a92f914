// Package topotest runs a topology in memory, with no broker, for unit tests
// of handlers. A [Driver] feeds records to the groups that consume their
// topic and runs the same adapters, Context, error policies, timers,
// punctuations and stream time as the runtime (one processing core serves
// both), synchronously: [Feed] returns once the record and everything it
// caused (emits to other groups' inputs, loopbacks, dead letters, timers
// falling due) has been processed. Tables are kept in memory, one per group,
// so a join reads what the joined group wrote, or what the test put there
// with [Set]. Every topic has one partition, or n with [Partitions](n):
// records go to their key's partition as the runtime places them, and each
// partition of a group has its own table rows, state, stream time, timers
// and punctuations, as the runtime's task for it does. Records keep the
// event time of the record (or timer) that caused them. Read results with
// [Get], [Emitted], [Window] and [Driver.Records].
//
// Time is under the test's control. Each partition's stream time is the
// largest event time it has processed (its inputs' timestamp extractors
// applied), except that records of the group's loop do not advance it, as
// in the runtime (see [topology.Loop]): they are processed at their own
// event time and windows judge them against the receiving partition's
// stream time. After each record the partition's stream-time timers that
// are due fire, in order of time, name and key, and
// [Driver.AdvanceStreamTime] moves stream time without a record, to close
// windows. The wall clock
// starts at [DefaultTime] and moves only with [Driver.AdvanceWallClock],
// which fires wall-clock timers and punctuations. A timer or punctuation
// callback that fails goes by its group's policy like a record, except that
// under a dead-letter policy, having no record to send, it is counted as
// skipped. Windowed tables and timers live in each partition's state,
// changelogged to its group's state topic; [Driver.Timers] and
// [Driver.Late] show what is pending and what was dropped.
package topotest
