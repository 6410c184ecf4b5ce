package cri

import (
	"context"
	"reflect"
	"testing"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/oci"
)

// TestResources checks that every CRI resource field reaches oci.Resources,
// which holds the one translation to cgroup settings.
func TestResources(t *testing.T) {
	tests := []struct {
		name string
		in   *runtime.LinuxContainerResources
		want *oci.Resources
	}{
		{"nil", nil, nil},
		{"nothing set", &runtime.LinuxContainerResources{}, &oci.Resources{}},
		{"every field", &runtime.LinuxContainerResources{
			CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, CpusetCpus: "0-1", CpusetMems: "0",
			MemoryLimitInBytes: 1 << 20, MemorySwapLimitInBytes: 2 << 20, OomScoreAdj: 500,
			HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}},
			Unified:        map[string]string{"memory.high": "1000000"},
		}, &oci.Resources{
			CPUPeriod: 100000, CPUQuota: 50000, CPUShares: 512, CpusetCpus: "0-1", CpusetMems: "0",
			MemoryLimitInBytes: 1 << 20, MemorySwapLimitInBytes: 2 << 20, OOMScoreAdj: 500,
			HugepageLimits: map[string]uint64{"2MB": 4 << 20},
			Unified:        map[string]string{"memory.high": "1000000"},
		}},
		{"unlimited quota and swap", &runtime.LinuxContainerResources{CpuQuota: -1, MemoryLimitInBytes: 1 << 20, MemorySwapLimitInBytes: -1},
			&oci.Resources{CPUQuota: -1, MemoryLimitInBytes: 1 << 20, MemorySwapLimitInBytes: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resources(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("resources = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The update RPCs check what the request must carry before anything else.
func TestUpdateResourcesRequired(t *testing.T) {
	s := New(Options{})
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"container without id": func() error {
			_, err := s.UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{Linux: &runtime.LinuxContainerResources{}})
			return err
		},
		"container without linux": func() error {
			_, err := s.UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{ContainerId: "c"})
			return err
		},
		"pod without id": func() error {
			_, err := s.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{Resources: &runtime.LinuxContainerResources{}})
			return err
		},
		"pod without resources": func() error {
			_, err := s.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: "p"})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			if err := call(); status.Code(errgrpc.ToGRPC(err)) != codes.InvalidArgument {
				t.Errorf("err = %v, want InvalidArgument", err)
			}
		})
	}
}
