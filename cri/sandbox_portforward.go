package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox"
)

// PortForward prepares forwarding to ports of a ready pod and returns the
// URL the client connects to. The ports are those of the pod's loopback
// address; the client names them per connection, so the request may list
// none.
func (s *Service) PortForward(ctx context.Context, r *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	if r.PodSandboxId == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	for i, p := range r.Port {
		if p <= 0 || p > 65535 {
			return nil, invalid("port[%d]: %d is out of range 1-65535", i, p)
		}
	}
	info, err := s.m.PodStatus(ctx, r.PodSandboxId, false)
	if err != nil {
		return nil, err
	}
	if info.State != sandbox.PodReady {
		return nil, errdefs.ErrFailedPrecondition.WithMessage(fmt.Sprintf("pod sandbox %s is not ready", info.ID))
	}
	streams, err := s.streams()
	if err != nil {
		return nil, err
	}
	return streams.srv.GetPortForward(&runtime.PortForwardRequest{PodSandboxId: info.ID, Port: r.Port})
}
