package cri

import (
	"context"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/runtime/shim"
	"github.com/warmpod/warmpod/sandbox"
	"github.com/warmpod/warmpod/sandbox/cgroup"
)

// cadvisorMetrics are the container metrics the kubelet serves on
// /metrics/cadvisor and asks the runtime for when it takes them from CRI.
var cadvisorMetrics = []string{
	"container_blkio_device_usage_total",
	"container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_throttled_seconds_total",
	"container_cpu_system_seconds_total", "container_cpu_usage_seconds_total", "container_cpu_user_seconds_total",
	"container_file_descriptors",
	"container_fs_inodes_free", "container_fs_inodes_total", "container_fs_limit_bytes", "container_fs_usage_bytes",
	"container_fs_reads_bytes_total", "container_fs_reads_total", "container_fs_writes_bytes_total", "container_fs_writes_total",
	"container_last_seen",
	"container_memory_cache", "container_memory_failcnt", "container_memory_failures_total", "container_memory_kernel_usage",
	"container_memory_mapped_file", "container_memory_max_usage_bytes", "container_memory_rss", "container_memory_swap",
	"container_memory_usage_bytes", "container_memory_working_set_bytes",
	"container_network_receive_bytes_total", "container_network_receive_errors_total",
	"container_network_receive_packets_dropped_total", "container_network_receive_packets_total",
	"container_network_transmit_bytes_total", "container_network_transmit_errors_total",
	"container_network_transmit_packets_dropped_total", "container_network_transmit_packets_total",
	"container_oom_events_total", "container_processes", "container_sockets",
	"container_spec_cpu_period", "container_spec_cpu_quota", "container_spec_cpu_shares",
	"container_spec_memory_limit_bytes", "container_spec_memory_swap_limit_bytes",
	"container_start_time_seconds", "container_threads", "container_threads_max",
}

// unreported are described but have no series: the cgroup counts I/O of
// all devices together, in bytes only.
var unreported = map[string]bool{
	"container_blkio_device_usage_total": true,
	"container_fs_reads_bytes_total":     true, "container_fs_writes_bytes_total": true,
	"container_fs_reads_total": true, "container_fs_writes_total": true,
}

