package cri

import (
	"context"
	"maps"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/shim"
	"github.com/warmpod/warmpod/sandbox"
)

// ContainerStatus reports a container's state, exit and configuration.
func (s *Service) ContainerStatus(ctx context.Context, r *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	if r.ContainerId == "" {
		return nil, invalid("container_id is required")
	}
	info, err := s.m.ContainerStatus(r.ContainerId)
	if err != nil {
		return nil, err
	}
	resp := &runtime.ContainerStatusResponse{Status: containerStatus(&info)}
	if r.Verbose {
		resp.Info = verboseInfo("info", map[string]any{
			"sandboxID":       info.PodID,
			"pid":             info.Status.Pid,
			"restartCount":    info.Status.RestartCount,
			"lastTermination": info.Status.LastTermination,
			"warm":            info.Status.Warm,
			"fromWarm":        info.Status.FromWarm,
			"cgroupPath":      info.Status.CgroupPath,
			"config":          info.Config,
		})
	}
	return resp, nil
}

func containerState(st shim.State) runtime.ContainerState {
	switch st {
	case shim.StateCreated:
		return runtime.ContainerState_CONTAINER_CREATED
	case shim.StateRunning:
		return runtime.ContainerState_CONTAINER_RUNNING
	case shim.StateExited:
		return runtime.ContainerState_CONTAINER_EXITED
	}
	return runtime.ContainerState_CONTAINER_UNKNOWN
}

func containerMetadata(c *sandbox.ContainerConfig) *runtime.ContainerMetadata {
	return &runtime.ContainerMetadata{Name: c.Name, Attempt: c.Attempt}
}

func containerStatus(i *sandbox.ContainerInfo) *runtime.ContainerStatus {
	rec := &i.Status
	st := &runtime.ContainerStatus{
		Id:          i.ID,
		Metadata:    containerMetadata(&i.Config),
		State:       containerState(rec.State),
		CreatedAt:   i.CreatedAt,
		StartedAt:   rec.StartedAt,
		FinishedAt:  rec.FinishedAt,
		ExitCode:    rec.ExitCode,
		Image:       &runtime.ImageSpec{Image: i.ImageName, UserSpecifiedImage: i.Config.Image},
		ImageRef:    i.ImageID,
		ImageId:     i.ImageID,
		Reason:      rec.Reason,
		Message:     rec.Message,
		Labels:      copyMap(i.Config.Labels),
		Annotations: copyMap(i.Config.Annotations),
		LogPath:     i.LogPath,
		Resources:   containerResources(i),
		User:        containerUser(i.User),
	}
	for _, m := range i.Config.Spec.Mounts {
		rm := &runtime.Mount{
			ContainerPath:     m.ContainerPath,
			HostPath:          m.HostPath,
			Readonly:          m.Readonly,
			RecursiveReadOnly: m.RecursiveReadOnly,
			SelinuxRelabel:    m.SelinuxRelabel,
			Propagation:       runtime.MountPropagation(m.Propagation),
		}
		if m.Image {
			// An image volume names its image, and the image it resolved to.
			rm.HostPath = ""
			rm.Image = &runtime.ImageSpec{Image: m.HostPath, ImageRef: m.ImageID}
			rm.ImageSubPath = m.ImageSubPath
		}
		st.Mounts = append(st.Mounts, rm)
	}
	return st
}

// containerUser reports the identity the container's process starts with.
// Its groups are the primary group and the supplementary ones, as the kernel
// lists them for the process (and as the kubelet compares them with the
// pod's SupplementalGroupsPolicy).
func containerUser(u *specs.User) *runtime.ContainerUser {
	if u == nil {
		return nil
	}
	groups := make([]int64, 0, 1+len(u.AdditionalGids))
	groups = append(groups, int64(u.GID))
	for _, g := range u.AdditionalGids {
		groups = append(groups, int64(g))
	}
	slices.Sort(groups)
	return &runtime.ContainerUser{Linux: &runtime.LinuxContainerUser{
		Uid: int64(u.UID), Gid: int64(u.GID), SupplementalGroups: slices.Compact(groups),
	}}
}

// containerResources reports a container's current limits: those of its
// last update, else those it was created with.
func containerResources(i *sandbox.ContainerInfo) *runtime.ContainerResources {
	if r := i.Resources; r != nil {
		out := &runtime.LinuxContainerResources{Unified: r.Unified}
		if c := r.CPU; c != nil {
			if c.Period != nil {
				out.CpuPeriod = int64(*c.Period)
			}
			if c.Quota != nil {
				out.CpuQuota = *c.Quota
			}
			if c.Shares != nil {
				out.CpuShares = int64(*c.Shares)
			}
			out.CpusetCpus, out.CpusetMems = c.Cpus, c.Mems
		}
		if m := r.Memory; m != nil {
			if m.Limit != nil {
				out.MemoryLimitInBytes = *m.Limit
			}
			if m.Swap != nil {
				out.MemorySwapLimitInBytes = *m.Swap
			}
		}
		for _, h := range r.HugepageLimits {
			out.HugepageLimits = append(out.HugepageLimits, &runtime.HugepageLimit{PageSize: h.Pagesize, Limit: h.Limit})
		}
		if res := i.Config.Spec.Resources; res != nil {
			out.OomScoreAdj = res.OOMScoreAdj
		}
		return &runtime.ContainerResources{Linux: out}
	}
	res := i.Config.Spec.Resources
	if res == nil {
		return nil
	}
	out := &runtime.LinuxContainerResources{
		CpuPeriod:              res.CPUPeriod,
		CpuQuota:               res.CPUQuota,
		CpuShares:              res.CPUShares,
		MemoryLimitInBytes:     res.MemoryLimitInBytes,
		MemorySwapLimitInBytes: res.MemorySwapLimitInBytes,
		OomScoreAdj:            res.OOMScoreAdj,
		CpusetCpus:             res.CpusetCpus,
		CpusetMems:             res.CpusetMems,
		Unified:                res.Unified,
	}
	for _, size := range slices.Sorted(maps.Keys(res.HugepageLimits)) {
		out.HugepageLimits = append(out.HugepageLimits, &runtime.HugepageLimit{PageSize: size, Limit: res.HugepageLimits[size]})
	}
	return &runtime.ContainerResources{Linux: out}
}
