package cri

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdatePodSandboxResources applies a resized pod's limits to its pod
// cgroup, the parent of its containers' cgroups (see
// sandbox.Manager.UpdatePodResources).
func (s *Service) UpdatePodSandboxResources(ctx context.Context, r *runtime.UpdatePodSandboxResourcesRequest) (*runtime.UpdatePodSandboxResourcesResponse, error) {
	if r.PodSandboxId == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	if r.Resources == nil {
		return nil, invalid("resources is required")
	}
	if err := s.m.UpdatePodResources(ctx, r.PodSandboxId, resources(r.Resources), resources(r.Overhead)); err != nil {
		return nil, err
	}
	return &runtime.UpdatePodSandboxResourcesResponse{}, nil
}
