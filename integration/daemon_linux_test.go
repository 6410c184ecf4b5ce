package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warmpod/warmpod/integration/launch"
)

// daemon is one warmpod daemon under test, started by integration/launch
// with places of its own: its directories, bridge, subnet, chain prefix and
// cgroup parent belong to this test run alone, so it never meets a daemon
// running on the defaults or another test run.
//
// The tests run one at a time; Runtime and Image are replaced by every
// start, so callers read them afresh after a restart.
type daemon struct {
	*launch.Daemon
	// base is the run's directory (the daemon's and the tests' files).
	base string
}

// shimLogs returns the logs of every pod's shim still on disk.
func (d *daemon) allShimLogs() string {
	paths, _ := filepath.Glob(filepath.Join(d.State, "pods", "*", "shim.log"))
	var b strings.Builder
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "==== %s\n%s\n", p, data)
	}
	return b.String()
}

// shimLog returns the log of one pod's shim ("" once the pod is removed).
func (d *daemon) shimLog(podID string) string {
	data, err := os.ReadFile(filepath.Join(d.State, "pods", podID, "shim.log"))
	if err != nil {
		return ""
	}
	return string(data)
}

// watchLogs prints the daemon log written during t when t fails. Call it
// first in a test: cleanups run last-in first-out, so this one runs after
// the test's pods are removed and shows their removal too. Each pod's shim
// log is printed by the cleanup that removes the pod (see runPod).
func (d *daemon) watchLogs(t testing.TB) {
	t.Helper()
	mark := d.LogSize()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log during %s:\n%s", t.Name(), d.LogSince(mark))
		}
	})
}
