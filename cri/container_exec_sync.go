package cri

import (
	"context"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ExecSync runs a command in a running container and returns its output.
func (s *Service) ExecSync(ctx context.Context, r *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	if r.ContainerId == "" {
		return nil, invalid("container_id is required")
	}
	if len(r.Cmd) == 0 {
		return nil, invalid("cmd is required")
	}
	if r.Timeout < 0 {
		return nil, invalid("timeout must not be negative, got %d", r.Timeout)
	}
	res, err := s.m.ExecSync(ctx, r.ContainerId, r.Cmd, time.Duration(r.Timeout)*time.Second)
	if err != nil {
		return nil, err
	}
	return &runtime.ExecSyncResponse{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, nil
}
