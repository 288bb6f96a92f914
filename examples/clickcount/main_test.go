package main

import (
	"bytes"
	"strings"
	"testing"
)

// The demo runs on its embedded log and prints every user's count.
func TestClickcount(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), &out); err != nil {
		t.Fatalf("clickcount: %v\n%s", err, out.String())
	}
	for _, line := range []string{"ada       1", "grace       4", "barbara      16", "counted 51 clicks of 6 users: all match"} {
		if !strings.Contains(out.String(), line) {
			t.Fatalf("output lacks %q:\n%s", line, out.String())
		}
	}
}
