package cri

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/image"
	"github.com/warmpod/warmpod/sandbox"
	"github.com/warmpod/warmpod/sandbox/network"
)

// emptyNodeImages and emptyNodeNetwork stand in for a node with nothing on
// it: the Manager only asks them about objects it recovers.
type emptyNodeImages struct{}

func (emptyNodeImages) Get(ref string) (image.Image, error) { return image.Image{}, image.ErrNotFound }
func (emptyNodeImages) Retain(id string) (func(), error)    { return nil, image.ErrNotFound }

type emptyNodeNetwork struct{}

func (emptyNodeNetwork) Name() string { return "none" }
func (emptyNodeNetwork) Ready() error { return nil }
func (emptyNodeNetwork) Setup(context.Context, network.Pod) (network.Result, error) {
	return network.Result{}, errors.New("no network in this test")
}
func (emptyNodeNetwork) Teardown(context.Context, network.Pod) error { return nil }

// emptyNodeService returns a Service over a Manager with no pods, whose
// streaming server runs backend.
func emptyNodeService(t *testing.T, backend StreamBackend) *Service {
	t.Helper()
	m, err := sandbox.New(log.WithLogger(context.Background(), quietLog()), sandbox.Options{
		RootDir:  t.TempDir(),
		StateDir: t.TempDir(),
		Images:   emptyNodeImages{},
		Network:  emptyNodeNetwork{},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	opts := Options{Manager: m, Log: quietLog()}
	if backend != nil {
		opts.Streams = startStreamServer(t, backend)
	}
	return New(opts)
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(errgrpc.ToGRPC(err)); got != want {
		t.Errorf("%s: code %s (%v), want %s", what, got, err, want)
	}
}

func TestExecValidation(t *testing.T) {
	s := emptyNodeService(t, &fakeBackend{})
	tests := []struct {
		name string
		req  *runtime.ExecRequest
		want codes.Code
	}{
		{"no container", &runtime.ExecRequest{Cmd: []string{"sh"}, Stdout: true}, codes.InvalidArgument},
		{"no command", &runtime.ExecRequest{ContainerId: "c", Stdout: true}, codes.InvalidArgument},
		{"no stream", &runtime.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}}, codes.InvalidArgument},
		{"tty and stderr", &runtime.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}, Tty: true, Stdout: true, Stderr: true}, codes.InvalidArgument},
		{"unknown container", &runtime.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}, Stdout: true}, codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Exec(context.Background(), tt.req)
			wantCode(t, "Exec", err, tt.want)
		})
	}
}

func TestAttachValidation(t *testing.T) {
	s := emptyNodeService(t, &fakeBackend{})
	tests := []struct {
		name string
		req  *runtime.AttachRequest
		want codes.Code
	}{
		{"no container", &runtime.AttachRequest{Stdout: true}, codes.InvalidArgument},
		{"no stream", &runtime.AttachRequest{ContainerId: "c"}, codes.InvalidArgument},
		{"tty and stderr", &runtime.AttachRequest{ContainerId: "c", Tty: true, Stderr: true}, codes.InvalidArgument},
		{"unknown container", &runtime.AttachRequest{ContainerId: "c", Stdout: true}, codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Attach(context.Background(), tt.req)
			wantCode(t, "Attach", err, tt.want)
		})
	}
}

func TestPortForwardValidation(t *testing.T) {
	s := emptyNodeService(t, &fakeBackend{})
	tests := []struct {
		name string
		req  *runtime.PortForwardRequest
		want codes.Code
	}{
		{"no pod", &runtime.PortForwardRequest{}, codes.InvalidArgument},
		{"port zero", &runtime.PortForwardRequest{PodSandboxId: "p", Port: []int32{80, 0}}, codes.InvalidArgument},
		{"port too large", &runtime.PortForwardRequest{PodSandboxId: "p", Port: []int32{70000}}, codes.InvalidArgument},
		{"unknown pod", &runtime.PortForwardRequest{PodSandboxId: "p", Port: []int32{80}}, codes.NotFound},
		{"unknown pod, no ports", &runtime.PortForwardRequest{PodSandboxId: "p"}, codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.PortForward(context.Background(), tt.req)
			wantCode(t, "PortForward", err, tt.want)
		})
	}
}

func TestStreamingWithoutServer(t *testing.T) {
	s := emptyNodeService(t, nil)
	if _, err := s.streams(); status.Code(errgrpc.ToGRPC(err)) != codes.Unavailable {
		t.Errorf("streams() = %v, want Unavailable", err)
	}
}
