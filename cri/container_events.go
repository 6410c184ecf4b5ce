package cri

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox"
)

// GetContainerEvents streams container transitions as they happen, each
// with its pod's status and the statuses of the pod's containers right
// after it, for the kubelet's evented PLEG. The pod manager takes that
// state when it applies the transition (sandbox.Event); this only converts
// it, so every subscriber gets the same.
func (s *Service) GetContainerEvents(r *runtime.GetEventsRequest, stream grpc.ServerStreamingServer[runtime.ContainerEventResponse]) error {
	events, cancel := s.m.Subscribe()
	defer cancel()
	// The headers tell the client that its subscription has taken effect:
	// it gets every event from now on.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
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

// containerEvent converts an event. Its CreatedAt is the transition's
// time, which the container's status has too (created_at, started_at or
// finished_at). A DELETED event names the removed container by its id only:
// its statuses are those of the pod's remaining containers, so that a
// consumer never takes the removed one for the current container of its
// name.
func containerEvent(e *sandbox.Event) *runtime.ContainerEventResponse {
	resp := &runtime.ContainerEventResponse{
		ContainerId:        e.Container.ID,
		ContainerEventType: eventType(e.Type),
		CreatedAt:          e.Timestamp,
		PodSandboxStatus:   podStatus(&e.Pod),
	}
	for i := range e.Containers {
		resp.ContainersStatuses = append(resp.ContainersStatuses, containerStatus(&e.Containers[i]))
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
