package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/shim"
	"github.com/warmpod/warmpod/sandbox"
)

// Exec prepares a streaming exec in a running container and returns the
// URL the client connects to; the command starts when it does.
func (s *Service) Exec(ctx context.Context, r *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	if r.ContainerId == "" {
		return nil, invalid("container_id is required")
	}
	if len(r.Cmd) == 0 {
		return nil, invalid("cmd is required")
	}
	if err := checkStreams(r.Stdin, r.Stdout, r.Stderr, r.Tty); err != nil {
		return nil, err
	}
	info, err := s.runningContainer(r.ContainerId)
	if err != nil {
		return nil, err
	}
	streams, err := s.streams()
	if err != nil {
		return nil, err
	}
	return streams.srv.GetExec(&runtime.ExecRequest{
		ContainerId: info.ID, Cmd: r.Cmd, Tty: r.Tty, Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr,
	})
}

// checkStreams validates the streams an Exec or Attach asks for, as
// api.proto defines them.
func checkStreams(stdin, stdout, stderr, tty bool) error {
	if !stdin && !stdout && !stderr {
		return invalid("one of stdin, stdout and stderr must be set")
	}
	if tty && stderr {
		// A terminal carries stdout and stderr as one stream.
		return invalid("tty and stderr cannot both be set")
	}
	return nil
}

// runningContainer returns container id (or id prefix), failing with
// FailedPrecondition unless it runs: a session URL for a container that
// cannot have one would only fail later, where the client sees less.
func (s *Service) runningContainer(id string) (*sandbox.ContainerInfo, error) {
	info, err := s.m.ContainerStatus(id)
	if err != nil {
		return nil, err
	}
	if info.Status.State != shim.StateRunning {
		return nil, errdefs.ErrFailedPrecondition.WithMessage(fmt.Sprintf("container %s is %s, not running", info.ID, info.Status.State))
	}
	return &info, nil
}

func (s *Service) streams() (*StreamServer, error) {
	if s.opts.Streams == nil {
		return nil, errdefs.ErrUnavailable.WithMessage("the streaming server is not running")
	}
	return s.opts.Streams, nil
}
