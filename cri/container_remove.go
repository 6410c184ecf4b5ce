package cri

import (
	"context"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveContainer removes a container, forcibly when it is running.
func (s *Service) RemoveContainer(ctx context.Context, r *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	if r.ContainerId == "" {
		return nil, invalid("container_id is required")
	}
	// api.proto: "This call is idempotent, and must not return an error if
	// the container has already been removed."
	if err := s.m.RemoveContainer(ctx, r.ContainerId); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	return &runtime.RemoveContainerResponse{}, nil
}
