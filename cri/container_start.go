package cri

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StartContainer starts a created container.
func (s *Service) StartContainer(ctx context.Context, r *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	if r.ContainerId == "" {
		return nil, invalid("container_id is required")
	}
	if err := s.m.StartContainer(ctx, r.ContainerId); err != nil {
		return nil, err
	}
	return &runtime.StartContainerResponse{}, nil
}
