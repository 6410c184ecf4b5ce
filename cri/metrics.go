package cri

import (
	"context"
	"slices"
	"time"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox"
)

// The metrics are the cAdvisor metrics the kubelet serves on
// /metrics/cadvisor, under cAdvisor's names and labels, so that dashboards
// and alerts written for them keep working when the kubelet takes them from
// the runtime. CRI carries whole numbers only: "_seconds" values are whole
// seconds.

// baseLabels start every metric's labels: the container's name, its cgroup
// ("id"), image and runtime id ("name"), and its pod's namespace and name.
// Pod-level series have an empty container and image, the pod cgroup as id
// and the sandbox id as name.
var baseLabels = []string{"container", "id", "image", "name", "namespace", "pod"}

type metricDesc struct {
	name, help string
	typ        runtime.MetricType
	// labels follow baseLabels.
	labels []string
}

const (
	metricCounter = runtime.MetricType_COUNTER
	metricGauge   = runtime.MetricType_GAUGE
)

var metricDescs = []metricDesc{
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", metricCounter, []string{"cpu"}},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", metricCounter, nil},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", metricCounter, nil},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", metricCounter, nil},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", metricCounter, nil},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", metricCounter, nil},

	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", metricGauge, nil},
	{"container_memory_working_set_bytes", "Current working set in bytes.", metricGauge, nil},
	{"container_memory_rss", "Size of RSS in bytes.", metricGauge, nil},
	{"container_memory_cache", "Number of bytes of page cache memory.", metricGauge, nil},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", metricGauge, nil},
	{"container_memory_swap", "Container swap usage in bytes.", metricGauge, nil},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", metricGauge, nil},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", metricGauge, nil},
	{"container_memory_failcnt", "Number of memory usage hits limits.", metricCounter, nil},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", metricCounter, []string{"failure_type", "scope"}},
	{"container_oom_events_total", "Count of out of memory events observed for the container.", metricCounter, nil},

	{"container_processes", "Number of processes running inside the container.", metricGauge, nil},
	{"container_threads", "Number of threads running inside the container.", metricGauge, nil},
	{"container_threads_max", "Maximum number of threads allowed inside the container, 0 if unlimited.", metricGauge, nil},
	{"container_file_descriptors", "Number of open file descriptors for the container.", metricGauge, nil},
	{"container_sockets", "Number of open sockets for the container.", metricGauge, nil},

	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", metricGauge, []string{"device"}},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", metricGauge, []string{"device"}},
	{"container_fs_inodes_total", "Number of Inodes.", metricGauge, []string{"device"}},
	{"container_fs_inodes_free", "Number of available Inodes.", metricGauge, []string{"device"}},
	// The cgroup counts I/O of all devices together, not per device, and
	// not in operations: these are described, and not reported.
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read.", metricCounter, []string{"device"}},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written.", metricCounter, []string{"device"}},
	{"container_fs_reads_total", "Cumulative count of reads completed.", metricCounter, []string{"device"}},
	{"container_fs_writes_total", "Cumulative count of writes completed.", metricCounter, []string{"device"}},
	{"container_blkio_device_usage_total", "Blkio device bytes usage.", metricCounter, []string{"device", "major", "minor", "operation"}},

	{"container_network_receive_bytes_total", "Cumulative count of bytes received.", metricCounter, []string{"interface"}},
	{"container_network_receive_packets_total", "Cumulative count of packets received.", metricCounter, []string{"interface"}},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", metricCounter, []string{"interface"}},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", metricCounter, []string{"interface"}},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", metricCounter, []string{"interface"}},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", metricCounter, []string{"interface"}},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", metricCounter, []string{"interface"}},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", metricCounter, []string{"interface"}},

	{"container_spec_cpu_period", "CPU period of the container.", metricGauge, nil},
	{"container_spec_cpu_quota", "CPU quota of the container.", metricGauge, nil},
	{"container_spec_cpu_shares", "CPU share of the container.", metricGauge, nil},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", metricGauge, nil},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", metricGauge, nil},

	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", metricGauge, nil},
	{"container_last_seen", "Last time a container was seen by the exporter.", metricGauge, nil},
}

var descByName = func() map[string]*metricDesc {
	m := make(map[string]*metricDesc, len(metricDescs))
	for i := range metricDescs {
		m[metricDescs[i].name] = &metricDescs[i]
	}
	return m
}()

// Kernel defaults, reported for limits a container leaves unset.
const (
	defaultCPUPeriod = 100000
	defaultCPUShares = 1024
)

