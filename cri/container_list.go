package cri

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListContainers lists containers, filtered by id (or id prefix), state,
// pod sandbox and labels.
func (s *Service) ListContainers(ctx context.Context, r *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	f := r.Filter
	resp := &runtime.ListContainersResponse{Containers: []*runtime.Container{}}
	for _, i := range s.m.ListContainers() {
		state := containerState(i.Status.State)
		if !matchContainer(f, &i) {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != state {
			continue
		}
		resp.Containers = append(resp.Containers, &runtime.Container{
			Id:           i.ID,
			PodSandboxId: i.PodID,
			Metadata:     containerMetadata(&i.Config),
			Image:        &runtime.ImageSpec{Image: i.ImageName, UserSpecifiedImage: i.Config.Image},
			ImageRef:     i.ImageID,
			ImageId:      i.ImageID,
			State:        state,
			CreatedAt:    i.CreatedAt,
			Labels:       copyMap(i.Config.Labels),
			Annotations:  copyMap(i.Config.Annotations),
		})
	}
	return resp, nil
}
