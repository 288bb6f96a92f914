// Package core is runnel's one processing core: what happens to a record's
// outcome, a timer, a punctuation and stream time, decided once for both
// drivers, the runtime (on a real log) and topotest (in memory). A driver
// keeps one [Partition] per partition of a group; it gives the core its
// clock's readings and a [Host] that makes callback contexts and keeps
// their writes (the store), and it runs its own records through the
// group's handlers, asking the core what their results mean
// ([Group.Decide]) and telling it their event time ([Partition.Observe]).
//
// The rules, the same in production and in a user's unit test:
//
//   - Policies. A failed record goes by its group's policy: stop the
//     instance, skip it (counted), or send it to the dead-letter topic.
//     Errors the driver marks as its own ([Group.Fatal]) stop the instance
//     whatever the policy. A timer or punctuation callback has no input
//     record: under a dead-letter policy a failed one is skipped (counted
//     and logged). A failed callback's writes are dropped, except the
//     removal of the timer that fired: a failed timer does not fire again.
//   - Stream time is the largest event time a partition has processed from
//     its inputs other than the group's loop. A record that fails still
//     moves it (it was read); a loop record does not (its event time is
//     another partition's). Inside a record's handler, StreamTime counts
//     the record's own event time. Inside a timer or punctuation callback
//     it is the partition's stream time as it stands: a wall-clock
//     callback's time is a wall-clock instant, not an event time, and never
//     moves stream time, inside the callback or after it.
//   - Timers fire in order of time, then name, then key; a timer is
//     removed before its callback runs, so the callback may set it again.
//     Stream-time timers fire when stream time reaches them: after each
//     record, after each wall-clock event (whose callback may set one
//     already due), and when the driver advances stream time. Wall-clock
//     timers fire when the clock reaches them.
//   - A timer must name a callback the group declared: setting one that
//     does not fails the call (and so the record, by its policy). A timer
//     read back from the store whose callback the topology no longer has
//     is dropped when due, its removal written, with a warning.
//   - Punctuations run on a grid: every period from the moment the
//     partition was assigned. A punctuation whose boundaries the clock
//     passed more than one of at once (the runtime fell behind: a pause, a
//     slow callback) runs once, for the latest boundary passed, and the
//     next run is at the next boundary of the grid: the missed ones are
//     not run. This is Kafka Streams' rule for wall-clock punctuation
//     (KIP-138). A driver whose clock moves through each boundary in turn,
//     like topotest's, so runs every one.
//   - At one instant, a partition's wall-clock timers go before its
//     punctuations, which go in the order the group declared them.
//
// Window expiry rides on these rules: a windowed table closes and deletes
// its windows with stream-time timers ([processor.CloseTimer],
// [processor.ExpireTimer]), so windows close exactly when stream time, as
// defined here, passes their end plus grace.
package core
