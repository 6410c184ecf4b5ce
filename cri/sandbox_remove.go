package cri

import (
	"context"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemovePodSandbox removes a pod and its containers.
func (s *Service) RemovePodSandbox(ctx context.Context, r *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	if r.PodSandboxId == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	// api.proto: "This call is idempotent, and must not return an error if
	// the sandbox has already been removed."
	if err := s.m.RemovePod(ctx, r.PodSandboxId); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	return &runtime.RemovePodSandboxResponse{}, nil
}
