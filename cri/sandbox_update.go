package cri

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox"
	"github.com/warmpod/warmpod/sandbox/cgroup"
)

// UpdatePodSandboxResources applies a resized pod's limits to its pod
// cgroup, the parent of its containers' cgroups. The limits cover the
// containers' resources plus the pod's overhead; a resource the containers
// leave unlimited stays unlimited whatever the overhead.
func (s *Service) UpdatePodSandboxResources(ctx context.Context, r *runtime.UpdatePodSandboxResourcesRequest) (*runtime.UpdatePodSandboxResourcesResponse, error) {
	if r.PodSandboxId == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	if r.Resources == nil {
		return nil, invalid("resources is required")
	}
	if _, err := linuxResources("resources", r.Resources); err != nil {
		return nil, err
	}
	if _, err := linuxResources("overhead", orEmpty(r.Overhead)); err != nil {
		return nil, err
	}
	res, err := linuxResources("resources", podTotal(r.Resources, orEmpty(r.Overhead)))
	if err != nil {
		return nil, err
	}
	info, err := s.m.PodStatus(ctx, r.PodSandboxId, false)
	if err != nil {
		return nil, err
	}
	if info.State != sandbox.PodReady || info.CgroupPath == "" {
		return nil, status.Errorf(codes.FailedPrecondition, "pod sandbox %s is not ready", info.ID)
	}
	if err := cgroup.Update(info.CgroupPath, res); err != nil {
		switch {
		case errors.Is(err, cgroup.ErrNotFound):
			return nil, status.Errorf(codes.FailedPrecondition, "pod sandbox %s has no cgroup any more: %v", info.ID, err)
		case errors.Is(err, cgroup.ErrInvalid):
			return nil, status.Errorf(codes.InvalidArgument, "update pod sandbox %s: %v", info.ID, err)
		}
		return nil, err
	}
	entry(ctx, s.log).WithField("pod", info.ID).Info("pod sandbox resources updated")
	return &runtime.UpdatePodSandboxResourcesResponse{}, nil
}

func orEmpty(r *runtime.LinuxContainerResources) *runtime.LinuxContainerResources {
	if r == nil {
		return &runtime.LinuxContainerResources{}
	}
	return r
}

// podTotal adds the overhead to the containers' resources: shares always,
// quota and memory only where the containers have a limit.
func podTotal(res, overhead *runtime.LinuxContainerResources) *runtime.LinuxContainerResources {
	t := &runtime.LinuxContainerResources{
		CpuPeriod:          res.CpuPeriod,
		CpuQuota:           res.CpuQuota,
		CpuShares:          res.CpuShares + overhead.CpuShares,
		MemoryLimitInBytes: res.MemoryLimitInBytes,
		CpusetCpus:         res.CpusetCpus,
		CpusetMems:         res.CpusetMems,
		Unified:            res.Unified,
	}
	if t.CpuQuota > 0 && overhead.CpuQuota > 0 {
		t.CpuQuota += overhead.CpuQuota
	}
	if t.MemoryLimitInBytes > 0 && overhead.MemoryLimitInBytes > 0 {
		t.MemoryLimitInBytes += overhead.MemoryLimitInBytes
	}
	pages := map[string]int{}
	for _, h := range res.HugepageLimits {
		pages[h.PageSize] = len(t.HugepageLimits)
		t.HugepageLimits = append(t.HugepageLimits, &runtime.HugepageLimit{PageSize: h.PageSize, Limit: h.Limit})
	}
	for _, h := range overhead.HugepageLimits {
		if i, ok := pages[h.PageSize]; ok {
			t.HugepageLimits[i].Limit += h.Limit
		}
	}
	return t
}
