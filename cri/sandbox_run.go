package cri

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RunPodSandbox creates and starts a pod sandbox.
func (s *Service) RunPodSandbox(ctx context.Context, r *runtime.RunPodSandboxRequest) (*runtime.RunPodSandboxResponse, error) {
	if !s.handlerKnown(r.RuntimeHandler) {
		return nil, invalid("runtime handler %q is not served by warmpod (served: %s)", r.RuntimeHandler, s.handlerNames())
	}
	cfg, err := podConfig(r.Config, r.RuntimeHandler)
	if err != nil {
		return nil, err
	}
	id, err := s.m.RunPod(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &runtime.RunPodSandboxResponse{PodSandboxId: id}, nil
}

func (s *Service) handlerNames() string {
	var out string
	for i, h := range s.opts.Handlers {
		if i > 0 {
			out += ", "
		}
		out += `"` + h.Name + `"`
	}
	return out
}
