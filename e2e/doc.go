// Package e2e holds runnel's end-to-end tests: the real `runnel serve` binary
// and a real processor program (internal/counter) run as separate
// processes on loopback; an independent franz-go client drives the load;
// the tests kill the processes with SIGKILL or stop them with SIGTERM,
// restart them, and check the results in the group table's changelog and
// the group's committed offsets.
//
// The binaries are built once per `go test` run, by TestMain. Long scenarios
// run at their full size unless -short; the -e2e.* flags change the size.
package e2e
