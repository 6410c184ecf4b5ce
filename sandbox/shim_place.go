package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/warmpod/warmpod/sandbox/cgroup"
)

// placeShim puts a starting shim (before it has started anything) where
// it outlives the daemon and the OOM killer takes it last: in a cgroup of
// its own below the pod cgroup (cgroup.PlaceShim), and with an
// oom_score_adj one above the daemon's, as containerd gives its shims.
// Every process the shim starts inherits both; containers then get the
// score their spec asks for.
func placeShim(podCgroup, podID string, pid int) error {
	if _, err := cgroup.PlaceShim(podCgroup, podID, pid); err != nil {
		return err
	}
	adj, err := shimOOMScoreAdj()
	if err != nil {
		return err
	}
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte(strconv.Itoa(adj)), 0o644); err != nil {
		return fmt.Errorf("set oom_score_adj of the shim: %w", err)
	}
	return nil
}

// shimOOMScoreAdj is the daemon's oom_score_adj plus one (at most 1000).
func shimOOMScoreAdj() (int, error) {
	data, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, fmt.Errorf("read the daemon's oom_score_adj: %w", err)
	}
	own, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("read the daemon's oom_score_adj: %w", err)
	}
	return min(own+1, 1000), nil
}
