package cri

import (
	"context"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox"
)

// PodSandboxStats reports one pod's resource usage and its containers'.
func (s *Service) PodSandboxStats(ctx context.Context, r *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	if r.PodSandboxId == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	info, err := s.m.PodStatus(ctx, r.PodSandboxId, false)
	if err != nil {
		return nil, err
	}
	ps := s.opts.Stats.Pod(ctx, info, false)
	return &runtime.PodSandboxStatsResponse{Stats: podSandboxStats(&ps)}, nil
}

// ListPodSandboxStats reports the usage of the pods the filter selects: by
// id (or id prefix) and labels.
func (s *Service) ListPodSandboxStats(ctx context.Context, r *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	return &runtime.ListPodSandboxStatsResponse{Stats: s.listPodSandboxStats(ctx, r.Filter)}, nil
}

// StreamPodSandboxStats is ListPodSandboxStats as a stream.
func (s *Service) StreamPodSandboxStats(r *runtime.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtime.StreamPodSandboxStatsResponse]) error {
	return sendInBatches(s.listPodSandboxStats(stream.Context(), r.Filter), func(b []*runtime.PodSandboxStats) error {
		return stream.Send(&runtime.StreamPodSandboxStatsResponse{PodSandboxStats: b})
	})
}

func (s *Service) listPodSandboxStats(ctx context.Context, f *runtime.PodSandboxStatsFilter) []*runtime.PodSandboxStats {
	out := []*runtime.PodSandboxStats{}
	for _, info := range s.m.ListPods() {
		if !matchPod(f, &info) {
			continue
		}
		ps := s.opts.Stats.Pod(ctx, info, false)
		out = append(out, podSandboxStats(&ps))
	}
	return out
}

func podSandboxStats(ps *sandbox.PodStats) *runtime.PodSandboxStats {
	info := &ps.Pod
	linux := &runtime.LinuxPodSandboxStats{}
	if u := ps.Usage; u != nil {
		linux.Cpu = cpuUsage(u)
		linux.Memory = memoryUsage(u)
		linux.Process = &runtime.ProcessUsage{
			Timestamp:    u.Timestamp.UnixNano(),
			ProcessCount: &runtime.UInt64Value{Value: u.Processes},
		}
	}
	if n := ps.Network; n != nil {
		nu := &runtime.NetworkUsage{Timestamp: n.Timestamp.UnixNano()}
		for i := range n.Interfaces {
			iface := interfaceUsage(&n.Interfaces[i])
			if i == 0 {
				nu.DefaultInterface = iface
			}
			nu.Interfaces = append(nu.Interfaces, iface)
		}
		linux.Network = nu
	}
	for i := range ps.Containers {
		linux.Containers = append(linux.Containers, containerStats(&ps.Containers[i]))
	}
	return &runtime.PodSandboxStats{
		Attributes: &runtime.PodSandboxAttributes{
			Id:          info.ID,
			Metadata:    podMetadata(&info.Config),
			Labels:      copyMap(info.Config.Labels),
			Annotations: copyMap(info.Config.Annotations),
		},
		Linux: linux,
	}
}

func interfaceUsage(s *sandbox.InterfaceStats) *runtime.NetworkInterfaceUsage {
	return &runtime.NetworkInterfaceUsage{
		Name:     s.Name,
		RxBytes:  &runtime.UInt64Value{Value: s.RxBytes},
		RxErrors: &runtime.UInt64Value{Value: s.RxErrors},
		TxBytes:  &runtime.UInt64Value{Value: s.TxBytes},
		TxErrors: &runtime.UInt64Value{Value: s.TxErrors},
	}
}
