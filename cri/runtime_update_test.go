package cri

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox/network"
)

func podCIDRRequest(cidr string) *runtime.UpdateRuntimeConfigRequest {
	return &runtime.UpdateRuntimeConfigRequest{RuntimeConfig: &runtime.RuntimeConfig{NetworkConfig: &runtime.NetworkConfig{PodCidr: cidr}}}
}

func TestUpdateRuntimeConfig(t *testing.T) {
	var got []string
	s := emptyNodeService(t, nil)
	s.opts.PodCIDR = func(cidr string) error {
		got = append(got, cidr)
		if cidr == "bad" {
			return fmt.Errorf("%w: pod CIDR %q is not a CIDR", network.ErrInvalid, cidr)
		}
		return nil
	}
	if _, err := s.UpdateRuntimeConfig(context.Background(), podCIDRRequest("10.244.1.0/24")); err != nil {
		t.Fatal(err)
	}
	_, err := s.UpdateRuntimeConfig(context.Background(), podCIDRRequest("bad"))
	wantCode(t, "UpdateRuntimeConfig(bad)", err, codes.InvalidArgument)
	if _, err := s.UpdateRuntimeConfig(context.Background(), &runtime.UpdateRuntimeConfigRequest{}); err != nil {
		t.Errorf("empty request: %v", err)
	}
	if len(got) != 3 || got[0] != "10.244.1.0/24" || got[2] != "" {
		t.Errorf("network got %q", got)
	}
}

func TestUpdateRuntimeConfigWithoutNetworkCIDR(t *testing.T) {
	s := emptyNodeService(t, nil)
	if _, err := s.UpdateRuntimeConfig(context.Background(), podCIDRRequest("10.244.1.0/24")); err != nil {
		t.Errorf("UpdateRuntimeConfig = %v, want the CIDR ignored", err)
	}
}
