// Package topotest runs a topology in memory, with no broker, for unit tests
// of handlers. A [Driver] feeds records to the groups that consume their
// topic and runs the same adapters, Context and error policies as the
// runtime, synchronously: [Feed] returns once the record and everything it
// caused (emits to other groups' inputs, loopbacks, dead letters) has been
// processed. Tables are kept in memory, one per group, so a join reads what
// the joined group wrote, or what the test put there with [Set]. Every topic
// has one partition; records keep the timestamp of the record that caused
// them. Read results with [Get], [Emitted] and [Driver.Records].
package topotest
