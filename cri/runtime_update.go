package cri

import (
	"context"
	"errors"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox/network"
)

// UpdateRuntimeConfig takes the node's pod CIDR, which the kubelet sends
// once it knows it. A network that allocates no addresses of its own (CNI
// plugins read the CIDR elsewhere) ignores it.
func (s *Service) UpdateRuntimeConfig(ctx context.Context, r *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	cidr := r.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	log := entry(ctx, s.log).WithField("pod_cidr", cidr)
	if s.opts.PodCIDR == nil {
		log.Debug("pod CIDR ignored: the network takes none")
		return &runtime.UpdateRuntimeConfigResponse{}, nil
	}
	if err := s.opts.PodCIDR(cidr); err != nil {
		if errors.Is(err, network.ErrInvalid) {
			return nil, invalid("runtime_config.network_config.pod_cidr: %v", err)
		}
		return nil, err
	}
	if cidr != "" {
		log.Info("pod CIDR updated")
	}
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}
