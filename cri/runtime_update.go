package cri

import (
	"context"
	"fmt"

	"github.com/containerd/log"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateRuntimeConfig takes the node's pod CIDR, which the kubelet sends
// once it knows it. A network that allocates no addresses of its own (CNI
// plugins read the CIDR elsewhere) ignores it.
func (s *Service) UpdateRuntimeConfig(ctx context.Context, r *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	cidr := r.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	l := log.G(ctx).WithField("pod_cidr", cidr)
	if s.opts.PodCIDR == nil {
		l.Debug("pod CIDR ignored: the network takes none")
		return &runtime.UpdateRuntimeConfigResponse{}, nil
	}
	if err := s.opts.PodCIDR(cidr); err != nil {
		return nil, fmt.Errorf("runtime_config.network_config.pod_cidr: %w", err)
	}
	if cidr != "" {
		l.Info("pod CIDR updated")
	}
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}