// ListMetricDescriptors describes the metrics ListPodSandboxMetrics reports.
func (s *Service) ListMetricDescriptors(ctx context.Context, r *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	out := make([]*runtime.MetricDescriptor, 0, len(metricDescs))
	for _, d := range metricDescs {
		out = append(out, &runtime.MetricDescriptor{
			Name:      d.name,
			Help:      d.help,
			LabelKeys: append(slices.Clone(baseLabels), d.labels...),
		})
	}
	return &runtime.ListMetricDescriptorsResponse{Descriptors: out}, nil
}

// ListPodSandboxMetrics reports the metrics of every ready pod and of its
// containers that have a cgroup.
func (s *Service) ListPodSandboxMetrics(ctx context.Context, r *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	return &runtime.ListPodSandboxMetricsResponse{PodMetrics: s.podSandboxMetrics(ctx)}, nil
}

// StreamPodSandboxMetrics is ListPodSandboxMetrics as a stream.
func (s *Service) StreamPodSandboxMetrics(r *runtime.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtime.StreamPodSandboxMetricsResponse]) error {
	return sendInBatches(s.podSandboxMetrics(stream.Context()), func(b []*runtime.PodSandboxMetrics) error {
		return stream.Send(&runtime.StreamPodSandboxMetricsResponse{PodSandboxMetrics: b})
	})
}

func (s *Service) podSandboxMetrics(ctx context.Context) []*runtime.PodSandboxMetrics {
	out := []*runtime.PodSandboxMetrics{}
	for _, info := range s.m.ListPods() {
		if info.State != sandbox.PodReady {
			continue
		}
		ps := s.opts.Stats.Pod(ctx, info, true)
		out = append(out, podMetrics(&ps, time.Now()))
	}
	return out
}

// metricSet collects the series of one pod or container.
type metricSet struct {
	at   int64
	base []string
	out  []*runtime.Metric
}

// add appends a series of the described metric name; extra are the values
// of its own labels.
func (ms *metricSet) add(name string, v uint64, extra ...string) {
	d := descByName[name]
	ms.out = append(ms.out, &runtime.Metric{
		Name:        name,
		Timestamp:   ms.at,
		MetricType:  d.typ,
		LabelValues: append(slices.Clone(ms.base), extra...),
		Value:       &runtime.UInt64Value{Value: v},
	})
}

func podMetrics(ps *sandbox.PodStats, now time.Time) *runtime.PodSandboxMetrics {
	pod := &ps.Pod
	out := &runtime.PodSandboxMetrics{PodSandboxId: pod.ID}
	ms := &metricSet{at: now.UnixNano(), base: []string{"", pod.CgroupPath, "", pod.ID, pod.Config.Namespace, pod.Config.Name}}
	if ps.Usage != nil {
		usageMetrics(ms, ps.Usage)
	}
	if n := ps.Network; n != nil {
		for _, l := range n.Interfaces {
			networkMetrics(ms, &l)
		}
	}
	ms.add("container_start_time_seconds", uint64(pod.CreatedAt/int64(time.Second)))
	ms.add("container_last_seen", uint64(now.Unix()))
	out.Metrics = ms.out
	for i := range ps.Containers {
		cs := &ps.Containers[i]
		if cs.Usage == nil {
			continue
		}
		out.ContainerMetrics = append(out.ContainerMetrics, &runtime.ContainerMetrics{
			ContainerId: cs.Container.ID,
			Metrics:     containerMetrics(cs, pod, now),
		})
	}
	return out
}

func containerMetrics(cs *sandbox.ContainerStats, pod *sandbox.PodInfo, now time.Time) []*runtime.Metric {
	c := &cs.Container
	id := c.Status.CgroupPath
	if id == "" {
		id = c.ID
	}
	ms := &metricSet{at: now.UnixNano(), base: []string{c.Config.Name, id, c.ImageName, c.ID, pod.Config.Namespace, pod.Config.Name}}
	usageMetrics(ms, cs.Usage)
	if l := cs.WritableLayer; l != nil {
		ms.add("container_fs_usage_bytes", l.UsedBytes, l.Device)
		ms.add("container_fs_limit_bytes", l.CapacityBytes, l.Device)
		ms.add("container_fs_inodes_total", l.InodesTotal, l.Device)
		ms.add("container_fs_inodes_free", l.InodesFree, l.Device)
	}
	specMetrics(ms, cs)
	started := c.Status.StartedAt
	if started == 0 {
		started = c.CreatedAt
	}
	ms.add("container_start_time_seconds", uint64(started/int64(time.Second)))
	ms.add("container_last_seen", uint64(now.Unix()))
	return ms.out
}

