package sandbox

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/sandbox/cgroup"
)

// CgroupDriver names how pod cgroups are made ("cgroupfs"), which the
// kubelet's own setting must match.
func CgroupDriver() string { return cgroup.Driver() }

// UpdatePodResources applies a resized pod's limits to its pod cgroup, the
// parent of its containers' cgroups. The limits are the containers'
// resources plus the pod's overhead (nil: none), translated as a
// container's are (oci.LinuxResources); see podTotal for how they add up.
func (m *Manager) UpdatePodResources(ctx context.Context, id string, res, overhead *oci.Resources) error {
	host, err := oci.ThisHost()
	if err != nil {
		return err
	}
	// Each part is checked alone first, so an error names the part.
	if _, err := oci.LinuxResources(res, &host); err != nil {
		return fmt.Errorf("update resources of pod sandbox %s: resources: %w", id, err)
	}
	if _, err := oci.LinuxResources(overhead, &host); err != nil {
		return fmt.Errorf("update resources of pod sandbox %s: overhead: %w", id, err)
	}
	total, err := oci.LinuxResources(podTotal(res, overhead), &host)
	if err != nil {
		return fmt.Errorf("update resources of pod sandbox %s: %w", id, err)
	}
	p, err := m.getPod(id)
	if err != nil {
		return err
	}
	if p.Status().State != PodReady || p.meta.CgroupPath == "" {
		return fmt.Errorf("pod sandbox %s is not ready: %w", p.meta.ID, errdefs.ErrFailedPrecondition)
	}
	if err := m.host.updateCgroup(p.meta.CgroupPath, total); err != nil {
		if errors.Is(err, cgroup.ErrNotFound) {
			// The pod exists: the missing cgroup is its state, not the
			// NotFound of the object the request names.
			return fmt.Errorf("pod sandbox %s has no cgroup any more (%v): %w", p.meta.ID, err, errdefs.ErrFailedPrecondition) //nolint:errorlint // the cgroup error is text only: its NotFound class is not the request's
		}
		return fmt.Errorf("update pod sandbox %s: %w", p.meta.ID, err)
	}
	log.G(ctx).WithField("pod", p.meta.ID).Info("pod sandbox resources updated")
	return nil
}

// podTotal is what the pod cgroup gets from the containers' resources res
// and the overhead: the containers' cpu shares plus the overhead's always;
// quota, memory and each hugepage size's limit plus the overhead's only
// where the containers have that limit (a resource they leave unlimited
// stays unlimited); cpuset, period and unified files as the containers
// have them. Swap is left to the containers' own cgroups: the pod cgroup's
// is unlimited (the kubelet never sends one for a pod), unless res asks for
// a swap limit, which then grows by the overhead's memory like the memory
// limit does.
func podTotal(res, overhead *oci.Resources) *oci.Resources {
	if res == nil {
		res = &oci.Resources{}
	}
	if overhead == nil {
		overhead = &oci.Resources{}
	}
	t := &oci.Resources{
		CPUPeriod:              res.CPUPeriod,
		CPUQuota:               res.CPUQuota,
		CPUShares:              res.CPUShares + overhead.CPUShares,
		MemoryLimitInBytes:     res.MemoryLimitInBytes,
		MemorySwapLimitInBytes: res.MemorySwapLimitInBytes,
		CpusetCpus:             res.CpusetCpus,
		CpusetMems:             res.CpusetMems,
		Unified:                res.Unified,
	}
	if t.CPUQuota > 0 && overhead.CPUQuota > 0 {
		t.CPUQuota += overhead.CPUQuota
	}
	if t.MemoryLimitInBytes > 0 && overhead.MemoryLimitInBytes > 0 {
		t.MemoryLimitInBytes += overhead.MemoryLimitInBytes
		if t.MemorySwapLimitInBytes > 0 {
			t.MemorySwapLimitInBytes += overhead.MemoryLimitInBytes
		}
	}
	if t.MemoryLimitInBytes > 0 && t.MemorySwapLimitInBytes == 0 {
		t.MemorySwapLimitInBytes = -1
	}
	if len(res.HugepageLimits) > 0 {
		t.HugepageLimits = maps.Clone(res.HugepageLimits)
		for size, limit := range overhead.HugepageLimits {
			if _, ok := t.HugepageLimits[size]; ok {
				t.HugepageLimits[size] += limit
			}
		}
	}
	return t
}
