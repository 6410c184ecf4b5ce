package cri

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
	"github.com/warmpod/warmpod/runtime/metrics"
	"github.com/warmpod/warmpod/runtime/shim"
	"github.com/warmpod/warmpod/sandbox"
)

// ResetPod restarts every container of a pod in place.
func (s *Service) ResetPod(ctx context.Context, r *warmpodv1.ResetPodRequest) (*warmpodv1.ResetPodResponse, error) {
	if r.PodSandboxId == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	start := time.Now()
	res, err := s.m.ResetPod(ctx, r.PodSandboxId)
	if err != nil {
		return nil, err
	}
	metrics.ResetPodAPI(time.Since(start))
	resp := &warmpodv1.ResetPodResponse{DurationNs: res.Duration.Nanoseconds()}
	for _, c := range res.Containers {
		resp.Containers = append(resp.Containers, warmpodStatus(&c))
	}
	return resp, nil
}

// PodStatus reports warmpod's view of a pod.
func (s *Service) PodStatus(ctx context.Context, r *warmpodv1.PodStatusRequest) (*warmpodv1.PodStatusResponse, error) {
	if r.PodSandboxId == "" {
		return nil, invalid("pod_sandbox_id is required")
	}
	info, err := s.m.PodStatus(ctx, r.PodSandboxId, true)
	if err != nil {
		return nil, err
	}
	resp := &warmpodv1.PodStatusResponse{
		PodSandboxId:            info.ID,
		AllContainersRestarting: info.Restarting,
		Resets:                  info.Resets,
		ShimPid:                 int32(info.ShimPid),
		Precreating:             info.Precreating,
	}
	containers := info.Live
	if containers == nil {
		containers = s.m.PodContainers(info.ID)
	}
	for _, c := range containers {
		resp.Containers = append(resp.Containers, warmpodStatus(&c))
	}
	return resp, nil
}

// ImportImage loads an image tarball from a path on the node.
func (s *Service) ImportImage(ctx context.Context, r *warmpodv1.ImportImageRequest) (*warmpodv1.ImportImageResponse, error) {
	if r.Path == "" || !filepath.IsAbs(r.Path) {
		return nil, invalid("path must be an absolute path on the node, got %q", r.Path)
	}
	f, err := os.Open(r.Path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, invalid("image archive %s does not exist", r.Path)
		}
		return nil, fmt.Errorf("open image archive: %w", err)
	}
	defer f.Close()
	imgs, err := s.images.Import(ctx, f)
	if err != nil {
		return nil, err
	}
	resp := &warmpodv1.ImportImageResponse{}
	for _, img := range imgs {
		name := img.ID
		if len(img.RepoTags) > 0 {
			name = img.RepoTags[0]
		}
		resp.Images = append(resp.Images, name)
	}
	return resp, nil
}

func warmpodStatus(c *sandbox.ContainerInfo) *warmpodv1.ContainerStatus {
	st := &warmpodv1.ContainerStatus{
		Id:           c.ID,
		Name:         c.Config.Name,
		State:        containerState(c.Status.State).String(),
		RestartCount: c.Status.RestartCount,
		StartedAt:    c.Status.StartedAt,
		ExitCode:     c.Status.ExitCode,
		Warm:         c.Status.Warm,
		FromWarm:     c.Status.FromWarm,

		ReadyGenerations: c.Status.ReadyGenerations,
		Precreating:      c.Status.Precreating,
	}
	if t := c.Status.LastTermination; t != nil {
		st.LastTermination = termination(t)
	}
	return st
}

func termination(t *shim.Termination) *warmpodv1.Termination {
	return &warmpodv1.Termination{ExitCode: t.ExitCode, StartedAt: t.StartedAt, FinishedAt: t.FinishedAt, Reason: t.Reason}
}
