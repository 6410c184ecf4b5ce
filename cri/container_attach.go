package cri

import (
	"context"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Attach prepares a streaming attach to a running container's own stdio
// and returns the URL the client connects to.
func (s *Service) Attach(ctx context.Context, r *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	if r.ContainerId == "" {
		return nil, invalid("container_id is required")
	}
	if err := checkStreams(r.Stdin, r.Stdout, r.Stderr, r.Tty); err != nil {
		return nil, err
	}
	info, err := s.runningContainer(r.ContainerId)
	if err != nil {
		return nil, err
	}
	if r.Stdin && !info.Config.Stdin {
		return nil, invalid("stdin is set, but container %s was created without stdin", info.ID)
	}
	streams, err := s.streams()
	if err != nil {
		return nil, err
	}
	// The container's own terminal decides tty, whatever the request says.
	return streams.srv.GetAttach(&runtime.AttachRequest{
		ContainerId: info.ID, Tty: info.Config.Tty, Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr && !info.Config.Tty,
	})
}
