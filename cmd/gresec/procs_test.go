package main

import (
	"os"
	"runtime"
	"testing"
)

// TestOneProcUnlessSet: `gresec up` runs on one P by default, and the
// GOMAXPROCS environment variable overrides that.
func TestOneProcUnlessSet(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "3")
	runtime.GOMAXPROCS(3)
	oneProcUnlessSet()
	if n := runtime.GOMAXPROCS(0); n != 3 {
		t.Errorf("GOMAXPROCS=3 in the environment: %d Ps, want 3", n)
	}
	os.Unsetenv("GOMAXPROCS") // t.Setenv restores it
	oneProcUnlessSet()
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Errorf("no GOMAXPROCS in the environment: %d Ps, want 1", n)
	}
}
