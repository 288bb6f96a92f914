package e2e

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
)

// span is a range of offsets [from, to) of an input partition that a
// processor may have processed without committing when it died: from the
// group's committed offset before its death to the partition's end offset
// after it. The partition's next owner processes them again, so these
// records, and no others, may be counted twice.
type span struct {
	partition int32
	from, to  int64
}

// death is a processor's death (kill -9, or an exit it was not asked for)
// with the spans of its partitions.
type death struct {
	what  string
	spans []span
}

// covers returns how many of deaths have a span holding an input record.
func covers(deaths []death, in inputRecord) int {
	n := 0
	for _, d := range deaths {
		for _, s := range d.spans {
			if s.partition == in.partition && s.from <= in.offset && in.offset < s.to {
				n++
			}
		}
	}
	return n
}

// bound returns how many records the spans of deaths hold.
func bound(deaths []death) int64 {
	var n int64
	for _, d := range deaths {
		for _, s := range d.spans {
			n += max(0, s.to-s.from)
		}
	}
	return n
}

// ledger is what checkChangelog found.
type ledger struct {
	// table is the group table, the last value of each key winning.
	table map[string]int64
	// records is the changelog's length; duplicates counts the records
	// counted more than once, each time past the first.
	records, duplicates int64
}

// checkChangelog reads the counting group's table changelog and accounts
// for each of its records. The counter writes one changelog record per
// input record it processes, the key's count so far, with the input
// record's timestamp, which produce made unique. So it fails the test
// unless:
//
//   - every changelog record was written for an acknowledged input record
//     (by its timestamp) of the same key and partition;
//   - each key's values, in changelog order, are 1, 2, 3 and so on: each
//     write is the one before plus one. A jump is a count that never
//     reached the changelog, which a row (in a store, or in memory after a
//     failed write) went on from; a repeat or a step back is a write lost
//     from a store, or one written twice;
//   - every acknowledged input record is counted at least once;
//   - an input record is counted more than once only within spans of
//     deaths, and at most once more for each death whose span holds it.
//
// Then it checks the table's counts exactly: each key's true count plus
// its records counted again, which the checks above bound.
func (c *cluster) checkChangelog(addr string, deaths []death) ledger {
	c.t.Helper()
	records := c.readAll(addr, tableTopic)
	c.mu.Lock()
	inputs := maps.Clone(c.inputs)
	want := maps.Clone(c.counts)
	c.mu.Unlock()

	type key = struct {
		partition int32
		offset    int64
	}
	// failures of changelog records come in changelog order, then those
	// of input records, sorted.
	var failures, inputFailures []string
	fail := func(format string, args ...any) {
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	counted := make(map[key]int64, len(inputs))
	table := map[string]int64{}
	for _, r := range records {
		where := fmt.Sprintf("%s-%d offset %d", tableTopic, r.Partition, r.Offset)
		if len(r.Value) != 8 {
			fail("%s: key %q has a %d-byte value, want an 8-byte int64", where, r.Key, len(r.Value))
			continue
		}
		in, ok := inputs[r.Timestamp.UnixMilli()]
		switch {
		case !ok:
			fail("%s: key %q: written for no acknowledged input record (timestamp %v)", where, r.Key, r.Timestamp)
			continue
		case in.key != string(r.Key) || in.partition != r.Partition:
			fail("%s: key %q: written for the input record of key %q at %s-%d offset %d", where, r.Key, in.key, inputTopic, in.partition, in.offset)
			continue
		}
		counted[key{in.partition, in.offset}]++
		v, prev := int64(binary.BigEndian.Uint64(r.Value)), table[in.key]
		switch {
		case v > prev+1:
			fail("%s: key %q: count %d follows %d, for %s-%d offset %d: built on %d count(s) that never reached the changelog (a row ahead of its changelog)", where, r.Key, v, prev, inputTopic, in.partition, in.offset, v-prev-1)
		case v <= prev:
			fail("%s: key %q: count %d follows %d, for %s-%d offset %d: a count lost from a store, or written twice", where, r.Key, v, prev, inputTopic, in.partition, in.offset)
		}
		table[in.key] = v
	}

	var dups int64
	again := map[string]int64{} // per key, records counted again
	for _, in := range inputs {
		n := counted[key{in.partition, in.offset}]
		switch allowed := covers(deaths, in); {
		case n == 0:
			inputFailures = append(inputFailures, fmt.Sprintf("%s-%d offset %d (key %q): acknowledged, never counted", inputTopic, in.partition, in.offset, in.key))
		case n-1 > int64(allowed):
			inputFailures = append(inputFailures, fmt.Sprintf("%s-%d offset %d (key %q): counted %d times; it was in flight at %d processor deaths, so at most %d", inputTopic, in.partition, in.offset, in.key, n, allowed, allowed+1))
		}
		if n > 1 {
			dups += n - 1
			again[in.key] += n - 1
		}
	}
	slices.Sort(inputFailures)
	failures = append(failures, inputFailures...)
	for i, f := range failures {
		if i == 20 {
			c.t.Errorf("... and %d more changelog records or input records are wrong", len(failures)-20)
			break
		}
		c.t.Error(f)
	}
	for k, n := range again {
		want[k] += n
	}
	checkCounts(c.t, table, want, fmt.Sprintf("beyond the %d records counted again within the spans of %d processor deaths", dups, len(deaths)))
	return ledger{table: table, records: int64(len(records)), duplicates: dups}
}
