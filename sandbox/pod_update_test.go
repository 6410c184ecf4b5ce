package sandbox

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/warmpod/warmpod/runtime/oci"
)

func TestPodTotal(t *testing.T) {
	tests := []struct {
		name          string
		res, overhead *oci.Resources
		want          *oci.Resources
	}{
		{"nothing", nil, nil, &oci.Resources{}},
		{"no overhead",
			&oci.Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimitInBytes: 100},
			nil,
			&oci.Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimitInBytes: 100, MemorySwapLimitInBytes: -1}},
		{"overhead added to limits",
			&oci.Resources{CPUShares: 512, CPUQuota: 50000, MemoryLimitInBytes: 100, HugepageLimits: map[string]uint64{"2MB": 10}},
			&oci.Resources{CPUShares: 10, CPUQuota: 1000, MemoryLimitInBytes: 5, HugepageLimits: map[string]uint64{"2MB": 1, "1GB": 1}},
			&oci.Resources{CPUShares: 522, CPUQuota: 51000, MemoryLimitInBytes: 105, MemorySwapLimitInBytes: -1, HugepageLimits: map[string]uint64{"2MB": 11}}},
		{"unlimited stays unlimited",
			&oci.Resources{CPUQuota: -1},
			&oci.Resources{CPUQuota: 1000, MemoryLimitInBytes: 5},
			&oci.Resources{CPUQuota: -1}},
		{"a swap limit grows with the memory overhead",
			&oci.Resources{MemoryLimitInBytes: 100, MemorySwapLimitInBytes: 150},
			&oci.Resources{MemoryLimitInBytes: 5},
			&oci.Resources{MemoryLimitInBytes: 105, MemorySwapLimitInBytes: 155}},
		{"unlimited swap stays unlimited",
			&oci.Resources{MemoryLimitInBytes: 100, MemorySwapLimitInBytes: -1},
			&oci.Resources{MemoryLimitInBytes: 5},
			&oci.Resources{MemoryLimitInBytes: 105, MemorySwapLimitInBytes: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := podTotal(tt.res, tt.overhead); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("podTotal = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The pod cgroup never gets the "no swap" a container's memory limit
// implies: its containers' cgroups decide swap.
func TestPodTotalLeavesSwapToContainers(t *testing.T) {
	host := oci.Host{SwapAccounting: true}
	res, err := oci.LinuxResources(podTotal(&oci.Resources{MemoryLimitInBytes: 1 << 20}, nil), &host)
	if err != nil {
		t.Fatal(err)
	}
	if m := res.Memory; m == nil || m.Swap == nil || *m.Swap != -1 {
		t.Fatalf("pod memory = %+v, want unlimited swap", m)
	}
}

// Bad limits are refused before the pod or container is looked up; a pod
// must be ready and still have its cgroup.
func TestUpdateResourcesErrors(t *testing.T) {
	m := testManager()
	m.pods["stopped"] = &pod{meta: podMeta{ID: "stopped", CgroupPath: "/warmpod-test/stopped"}, status: podStatus{State: PodNotReady}}
	m.pods["nocgroup"] = &pod{meta: podMeta{ID: "nocgroup", CgroupPath: "/warmpod-test-" + newID()}, status: podStatus{State: PodReady}}
	ctx := context.Background()
	bad := &oci.Resources{CPUShares: -1}
	tests := []struct {
		name     string
		err      error
		class    error
		mentions string
	}{
		{"pod: bad resources", m.UpdatePodResources(ctx, "missing", bad, nil), errdefs.ErrInvalidArgument, "resources: cpu_shares -1"},
		{"pod: bad overhead", m.UpdatePodResources(ctx, "missing", nil, bad), errdefs.ErrInvalidArgument, "overhead: cpu_shares -1"},
		{"pod: unknown", m.UpdatePodResources(ctx, "missing", nil, nil), errdefs.ErrNotFound, "missing"},
		{"pod: not ready", m.UpdatePodResources(ctx, "stopped", nil, nil), errdefs.ErrFailedPrecondition, "not ready"},
		{"pod: cgroup gone", m.UpdatePodResources(ctx, "nocgroup", &oci.Resources{CPUShares: 2}, nil), errdefs.ErrFailedPrecondition, "no cgroup any more"},
		{"container: bad resources", m.UpdateContainerResources(ctx, "missing", bad), errdefs.ErrInvalidArgument, "cpu_shares -1"},
		{"container: unknown", m.UpdateContainerResources(ctx, "missing", nil), errdefs.ErrNotFound, "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if errdefs.Resolve(tt.err) != tt.class || !strings.Contains(tt.err.Error(), tt.mentions) { //nolint:errorlint // Resolve returns a class sentinel itself
				t.Errorf("err = %v, want %v mentioning %q", tt.err, tt.class, tt.mentions)
			}
		})
	}
}
