package broker

import (
	"errors"
	"testing"
)

// TestDataDirectoryLocked refuses a second broker on a directory in use,
// and allows it once the first has closed.
func TestDataDirectoryLocked(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	if b2, err := Start(t.Context(), Config{Addr: "127.0.0.1:0", Dir: dir}); !errors.Is(err, errDirInUse) {
		if b2 != nil {
			b2.Close()
		}
		t.Fatalf("second broker on the same directory: %v, want errDirInUse", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	startBroker(t, dir)
}
