package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cgroupV2 tells whether the host runs the unified hierarchy alone.
func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// TestUpdateResources resizes a running container and its pod and reads the
// limits back where the kernel enforces them: the container's cgroup (from
// inside the container) and the pod cgroup (on the host).
func TestUpdateResources(t *testing.T) {
	ctx := begin(t)
	cfg := newPodConfig("resize")
	podID := runPod(t, cfg)
	cid := runContainer(t, podID, cfg, newContainerConfig("main", "sleep", "3600"))

	_, err := d.Runtime.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: cid,
		Linux:       &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpuShares: 256},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, _, _ := execSync(t, cid, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
	if got := strings.TrimSpace(out); got != strconv.Itoa(64<<20) {
		t.Errorf("container memory limit = %q, want %d", got, 64<<20)
	}
	if got := containerStatus(t, cid).GetResources().GetLinux().GetMemoryLimitInBytes(); got != 64<<20 {
		t.Errorf("ContainerStatus memory limit = %d, want %d", got, 64<<20)
	}

	_, err = d.Runtime.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: podID,
		Resources:    &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 128 << 20, CpuShares: 512},
		Overhead:     &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 16 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The pod cgroup gets the containers' limit plus the overhead; its swap
	// stays unlimited, left to the containers' cgroups.
	mem, limit, swap := "/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"
	if cgroupV2() {
		mem, limit, swap = "/sys/fs/cgroup", "memory.max", "memory.swap.max"
	}
	dir := filepath.Join(mem, d.CgroupParent, podID)
	if got := readCgroupFile(t, filepath.Join(dir, limit)); got != strconv.Itoa(144<<20) {
		t.Errorf("pod %s = %q, want %d", limit, got, 144<<20)
	}
	if _, err := os.Stat(filepath.Join(dir, swap)); err == nil {
		got := readCgroupFile(t, filepath.Join(dir, swap))
		if n, err := strconv.ParseUint(got, 10, 64); got != "max" && (err != nil || n < 1<<62) {
			t.Errorf("pod %s = %q, want unlimited", swap, got)
		}
	}

	for _, tc := range []struct {
		name     string
		call     func() error
		code     codes.Code
		mentions []string
	}{
		{"container swap below memory", func() error {
			_, err := d.Runtime.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{
				ContainerId: cid, Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 32 << 20},
			})
			return err
		}, codes.InvalidArgument, []string{"memory_swap_limit_in_bytes"}},
		{"pod negative overhead", func() error {
			_, err := d.Runtime.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{
				PodSandboxId: podID, Resources: &runtimeapi.LinuxContainerResources{}, Overhead: &runtimeapi.LinuxContainerResources{CpuShares: -1},
			})
			return err
		}, codes.InvalidArgument, []string{"overhead", "cpu_shares"}},
		{"unknown container", func() error {
			_, err := d.Runtime.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{
				ContainerId: "0123456789abcdef", Linux: &runtimeapi.LinuxContainerResources{CpuShares: 2},
			})
			return err
		}, codes.NotFound, []string{"0123456789abcdef"}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(), tc.code, tc.mentions...) })
	}
}

func readCgroupFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
