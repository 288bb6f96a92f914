// Package e2e holds runnel's end-to-end tests: the real `runnel serve`
// binary and real processor programs (internal/counter, which counts its
// input by key, and internal/picky, which counts too but fails on bad
// records under a chosen error policy) run as separate processes on
// loopback; an independent franz-go client drives the load; the tests kill
// the processes with SIGKILL or stop them with SIGTERM, restart them, keep
// the broker down, add and remove instances, and check the results in the
// group table's changelog, the instances' local stores, the group's
// output, committed offsets and assignment, the dead-letter topic and the
// instances' logs. goka, an independent stream-processing library, also
// runs against `runnel serve`, unchanged.
//
// Counts are checked exactly. Each input record carries a timestamp of its
// own, which the changelog records it causes carry too, so every changelog
// record is accounted for: where a processor was killed, a record may be
// counted again only if it was in flight in the victim's partitions (past
// the committed offset) at the kill, and the table's counts must be the
// true counts plus exactly those. Kills wait until the victim has
// processed records it has not committed, read from its monitor.
//
// The binaries are built once per `go test` run, by TestMain. Long
// scenarios run at their full size unless -short; the -e2e.* flags change
// the size. -e2e.long (or RUNNEL_E2E_LONG=1) runs the long variants:
// TestBrokerOutage's five outages of 10 s instead of two of 3 s, and four
// rounds of TestBrokerCrashStores instead of two.
package e2e
