package cri

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ReopenContainerLog makes a running container's log go to a new file at
// its log path, after the kubelet has rotated the old one.
func (s *Service) ReopenContainerLog(ctx context.Context, r *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	if r.ContainerId == "" {
		return nil, invalid("container_id is required")
	}
	if err := s.m.ReopenContainerLog(ctx, r.ContainerId); err != nil {
		return nil, err
	}
	return &runtime.ReopenContainerLogResponse{}, nil
}
