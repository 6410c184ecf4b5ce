package cri

import (
	"context"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func ptr[T any](v T) *T { return &v }

func TestLinuxResources(t *testing.T) {
	tests := []struct {
		name string
		in   *runtime.LinuxContainerResources
		want *specs.LinuxResources
	}{
		{"nothing set", &runtime.LinuxContainerResources{}, &specs.LinuxResources{}},
		{"cpu", &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, CpusetCpus: "0-1", CpusetMems: "0"},
			&specs.LinuxResources{CPU: &specs.LinuxCPU{Period: ptr(uint64(100000)), Quota: ptr(int64(50000)), Shares: ptr(uint64(512)), Cpus: "0-1", Mems: "0"}}},
		{"unlimited quota", &runtime.LinuxContainerResources{CpuQuota: -1},
			&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(-1))}}},
		{"memory and swap", &runtime.LinuxContainerResources{MemoryLimitInBytes: 1 << 20, MemorySwapLimitInBytes: 2 << 20},
			&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(1 << 20)), Swap: ptr(int64(2 << 20))}}},
		{"unlimited swap", &runtime.LinuxContainerResources{MemoryLimitInBytes: 1 << 20, MemorySwapLimitInBytes: -1},
			&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(1 << 20)), Swap: ptr(int64(-1))}}},
		{"hugepages and unified", &runtime.LinuxContainerResources{
			HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}},
			Unified:        map[string]string{"memory.high": "1000000"},
		}, &specs.LinuxResources{
			HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}},
			Unified:        map[string]string{"memory.high": "1000000"},
		}},
		{"oom score adj is not a cgroup limit", &runtime.LinuxContainerResources{OomScoreAdj: 500}, &specs.LinuxResources{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := linuxResources("linux", tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("linuxResources = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLinuxResourcesInvalid(t *testing.T) {
	for name, in := range map[string]*runtime.LinuxContainerResources{
		"negative period":       {CpuPeriod: -1},
		"negative quota":        {CpuQuota: -2},
		"negative shares":       {CpuShares: -1},
		"bad cpuset":            {CpusetCpus: "3-1"},
		"bad mems":              {CpusetMems: "a"},
		"negative memory":       {MemoryLimitInBytes: -1},
		"negative swap":         {MemoryLimitInBytes: 1 << 20, MemorySwapLimitInBytes: -2},
		"swap without memory":   {MemorySwapLimitInBytes: 1 << 20},
		"swap below memory":     {MemoryLimitInBytes: 2 << 20, MemorySwapLimitInBytes: 1 << 20},
		"hugepage without size": {HugepageLimits: []*runtime.HugepageLimit{{Limit: 1}}},
		"unified not a file":    {Unified: map[string]string{"../x": "1"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := linuxResources("linux", in)
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("linuxResources = %v, want InvalidArgument", err)
			}
		})
	}
}

func TestPodTotal(t *testing.T) {
	tests := []struct {
		name          string
		res, overhead *runtime.LinuxContainerResources
		want          *runtime.LinuxContainerResources
	}{
		{"no overhead",
			&runtime.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 100},
			&runtime.LinuxContainerResources{},
			&runtime.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 100}},
		{"overhead added to limits",
			&runtime.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, MemoryLimitInBytes: 100,
				HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 10}}},
			&runtime.LinuxContainerResources{CpuShares: 10, CpuQuota: 1000, MemoryLimitInBytes: 5,
				HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 1}, {PageSize: "1GB", Limit: 1}}},
			&runtime.LinuxContainerResources{CpuShares: 522, CpuQuota: 51000, MemoryLimitInBytes: 105,
				HugepageLimits: []*runtime.HugepageLimit{{PageSize: "2MB", Limit: 11}}}},
		{"unlimited stays unlimited",
			&runtime.LinuxContainerResources{CpuQuota: -1},
			&runtime.LinuxContainerResources{CpuQuota: 1000, MemoryLimitInBytes: 5},
			&runtime.LinuxContainerResources{CpuQuota: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := podTotal(tt.res, tt.overhead); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("podTotal = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUpdateContainerResourcesValidation(t *testing.T) {
	s := emptyNodeService(t, nil)
	tests := []struct {
		name string
		req  *runtime.UpdateContainerResourcesRequest
		want codes.Code
	}{
		{"no container", &runtime.UpdateContainerResourcesRequest{Linux: &runtime.LinuxContainerResources{}}, codes.InvalidArgument},
		{"no linux", &runtime.UpdateContainerResourcesRequest{ContainerId: "c"}, codes.InvalidArgument},
		{"bad value", &runtime.UpdateContainerResourcesRequest{ContainerId: "c", Linux: &runtime.LinuxContainerResources{CpuShares: -1}}, codes.InvalidArgument},
		{"unknown container", &runtime.UpdateContainerResourcesRequest{ContainerId: "c", Linux: &runtime.LinuxContainerResources{CpuShares: 2}}, codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.UpdateContainerResources(context.Background(), tt.req)
			wantCode(t, "UpdateContainerResources", err, tt.want)
		})
	}
}

func TestUpdatePodSandboxResourcesValidation(t *testing.T) {
	s := emptyNodeService(t, nil)
	ok := &runtime.LinuxContainerResources{CpuShares: 2}
	tests := []struct {
		name string
		req  *runtime.UpdatePodSandboxResourcesRequest
		want codes.Code
	}{
		{"no pod", &runtime.UpdatePodSandboxResourcesRequest{Resources: ok}, codes.InvalidArgument},
		{"no resources", &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: "p"}, codes.InvalidArgument},
		{"bad resources", &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: "p", Resources: &runtime.LinuxContainerResources{CpuQuota: -5}}, codes.InvalidArgument},
		{"bad overhead", &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: "p", Resources: ok, Overhead: &runtime.LinuxContainerResources{MemoryLimitInBytes: -1}}, codes.InvalidArgument},
		{"unknown pod", &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: "p", Resources: ok}, codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.UpdatePodSandboxResources(context.Background(), tt.req)
			wantCode(t, "UpdatePodSandboxResources", err, tt.want)
		})
	}
}
