package cri

import (
	"context"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox"
)

// GetContainerEvents streams container transitions as they happen, each
// with the container's and its pod's status, for the kubelet's evented PLEG.
func (s *Service) GetContainerEvents(r *runtime.GetEventsRequest, stream grpc.ServerStreamingServer[runtime.ContainerEventResponse]) error {
	events, cancel := s.m.Subscribe()
	defer cancel()
	for {
		select {
		case e, ok := <-events:
			if !ok {
				return nil
			}
			if err := stream.Send(s.containerEvent(stream.Context(), &e)); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (s *Service) containerEvent(ctx context.Context, e *sandbox.Event) *runtime.ContainerEventResponse {
	resp := &runtime.ContainerEventResponse{
		ContainerId:        e.Container.ID,
		ContainerEventType: eventType(e.Type),
		CreatedAt:          e.Timestamp,
	}
	if pod, err := s.m.PodStatus(ctx, e.Container.PodID, false); err == nil {
		resp.PodSandboxStatus = podStatus(&pod)
		for _, c := range s.m.PodContainers(pod.ID) {
			resp.ContainersStatuses = append(resp.ContainersStatuses, containerStatus(&c))
		}
	}
	if e.Type == sandbox.EventDeleted {
		// The container is gone from the pod: report its last status alone.
		resp.ContainersStatuses = append(resp.ContainersStatuses, containerStatus(&e.Container))
	}
	return resp
}

func eventType(t sandbox.EventType) runtime.ContainerEventType {
	switch t {
	case sandbox.EventCreated:
		return runtime.ContainerEventType_CONTAINER_CREATED_EVENT
	case sandbox.EventStarted:
		return runtime.ContainerEventType_CONTAINER_STARTED_EVENT
	case sandbox.EventStopped:
		return runtime.ContainerEventType_CONTAINER_STOPPED_EVENT
	}
	return runtime.ContainerEventType_CONTAINER_DELETED_EVENT
}
