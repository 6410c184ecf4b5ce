package cri

import (
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
			if err := stream.Send(containerEvent(&e)); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

// containerEvent converts e, with the snapshot the manager took when it
// applied the transition (never one read at send time, which may show
// later states than the event's).
func containerEvent(e *sandbox.Event) *runtime.ContainerEventResponse {
	resp := &runtime.ContainerEventResponse{
		ContainerId:        e.Container.ID,
		ContainerEventType: eventType(e.Type),
		CreatedAt:          e.Timestamp,
	}
	resp.PodSandboxStatus = podStatus(&e.Pod)
	for _, c := range e.Containers {
		resp.ContainersStatuses = append(resp.ContainersStatuses, containerStatus(&c))
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
