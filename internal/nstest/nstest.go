// Package nstest holds the rule every test that needs root follows: such a
// test fails under CI (which runs as root, so it must run there) and skips
// loudly elsewhere, never silently.
package nstest

import (
	"os"
	"testing"
)

// RequireRoot stops t unless it runs as root; needs says what for.
func RequireRoot(t testing.TB, needs string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("SKIPPED (-short): needs root (%s)", needs)
	}
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs root (%s) and CI runs as root: run `sudo make test`", needs)
	}
	t.Skipf("SKIPPED: needs root (%s); run `sudo make test`", needs)
}
