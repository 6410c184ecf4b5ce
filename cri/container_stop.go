package cri

import (
	"context"
	"time"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopContainer stops a running container with its stop signal, then
// SIGKILL once the timeout (seconds) has passed.
func (s *Service) StopContainer(ctx context.Context, r *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	if r.ContainerId == "" {
		return nil, invalid("container_id is required")
	}
	if r.Timeout < 0 {
		return nil, invalid("timeout must not be negative, got %d", r.Timeout)
	}
	// api.proto: "This call is idempotent, and must not return an error if
	// the container has already been stopped." An unknown id is such a case.
	if err := s.m.StopContainer(ctx, r.ContainerId, time.Duration(r.Timeout)*time.Second); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	return &runtime.StopContainerResponse{}, nil
}
