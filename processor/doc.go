// Package processor is what a handler sees. A handler is a typed function
// that gets a [Context] for each record of a group's input: the record's key,
// topic, partition, offset, timestamp and headers, the group-table row of its
// key, and typed handles ([Output], [Loop], [Join], [Lookup]) through which it
// emits records and reads other tables. Codecs ([Codec]) turn keys and values
// into bytes at the edges. Underneath, everything is bytes: [Adapt] turns a
// typed handler into a [RawHandler] that runs against a [RawContext], the one
// interface a runtime (or the in-memory test driver) implements. The adapter
// buffers a record's effects and hands them to the RawContext only once the
// handler has succeeded, so the group's error [Policy] never sees half a
// record. The package declares nothing about topologies; package topology
// builds handles and adapters from a declaration and validates it.
//
// Time: a record's event time is its timestamp, or what its input's
// timestamp extractor makes of it. Each partition of a group has a stream
// time, the largest event time of the records it has processed; it never
// goes back, and windows close and stream-time timers fire as it moves.
// Records a group sends to itself through its loop do not count: they come
// from another partition, whose stream time may be far ahead. They are
// processed at their own event time ([Context.Timestamp]), and a windowed
// update they make is judged late or not against the receiving partition's
// stream time like any record's, but they move neither that stream time
// nor its stream-time timers.
package processor