// usageMetrics adds the series a cgroup's sample gives.
func usageMetrics(ms *metricSet, u *sandbox.Usage) {
	const second = uint64(time.Second)
	cpu := &u.CPU
	ms.add("container_cpu_usage_seconds_total", cpu.UsageNanos/second, "total")
	ms.add("container_cpu_user_seconds_total", cpu.UserNanos/second)
	ms.add("container_cpu_system_seconds_total", cpu.SystemNanos/second)
	ms.add("container_cpu_cfs_periods_total", cpu.Periods)
	ms.add("container_cpu_cfs_throttled_periods_total", cpu.ThrottledPeriods)
	ms.add("container_cpu_cfs_throttled_seconds_total", cpu.ThrottledNanos/second)

	mem := &u.Memory
	ms.add("container_memory_usage_bytes", mem.UsageBytes)
	ms.add("container_memory_working_set_bytes", mem.WorkingSetBytes)
	ms.add("container_memory_rss", mem.RSSBytes)
	// The cgroup has no children of its own for a container, and a pod's
	// counters are hierarchical anyway: both scopes have the same values.
	for _, scope := range []string{"container", "hierarchy"} {
		ms.add("container_memory_failures_total", mem.PageFaults, "pgfault", scope)
		ms.add("container_memory_failures_total", mem.MajorPageFaults, "pgmajfault", scope)
	}
	ms.add("container_oom_events_total", mem.OOMKills)

	ms.add("container_processes", u.Processes)
	ms.add("container_threads", u.Pids.Current)
	ms.add("container_threads_max", u.Pids.Limit)

	if d := u.Detail; d != nil {
		ms.add("container_memory_cache", d.Memory.CacheBytes)
		ms.add("container_memory_mapped_file", d.Memory.MappedFileBytes)
		ms.add("container_memory_swap", d.Memory.SwapBytes)
		ms.add("container_memory_kernel_usage", d.Memory.KernelBytes)
		ms.add("container_memory_max_usage_bytes", d.Memory.MaxUsageBytes)
		ms.add("container_memory_failcnt", d.Memory.FailCount)
		ms.add("container_file_descriptors", d.FileDescriptors)
		ms.add("container_sockets", d.Sockets)
	}
}

func networkMetrics(ms *metricSet, l *sandbox.InterfaceStats) {
	ms.add("container_network_receive_bytes_total", l.RxBytes, l.Name)
	ms.add("container_network_receive_packets_total", l.RxPackets, l.Name)
	ms.add("container_network_receive_errors_total", l.RxErrors, l.Name)
	ms.add("container_network_receive_packets_dropped_total", l.RxDropped, l.Name)
	ms.add("container_network_transmit_bytes_total", l.TxBytes, l.Name)
	ms.add("container_network_transmit_packets_total", l.TxPackets, l.Name)
	ms.add("container_network_transmit_errors_total", l.TxErrors, l.Name)
	ms.add("container_network_transmit_packets_dropped_total", l.TxDropped, l.Name)
}

// specMetrics adds the container's limits: the memory limit as the cgroup
// enforces it, the rest as configured, with the kernel's defaults for what
// the container left unset. A quota is reported only when there is one.
func specMetrics(ms *metricSet, cs *sandbox.ContainerStats) {
	period, shares := uint64(defaultCPUPeriod), uint64(defaultCPUShares)
	var quota, swap uint64
	if r := cs.Container.Config.Spec.Resources; r != nil {
		if r.CPUPeriod > 0 {
			period = uint64(r.CPUPeriod)
		}
		if r.CPUShares > 0 {
			shares = uint64(r.CPUShares)
		}
		if r.CPUQuota > 0 {
			quota = uint64(r.CPUQuota)
		}
		if r.MemorySwapLimitInBytes > 0 {
			swap = uint64(r.MemorySwapLimitInBytes)
		}
	}
	ms.add("container_spec_cpu_period", period)
	if quota > 0 {
		ms.add("container_spec_cpu_quota", quota)
	}
	ms.add("container_spec_cpu_shares", shares)
	ms.add("container_spec_memory_limit_bytes", cs.Usage.Memory.LimitBytes)
	ms.add("container_spec_memory_swap_limit_bytes", swap)
}
