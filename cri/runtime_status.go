package cri

import (
	"context"

	"github.com/containerd/log"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox"
)

// Status reports whether the runtime and its network are ready, and the
// runtime handlers it serves with their features.
func (s *Service) Status(ctx context.Context, r *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	netReady := &runtime.RuntimeCondition{Type: runtime.NetworkReady, Status: true}
	if err := s.m.NetworkReady(); err != nil {
		netReady.Status = false
		netReady.Reason = "NetworkPluginNotReady"
		netReady.Message = err.Error()
	}
	resp := &runtime.StatusResponse{
		Status: &runtime.RuntimeStatus{Conditions: []*runtime.RuntimeCondition{
			{Type: runtime.RuntimeReady, Status: true},
			netReady,
		}},
		Features: &runtime.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	// The kubelet runs pods with hostUsers: false only on a handler that
	// declares user namespaces, so declare them only where they work.
	userNS := s.m.UserNamespaces()
	if userNS != nil {
		log.G(ctx).WithError(userNS).Trace("user namespaces are not available")
	}
	for _, h := range s.opts.Handlers {
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtime.RuntimeHandler{
			Name: h.Name,
			Features: &runtime.RuntimeHandlerFeatures{
				RecursiveReadOnlyMounts: true,
				UserNamespaces:          userNS == nil,
			},
		})
	}
	if r.Verbose {
		resp.Info = verboseInfo("config", s.opts.Config)
	}
	return resp, nil
}

// RuntimeConfig reports the cgroup driver, which the kubelet must match.
func (s *Service) RuntimeConfig(ctx context.Context, r *runtime.RuntimeConfigRequest) (*runtime.RuntimeConfigResponse, error) {
	driver := runtime.CgroupDriver_CGROUPFS
	if sandbox.CgroupDriver() == "systemd" {
		driver = runtime.CgroupDriver_SYSTEMD
	}
	return &runtime.RuntimeConfigResponse{Linux: &runtime.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// handlerKnown tells whether the service serves runtime handler name.
func (s *Service) handlerKnown(name string) bool {
	for _, h := range s.opts.Handlers {
		if h.Name == name {
			return true
		}
	}
	return false
}
