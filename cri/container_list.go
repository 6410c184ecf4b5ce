package cri

import (
	"context"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListContainers lists containers, filtered by id (or id prefix), state,
// pod sandbox and labels.
func (s *Service) ListContainers(ctx context.Context, r *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	f := r.Filter
	resp := &runtime.ListContainersResponse{Containers: []*runtime.Container{}}
	for _, i := range s.m.ListContainers() {
		state := containerState(i.Status.State)
		if f != nil {
			if f.Id != "" && !strings.HasPrefix(i.ID, f.Id) {
				continue
			}
			if f.PodSandboxId != "" && !strings.HasPrefix(i.PodID, f.PodSandboxId) {
				continue
			}
			if f.State != nil && f.State.State != state {
				continue
			}
			if !matchLabels(f.LabelSelector, i.Config.Labels) {
				continue
			}
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