func TestListMetricDescriptors(t *testing.T) {
	s := emptyNodeService(t, nil)
	resp, err := s.ListMetricDescriptors(context.Background(), &runtime.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*runtime.MetricDescriptor{}
	for _, d := range resp.Descriptors {
		if got[d.Name] != nil {
			t.Errorf("%s described twice", d.Name)
		}
		got[d.Name] = d
		if d.Help == "" || len(d.LabelKeys) < len(baseLabels) {
			t.Errorf("%s: help %q, labels %v", d.Name, d.Help, d.LabelKeys)
		}
	}
	for _, name := range cadvisorMetrics {
		if got[name] == nil {
			t.Errorf("%s is not described", name)
		}
	}
}

func metricsFixture() *sandbox.PodStats {
	now := time.Unix(2000, 0)
	usage := func() *sandbox.Usage {
		return &sandbox.Usage{
			Timestamp: now,
			Metrics: cgroup.Metrics{
				CPU:    cgroup.CPUStats{UsageNanos: 3500 * 1e6, UserNanos: 2e9, SystemNanos: 1e9},
				Memory: cgroup.MemoryStats{UsageBytes: 1000, WorkingSetBytes: 800, LimitBytes: 4096, PageFaults: 7},
				Pids:   cgroup.PidsStats{Current: 3, Limit: 100},
			},
			Processes: 2,
			Detail:    &sandbox.UsageDetail{Memory: sandbox.MemoryDetail{CacheBytes: 200}, FileDescriptors: 9, Sockets: 1},
		}
	}
	ctr := sandbox.ContainerInfo{
		ID: "c1", PodID: "p1", ImageName: "busybox:latest", CreatedAt: 1500 * 1e9,
		Config: sandbox.ContainerConfig{Name: "main", Spec: oci.Container{Resources: &oci.Resources{CPUQuota: 50000, CPUShares: 512}}},
		Status: shim.Record{State: shim.StateRunning, CgroupPath: "/pods/p1/c1", StartedAt: 1600 * 1e9},
	}
	exited := ctr
	exited.ID = "c2"
	return &sandbox.PodStats{
		Pod: sandbox.PodInfo{ID: "p1", CreatedAt: 1400 * 1e9, CgroupPath: "/pods/p1",
			Config: sandbox.PodConfig{Name: "web", Namespace: "default"}},
		Usage:   usage(),
		Network: &sandbox.NetworkUsage{Timestamp: now, Interfaces: []sandbox.InterfaceStats{{Name: "eth0", RxBytes: 10, TxBytes: 20}}},
		Containers: []sandbox.ContainerStats{
			{Container: ctr, Usage: usage(), WritableLayer: &sandbox.LayerUsage{
				FsInfo: sandbox.FsInfo{Device: "/dev/vda", CapacityBytes: 1 << 30}, UsedBytes: 4096, InodesUsed: 3,
			}},
			// An exited container whose cgroup is gone has no series.
			{Container: exited},
		},
	}
}

func TestPodMetrics(t *testing.T) {
	pm := podMetrics(metricsFixture(), time.Unix(2000, 0))
	if pm.PodSandboxId != "p1" {
		t.Errorf("pod id = %q", pm.PodSandboxId)
	}
	if len(pm.ContainerMetrics) != 1 || pm.ContainerMetrics[0].ContainerId != "c1" {
		t.Fatalf("container metrics = %v, want c1 only", pm.ContainerMetrics)
	}
	seen := map[string]bool{}
	check := func(ms []*runtime.Metric) {
		for _, m := range ms {
			d := descByName[m.Name]
			if d == nil {
				t.Errorf("%s has no descriptor", m.Name)
				continue
			}
			seen[m.Name] = true
			if len(m.LabelValues) != len(baseLabels)+len(d.labels) {
				t.Errorf("%s: label values %v do not match keys %v + %v", m.Name, m.LabelValues, baseLabels, d.labels)
			}
			if m.MetricType != d.typ || m.Timestamp != 2000*1e9 || m.Value == nil {
				t.Errorf("%s: type %s, timestamp %d, value %v", m.Name, m.MetricType, m.Timestamp, m.Value)
			}
		}
	}
	check(pm.Metrics)
	check(pm.ContainerMetrics[0].Metrics)
	for _, d := range metricDescs {
		if !seen[d.name] && !unreported[d.name] {
			t.Errorf("%s is described but not reported", d.name)
		}
	}
}

func TestContainerMetricValues(t *testing.T) {
	ps := metricsFixture()
	ms := containerMetrics(&ps.Containers[0], &ps.Pod, time.Unix(2000, 0))
	type key struct{ name, extra string }
	got := map[key]uint64{}
	for _, m := range ms {
		if m.LabelValues[0] != "main" || m.LabelValues[1] != "/pods/p1/c1" || m.LabelValues[2] != "busybox:latest" ||
			m.LabelValues[3] != "c1" || m.LabelValues[4] != "default" || m.LabelValues[5] != "web" {
			t.Fatalf("%s: base labels %v", m.Name, m.LabelValues[:6])
		}
		extra := ""
		if len(m.LabelValues) > 6 {
			extra = m.LabelValues[6]
		}
		got[key{m.Name, extra}] = m.Value.Value
	}
	for k, want := range map[key]uint64{
		{"container_cpu_usage_seconds_total", "total"}: 3, // whole seconds
		{"container_memory_working_set_bytes", ""}:     800,
		{"container_memory_cache", ""}:                 200,
		{"container_memory_failures_total", "pgfault"}: 7,
		{"container_processes", ""}:                    2,
		{"container_threads", ""}:                      3,
		{"container_threads_max", ""}:                  100,
		{"container_file_descriptors", ""}:             9,
		{"container_fs_usage_bytes", "/dev/vda"}:       4096,
		{"container_fs_limit_bytes", "/dev/vda"}:       1 << 30,
		{"container_spec_cpu_quota", ""}:               50000,
		{"container_spec_cpu_shares", ""}:              512,
		{"container_spec_cpu_period", ""}:              defaultCPUPeriod,
		{"container_spec_memory_limit_bytes", ""}:      4096,
		{"container_start_time_seconds", ""}:           1600,
		{"container_last_seen", ""}:                    2000,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s{%s} = %d (reported %v), want %d", k.name, k.extra, v, ok, want)
		}
	}

	// Without a quota there is no quota series.
	ps.Containers[0].Container.Config.Spec.Resources = nil
	for _, m := range containerMetrics(&ps.Containers[0], &ps.Pod, time.Unix(2000, 0)) {
		if m.Name == "container_spec_cpu_quota" {
			t.Errorf("quota reported for a container without one: %v", m)
		}
	}
}

func TestPodLevelMetrics(t *testing.T) {
	ps := metricsFixture()
	pm := podMetrics(ps, time.Unix(2000, 0))
	var rx *runtime.Metric
	for _, m := range pm.Metrics {
		if m.LabelValues[0] != "" || m.LabelValues[1] != "/pods/p1" || m.LabelValues[3] != "p1" {
			t.Fatalf("%s: pod base labels %v", m.Name, m.LabelValues)
		}
		if m.Name == "container_network_receive_bytes_total" {
			rx = m
		}
	}
	if rx == nil || rx.LabelValues[6] != "eth0" || rx.Value.Value != 10 {
		t.Errorf("receive bytes = %v", rx)
	}
}

func TestListPodSandboxMetricsEmpty(t *testing.T) {
	s := emptyNodeService(t, nil)
	resp, err := s.ListPodSandboxMetrics(context.Background(), &runtime.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.PodMetrics == nil || len(resp.PodMetrics) != 0 {
		t.Errorf("metrics = %v, want an empty list", resp.PodMetrics)
	}
}
