package cri

import (
	"context"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox"
)

// ContainerStats reports one container's resource usage.
func (s *Service) ContainerStats(ctx context.Context, r *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	if r.ContainerId == "" {
		return nil, invalid("container_id is required")
	}
	info, err := s.m.ContainerStatus(r.ContainerId)
	if err != nil {
		return nil, err
	}
	cs := s.opts.Stats.Container(ctx, info, false)
	return &runtime.ContainerStatsResponse{Stats: containerStats(&cs)}, nil
}

// ListContainerStats reports the usage of the containers the filter
// selects: by id (or id prefix), pod sandbox id (or prefix) and labels.
func (s *Service) ListContainerStats(ctx context.Context, r *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	return &runtime.ListContainerStatsResponse{Stats: s.listContainerStats(ctx, r.Filter)}, nil
}

// StreamContainerStats is ListContainerStats for clients that take the
// list as a stream (CRIListStreaming).
func (s *Service) StreamContainerStats(r *runtime.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtime.StreamContainerStatsResponse]) error {
	return sendInBatches(s.listContainerStats(stream.Context(), r.Filter), func(b []*runtime.ContainerStats) error {
		return stream.Send(&runtime.StreamContainerStatsResponse{ContainerStats: b})
	})
}

func (s *Service) listContainerStats(ctx context.Context, f *runtime.ContainerStatsFilter) []*runtime.ContainerStats {
	out := []*runtime.ContainerStats{}
	for _, info := range s.m.ListContainers() {
		if !matchContainer(f, &info) {
			continue
		}
		cs := s.opts.Stats.Container(ctx, info, false)
		out = append(out, containerStats(&cs))
	}
	return out
}

// statsBatch bounds the items of one streamed message, keeping each well
// below gRPC's default message size limit.
const statsBatch = 100

// sendInBatches sends items in messages of at most statsBatch; an empty
// list is sent as no message at all, which is how a stream says "none".
func sendInBatches[T any](items []T, send func([]T) error) error {
	for len(items) > 0 {
		n := min(len(items), statsBatch)
		if err := send(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

func containerStats(cs *sandbox.ContainerStats) *runtime.ContainerStats {
	i := &cs.Container
	out := &runtime.ContainerStats{
		Attributes: &runtime.ContainerAttributes{
			Id:          i.ID,
			Metadata:    containerMetadata(&i.Config),
			Labels:      copyMap(i.Config.Labels),
			Annotations: copyMap(i.Config.Annotations),
		},
	}
	if u := cs.Usage; u != nil {
		out.Cpu = cpuUsage(u)
		out.Memory = memoryUsage(u)
	}
	if l := cs.WritableLayer; l != nil {
		out.WritableLayer = &runtime.FilesystemUsage{
			Timestamp:  l.Timestamp.UnixNano(),
			FsId:       &runtime.FilesystemIdentifier{Mountpoint: l.Mountpoint},
			UsedBytes:  &runtime.UInt64Value{Value: l.UsedBytes},
			InodesUsed: &runtime.UInt64Value{Value: l.InodesUsed},
		}
	}
	return out
}

func cpuUsage(u *sandbox.Usage) *runtime.CpuUsage {
	c := &runtime.CpuUsage{
		Timestamp:            u.Timestamp.UnixNano(),
		UsageCoreNanoSeconds: &runtime.UInt64Value{Value: u.CPU.UsageNanos},
	}
	if u.NanoCores != nil {
		c.UsageNanoCores = &runtime.UInt64Value{Value: *u.NanoCores}
	}
	return c
}

func memoryUsage(u *sandbox.Usage) *runtime.MemoryUsage {
	m := &u.Memory
	return &runtime.MemoryUsage{
		Timestamp:       u.Timestamp.UnixNano(),
		WorkingSetBytes: &runtime.UInt64Value{Value: m.WorkingSetBytes},
		AvailableBytes:  &runtime.UInt64Value{Value: m.AvailableBytes},
		UsageBytes:      &runtime.UInt64Value{Value: m.UsageBytes},
		RssBytes:        &runtime.UInt64Value{Value: m.RSSBytes},
		PageFaults:      &runtime.UInt64Value{Value: m.PageFaults},
		MajorPageFaults: &runtime.UInt64Value{Value: m.MajorPageFaults},
	}
}
