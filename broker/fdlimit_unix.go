//go:build unix

package broker

import "syscall"

// openFileLimit returns the process's soft limit of open files (Go raises
// it to the hard limit at start on Linux); an unlimited one counts as none.
func openFileLimit() (int64, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<40 {
		return 0, false
	}
	return int64(rl.Cur), true
}
