package cri

import (
	"context"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox/cgroup"
)

func TestRuntimeConfigReportsTheCgroupDriver(t *testing.T) {
	s := New(Options{})
	t.Cleanup(func() { _ = cgroup.SetDriver(cgroup.DriverCgroupfs) })
	for _, tc := range []struct {
		driver string
		want   runtime.CgroupDriver
	}{
		{cgroup.DriverCgroupfs, runtime.CgroupDriver_CGROUPFS},
		{cgroup.DriverSystemd, runtime.CgroupDriver_SYSTEMD},
	} {
		if err := cgroup.SetDriver(tc.driver); err != nil {
			t.Fatal(err)
		}
		resp, err := s.RuntimeConfig(context.Background(), &runtime.RuntimeConfigRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetLinux().GetCgroupDriver(); got != tc.want {
			t.Errorf("driver %s: RuntimeConfig reports %s, want %s", tc.driver, got, tc.want)
		}
	}
}
