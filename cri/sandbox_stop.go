package cri

import (
	"context"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopPodSandbox stops a pod's containers and releases its network.
func (s *Service) StopPodSandbox(ctx context.Context, r *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	if r.PodSandboxId == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	if err := s.m.StopPod(ctx, r.PodSandboxId); err != nil && !errdefs.IsNotFound(err) {
		// api.proto: "If there are any running containers in the sandbox, they
		// must be forcibly terminated" and stopping an unknown sandbox is not
		// an error (the call is idempotent).
		return nil, err
	}
	return &runtime.StopPodSandboxResponse{}, nil
}
