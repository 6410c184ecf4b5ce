package cri

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
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
	if err := s.m.UpdateContainerResources(ctx, r.ContainerId, resources(r.Linux)); err != nil {
		return nil, err
	}
	return &runtime.UpdateContainerResourcesResponse{}, nil
}
