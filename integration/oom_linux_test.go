package integration

import (
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestOOMKilled runs a container past its memory limit: the kernel's OOM
// killer ends it and ContainerStatus says so.
func TestOOMKilled(t *testing.T) {
	begin(t)
	cfg := newPodConfig("oom")
	id := runPod(t, cfg)
	c := newContainerConfig("hog", "sh", "-c", "tail /dev/zero")
	c.Linux.Resources = &runtimeapi.LinuxContainerResources{
		MemoryLimitInBytes:     32 << 20,
		MemorySwapLimitInBytes: 32 << 20,
	}
	cid := runContainer(t, id, cfg, c)
	st := waitExited(t, cid)
	if st.Reason != "OOMKilled" || st.ExitCode != 137 {
		t.Errorf("exit = %d %q, want 137 OOMKilled", st.ExitCode, st.Reason)
	}
}
