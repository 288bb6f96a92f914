//go:build !unix

package broker

// openFileLimit reports no limit where there is no RLIMIT_NOFILE.
func openFileLimit() (int64, bool) { return 0, false }
