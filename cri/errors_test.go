package cri

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/image"
	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/sandbox/cgroup"
	"github.com/warmpod/warmpod/sandbox/network"
)

// failingRuntime answers Version with err.
type failingRuntime struct {
	runtime.UnimplementedRuntimeServiceServer
	err error
}

func (f *failingRuntime) Version(context.Context, *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return nil, f.err
}

// dial serves rt through s's interceptors on an in-memory connection and
// returns a client of it: what a client sees is what crosses the wire.
func dial(t *testing.T, s *Service, rt runtime.RuntimeServiceServer) runtime.RuntimeServiceClient {
	t.Helper()
	l := bufconn.Listen(1 << 20)
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(s.UnaryInterceptor), grpc.ChainStreamInterceptor(s.StreamInterceptor))
	runtime.RegisterRuntimeServiceServer(g, rt)
	go g.Serve(l)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return l.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtime.NewRuntimeServiceClient(conn)
}

// wantStatus fails unless err is a status with code whose message is want.
func wantStatus(t *testing.T, err error, code codes.Code, want string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code || st.Message() != want {
		t.Errorf("got %v, want %s %q", err, code, want)
	}
}

// TestErrorCodes checks, class by class, the code and message a client gets
// for errors as the packages that detect them make them: the code comes
// from the errdefs class alone, chosen once, in the interceptor.
func TestErrorCodes(t *testing.T) {
	s := New(Options{Log: quietLog()})
	_, swapErr := oci.LinuxResources(&oci.Resources{MemoryLimitInBytes: 2 << 20, MemorySwapLimitInBytes: 1 << 20}, &oci.Host{})
	_, streamsErr := s.streams()
	tests := []struct {
		name string
		err  error
		code codes.Code
		want string
	}{
		{"a missing field", invalid("config.metadata.name is required"), codes.InvalidArgument,
			"config.metadata.name is required"},
		{"a bad limit", fmt.Errorf("update resources of container c1: %w", swapErr), codes.InvalidArgument,
			"update resources of container c1: memory_swap_limit_in_bytes 1048576 is below memory_limit_in_bytes 2097152 (it counts memory plus swap)"},
		{"a bad image reference", fmt.Errorf("parse image reference %q: %w", "UPPER", image.ErrInvalidReference), codes.InvalidArgument,
			`parse image reference "UPPER": invalid image reference`},
		{"an image not pulled", fmt.Errorf("image %q of container %q: %w", "busybox:1", "main", fmt.Errorf("image %q: %w", "busybox:1", image.ErrNotFound)), codes.NotFound,
			`image "busybox:1" of container "main": image "busybox:1": image not found`},
		{"an unknown container", fmt.Errorf("container %q: %w", "c1", errdefs.ErrNotFound), codes.NotFound,
			`container "c1": not found`},
		{"a name in use", fmt.Errorf("name %q is reserved by %s: %w", "main", "c1", errdefs.ErrAlreadyExists), codes.AlreadyExists,
			`name "main" is reserved by c1: already exists`},
		{"a host port in use", fmt.Errorf("set up network of pod p1: host port 80/tcp: %w (pod %q)", network.ErrPortConflict, "p0"), codes.FailedPrecondition,
			`set up network of pod p1: host port 80/tcp: host port already mapped by another pod (pod "p0")`},
		{"a busy cgroup", fmt.Errorf("delete cgroup /p1: %w (pids [7])", cgroup.ErrNotEmpty), codes.FailedPrecondition,
			"delete cgroup /p1: cgroup still has processes (pids [7])"},
		{"a shim's answer", fmt.Errorf("start container c1: %w", errgrpc.ToNative(status.Error(codes.FailedPrecondition, `container "c1" is exited: failed precondition`))), codes.FailedPrecondition,
			`start container c1: container "c1" is exited: failed precondition`},
		{"an unusable CNI configuration", fmt.Errorf("set up network of pod p1: %w: %s: unexpected end of JSON input", network.ErrCNIConfig, "/etc/cni/net.d/00-broken.conflist"), codes.FailedPrecondition,
			"set up network of pod p1: unusable CNI configuration: /etc/cni/net.d/00-broken.conflist: unexpected end of JSON input"},
		{"an exhausted subnet", fmt.Errorf("allocate IP for pod p1: %w", network.ErrNoAddresses), codes.ResourceExhausted,
			"allocate IP for pod p1: no free pod IP address"},
		{"no streaming server", streamsErr, codes.Unavailable, "the streaming server is not running"},
		{"a deadline", fmt.Errorf("exec in container c1: %w", context.DeadlineExceeded), codes.DeadlineExceeded,
			"exec in container c1: context deadline exceeded"},
		{"a cancel", fmt.Errorf("pull busybox:1: %w", context.Canceled), codes.Canceled, "pull busybox:1: context canceled"},
		{"no class", fmt.Errorf("write hosts of pod p1: %w", errors.New("disk full")), codes.Unknown, "write hosts of pod p1: disk full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dial(t, s, &failingRuntime{err: tt.err}).Version(context.Background(), &runtime.VersionRequest{})
			wantStatus(t, err, tt.code, tt.want)
		})
	}
}

// TestRPCErrorCodes drives real handlers over the wire.
func TestRPCErrorCodes(t *testing.T) {
	s := emptyNodeService(t, nil)
	c := dial(t, s, s)
	ctx := context.Background()
	_, err := c.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: "p1"})
	wantStatus(t, err, codes.InvalidArgument, "config is required")
	_, err = c.UpdateContainerResources(ctx, &runtime.UpdateContainerResourcesRequest{
		ContainerId: "c1", Linux: &runtime.LinuxContainerResources{CpusetCpus: "3-1"},
	})
	wantStatus(t, err, codes.InvalidArgument, `update resources of container c1: cpuset_cpus "3-1" is not a list of numbers and ranges such as "0-3,6"`)
	_, err = c.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: "c1"})
	wantStatus(t, err, codes.NotFound, `container "c1": not found`)
	_, err = c.UpdatePodSandboxResources(ctx, &runtime.UpdatePodSandboxResourcesRequest{PodSandboxId: "p1", Resources: &runtime.LinuxContainerResources{}})
	wantStatus(t, err, codes.NotFound, `pod sandbox "p1": not found`)
	// api.proto: stopping or removing what is not there succeeds.
	if _, err := c.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: "c1"}); err != nil {
		t.Errorf("StopContainer of an unknown id: %v", err)
	}
}
