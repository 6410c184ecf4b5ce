package integration

import (
	"strings"
	"testing"
)

// TestContainerSignalDispositions checks that a container's process starts
// with no signal ignored: nothing of the runtime's own signal handling may
// leak into it.
func TestContainerSignalDispositions(t *testing.T) {
	begin(t)
	cfg := newPodConfig("signals")
	id := runPod(t, cfg)
	cid := runContainer(t, id, cfg, newContainerConfig("main", "sleep", "3600"))
	// Look at the command, not at the runtime's init that precedes it.
	waitFor(t, "the container's command to run", func() (bool, string) {
		out, _, _ := execSync(t, cid, "cat", "/proc/1/comm")
		return strings.TrimSpace(out) == "sleep", out
	})
	out, _, code := execSync(t, cid, "grep", "SigIgn", "/proc/1/status")
	if code != 0 || !strings.Contains(out, "0000000000000000") {
		t.Errorf("the container's process ignores signals: %q (exit %d)", out, code)
	}
}
