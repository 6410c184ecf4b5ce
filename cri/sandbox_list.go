package cri

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListPodSandbox lists pods, filtered by id (or id prefix), state and labels.
func (s *Service) ListPodSandbox(ctx context.Context, r *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	f := r.Filter
	resp := &runtime.ListPodSandboxResponse{Items: []*runtime.PodSandbox{}}
	for _, i := range s.m.ListPods() {
		if !matchPod(f, &i) {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != podState(i.State) {
			continue
		}
		resp.Items = append(resp.Items, &runtime.PodSandbox{
			Id:             i.ID,
			Metadata:       podMetadata(&i.Config),
			State:          podState(i.State),
			CreatedAt:      i.CreatedAt,
			Labels:         copyMap(i.Config.Labels),
			Annotations:    copyMap(i.Config.Annotations),
			RuntimeHandler: i.Config.RuntimeHandler,
		})
	}
	return resp, nil
}
