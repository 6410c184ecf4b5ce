package cri

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox"
)

func TestContainerStatsConversion(t *testing.T) {
	ps := metricsFixture()
	cs := containerStats(&ps.Containers[0])
	if cs.Attributes.Id != "c1" || cs.Attributes.Metadata.Name != "main" {
		t.Errorf("attributes = %v", cs.Attributes)
	}
	if cs.Cpu.Timestamp != 2000*1e9 || cs.Cpu.UsageCoreNanoSeconds.Value != 3500*1e6 || cs.Cpu.UsageNanoCores != nil {
		t.Errorf("cpu = %v, want no nano cores on a first sample", cs.Cpu)
	}
	if cs.Memory.WorkingSetBytes.Value != 800 || cs.Memory.PageFaults.Value != 7 {
		t.Errorf("memory = %v", cs.Memory)
	}
	if cs.WritableLayer.UsedBytes.Value != 4096 || cs.WritableLayer.InodesUsed.Value != 3 {
		t.Errorf("writable layer = %v", cs.WritableLayer)
	}
	nano := uint64(5e8)
	ps.Containers[0].Usage.NanoCores = &nano
	if got := containerStats(&ps.Containers[0]).Cpu.UsageNanoCores.GetValue(); got != nano {
		t.Errorf("nano cores = %d, want %d", got, nano)
	}

	gone := containerStats(&ps.Containers[1])
	if gone.Cpu != nil || gone.Memory != nil || gone.WritableLayer != nil || gone.Attributes.Id != "c2" {
		t.Errorf("stats without cgroup = %v", gone)
	}
}

func TestPodSandboxStatsConversion(t *testing.T) {
	ps := metricsFixture()
	ps.Network.Interfaces = append(ps.Network.Interfaces, sandbox.InterfaceStats{Name: "net1", RxBytes: 5})
	st := podSandboxStats(ps)
	l := st.Linux
	if st.Attributes.Id != "p1" || st.Attributes.Metadata.Name != "web" {
		t.Errorf("attributes = %v", st.Attributes)
	}
	if l.Process.ProcessCount.Value != 2 || l.Cpu == nil || l.Memory == nil {
		t.Errorf("linux = %v", l)
	}
	if l.Network.DefaultInterface.Name != "eth0" || len(l.Network.Interfaces) != 2 || l.Network.Timestamp != time.Unix(2000, 0).UnixNano() {
		t.Errorf("network = %v", l.Network)
	}
	if len(l.Containers) != 2 {
		t.Errorf("containers = %d, want 2", len(l.Containers))
	}
}

func TestStatsOfUnknownObjects(t *testing.T) {
	s := emptyNodeService(t, nil)
	_, err := s.ContainerStats(context.Background(), &runtime.ContainerStatsRequest{ContainerId: "nope"})
	wantCode(t, "ContainerStats", err, codes.NotFound)
	_, err = s.ContainerStats(context.Background(), &runtime.ContainerStatsRequest{})
	wantCode(t, "ContainerStats without id", err, codes.InvalidArgument)
	_, err = s.PodSandboxStats(context.Background(), &runtime.PodSandboxStatsRequest{PodSandboxId: "nope"})
	wantCode(t, "PodSandboxStats", err, codes.NotFound)
	_, err = s.PodSandboxStats(context.Background(), &runtime.PodSandboxStatsRequest{})
	wantCode(t, "PodSandboxStats without id", err, codes.InvalidArgument)

	list, err := s.ListContainerStats(context.Background(), &runtime.ListContainerStatsRequest{})
	if err != nil || list.Stats == nil {
		t.Errorf("ListContainerStats = %v, %v; want an empty list", list, err)
	}
	pods, err := s.ListPodSandboxStats(context.Background(), &runtime.ListPodSandboxStatsRequest{})
	if err != nil || pods.Stats == nil {
		t.Errorf("ListPodSandboxStats = %v, %v; want an empty list", pods, err)
	}
}

func TestSendInBatches(t *testing.T) {
	for _, n := range []int{0, 1, statsBatch, statsBatch + 1, 3 * statsBatch} {
		items := make([]int, n)
		var sizes []int
		if err := sendInBatches(items, func(b []int) error { sizes = append(sizes, len(b)); return nil }); err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, s := range sizes {
			if s == 0 || s > statsBatch {
				t.Errorf("%d items: batch of %d", n, s)
			}
			total += s
		}
		if total != n {
			t.Errorf("%d items: sent %d", n, total)
		}
	}
}
