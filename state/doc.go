// Package state holds the local state stores behind processor tables.
//
// A processor instance keeps, for every partition it owns, a local copy of its
// group table and of the tables it joins. The changelog topic is the durable
// copy of each table; a Store is a cache of it that survives restarts, so that
// after a restart only the changelog's tail has to be replayed. To make that
// safe, every Store writes the changelog offset it has restored up to (its
// checkpoint) in the same atomic [Batch] as the rows, so data and checkpoint
// always agree, whatever a crash leaves behind. Two implementations share one
// contract: [LevelDB], on disk, and [Memory], for tests and small tables that
// are cheap to restore. The runtime chooses one per table through an [Opener].
package state
