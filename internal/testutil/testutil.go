// Package testutil is what the tests of several packages share. Only tests
// import it.
package testutil

import (
	"os"
	"testing"
)

// RequireRoot skips t unless it runs as root. why says what the test does
// that needs root ("it creates cgroups"). CI runs the tests as root, so
// there they run.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: " + why)
	}
}
