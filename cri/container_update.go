package cri

import (
	"context"
	"maps"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/oci"
)

// UpdateContainerResources applies new cgroup limits to a created or
// running container. A limit the request leaves unset keeps its value.
func (s *Service) UpdateContainerResources(ctx context.Context, r *runtime.UpdateContainerResourcesRequest) (*runtime.UpdateContainerResourcesResponse, error) {
	if r.ContainerId == "" {
		return nil, invalid("container_id is required")
	}
	if r.Linux == nil {
		return nil, invalid("linux is required: this runtime runs Linux containers")
	}
	res, err := linuxResources("linux", r.Linux)
	if err != nil {
		return nil, err
	}
	if m := res.Memory; m != nil && m.Limit != nil && m.Swap == nil {
		// As at creation, a memory limit without a swap limit means no
		// swap where swap is accounted. On cgroup v1 it also keeps a
		// raised memory limit from exceeding the old memory+swap limit,
		// which the kernel refuses.
		host, err := oci.ThisHost()
		if err != nil {
			return nil, err
		}
		if host.SwapAccounting {
			swap := *m.Limit
			m.Swap = &swap
		}
	}
	info, err := s.m.ContainerStatus(r.ContainerId)
	if err != nil {
		return nil, err
	}
	if err := s.m.UpdateContainerResources(ctx, info.ID, res); err != nil {
		return nil, err
	}
	entry(ctx, s.log).WithField("container", info.ID).Info("container resources updated")
	return &runtime.UpdateContainerResourcesResponse{}, nil
}

// linuxResources translates CRI limits to OCI ones, checking what the kernel
// would otherwise reject with a less helpful message; field names the
// request field in errors. Zero means "not specified" throughout, as in CRI.
// oom_score_adj is a process attribute, not a cgroup limit: it is fixed at
// creation and not translated.
func linuxResources(field string, r *runtime.LinuxContainerResources) (*specs.LinuxResources, error) {
	res := &specs.LinuxResources{}
	var cpu specs.LinuxCPU
	switch {
	case r.CpuPeriod < 0:
		return nil, invalid("%s.cpu_period %d is negative", field, r.CpuPeriod)
	case r.CpuPeriod > 0:
		p := uint64(r.CpuPeriod)
		cpu.Period = &p
	}
	switch {
	case r.CpuQuota < -1:
		return nil, invalid("%s.cpu_quota %d is negative (only -1, unlimited, is allowed)", field, r.CpuQuota)
	case r.CpuQuota != 0:
		q := r.CpuQuota
		cpu.Quota = &q
	}
	switch {
	case r.CpuShares < 0:
		return nil, invalid("%s.cpu_shares %d is negative", field, r.CpuShares)
	case r.CpuShares > 0:
		sh := uint64(r.CpuShares)
		cpu.Shares = &sh
	}
	for name, v := range map[string]string{"cpuset_cpus": r.CpusetCpus, "cpuset_mems": r.CpusetMems} {
		if !oci.ValidCPUSet(v) {
			return nil, invalid("%s.%s %q is not a list of numbers and ranges such as \"0-3,6\"", field, name, v)
		}
	}
	cpu.Cpus, cpu.Mems = r.CpusetCpus, r.CpusetMems
	if cpu != (specs.LinuxCPU{}) {
		res.CPU = &cpu
	}

	var mem specs.LinuxMemory
	switch {
	case r.MemoryLimitInBytes < 0:
		return nil, invalid("%s.memory_limit_in_bytes %d is negative", field, r.MemoryLimitInBytes)
	case r.MemoryLimitInBytes > 0:
		l := r.MemoryLimitInBytes
		mem.Limit = &l
	}
	switch swap := r.MemorySwapLimitInBytes; {
	case swap < -1:
		return nil, invalid("%s.memory_swap_limit_in_bytes %d is negative (only -1, unlimited, is allowed)", field, swap)
	case swap > 0 && mem.Limit == nil:
		return nil, invalid("%s.memory_swap_limit_in_bytes %d is set without memory_limit_in_bytes", field, swap)
	case swap > 0 && swap < *mem.Limit:
		return nil, invalid("%s.memory_swap_limit_in_bytes %d is below memory_limit_in_bytes %d (it counts memory plus swap)", field, swap, *mem.Limit)
	case swap != 0:
		mem.Swap = &swap
	}
	if mem != (specs.LinuxMemory{}) {
		res.Memory = &mem
	}

	for i, h := range r.HugepageLimits {
		if h.PageSize == "" {
			return nil, invalid("%s.hugepage_limits[%d].page_size is required", field, i)
		}
		res.HugepageLimits = append(res.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.PageSize, Limit: h.Limit})
	}
	for k := range r.Unified {
		if !strings.Contains(k, ".") || strings.Contains(k, "/") {
			return nil, invalid("%s.unified: %q is not a cgroup v2 file name", field, k)
		}
	}
	if len(r.Unified) > 0 {
		res.Unified = maps.Clone(r.Unified)
	}
	return res, nil
}
