// Package e2e holds runnel's end-to-end tests: the real `runnel serve`
// binary and real processor programs (internal/counter, which counts its
// input by key, and internal/picky, which counts too but fails on bad
// records under a chosen error policy) run as separate processes on
// loopback; an independent franz-go client drives the load; the tests kill
// the processes with SIGKILL or stop them with SIGTERM, restart them, add
// and remove instances, and check the results in the group table's
// changelog, the group's committed offsets and assignment, the dead-letter
// topic and the instances' logs. goka, an independent stream-processing
// library, also runs against `runnel serve`, unchanged.
//
// The binaries are built once per `go test` run, by TestMain. Long scenarios
// run at their full size unless -short; the -e2e.* flags change the size.
package e2e
