package service

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/shim"
	shimclient "github.com/warmpod/warmpod/runtime/shim/client"
)

// loggingShim answers StartContainer with a log line through the request's
// logger, and an error of class NotFound.
type loggingShim struct {
	shimv1.UnimplementedShimServer
}

func (loggingShim) StartContainer(ctx context.Context, r *shimv1.ContainerRequest) (*shimv1.ContainerResponse, error) {
	log.G(ctx).WithField("container", r.Id).Info("starting")
	return nil, fmt.Errorf("container %q: %w", r.Id, errdefs.ErrNotFound)
}

// TestRequestID checks that the daemon's request id reaches the shim: the
// client sends it from the context, the shim's interceptor puts it on every
// line the call logs.
func TestRequestID(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	base := logger.WithField("pod", "p1")

	dir := t.TempDir()
	l, err := net.Listen("unix", shim.SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(UnaryInterceptor(base)), grpc.ChainStreamInterceptor(StreamInterceptor(base)))
	shimv1.RegisterShimServer(g, loggingShim{})
	go g.Serve(l)
	t.Cleanup(g.Stop)
	c, err := shimclient.Connect(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	for _, tt := range []struct {
		name, id string
		want     any // the request_id field; nil for none
	}{
		{"with an id", "0123abcd", "0123abcd"},
		{"without one", "", nil},
		{"with an id that is no id", "bad id\n", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hook.Reset()
			ctx := context.Background()
			if tt.id != "" {
				ctx = shim.WithRequestID(ctx, tt.id)
			}
			_, err := c.StartContainer(ctx, &shimv1.ContainerRequest{Id: "c1"})
			if !errdefs.IsNotFound(err) || err.Error() != `container "c1": not found` {
				t.Errorf("err = %v, want the shim's NotFound", err)
			}
			entries := hook.AllEntries()
			if len(entries) != 2 {
				t.Fatalf("%d lines logged, want the handler's and the interceptor's", len(entries))
			}
			for _, e := range entries {
				if e.Data["request_id"] != tt.want || e.Data["rpc"] != "StartContainer" || e.Data["pod"] != "p1" {
					t.Errorf("line %q has fields %v, want request_id %v, rpc StartContainer, pod p1", e.Message, e.Data, tt.want)
				}
			}
		})
	}
}

// The shim takes only ids that look like the daemon's, whoever sends them.
func TestRequestIDFromTheWire(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	dir := t.TempDir()
	l, err := net.Listen("unix", shim.SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(UnaryInterceptor(logrus.NewEntry(logger))))
	shimv1.RegisterShimServer(g, loggingShim{})
	go g.Serve(l)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("unix://"+shim.SocketPath(dir), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for id, want := range map[string]any{"abc-123_X": "abc-123_X", "bad id": nil, "level=error": nil} {
		hook.Reset()
		ctx := metadata.AppendToOutgoingContext(context.Background(), shim.RequestIDKey, id)
		_, _ = shimv1.NewShimClient(conn).StartContainer(ctx, &shimv1.ContainerRequest{Id: "c1"})
		for _, e := range hook.AllEntries() {
			if e.Data["request_id"] != want {
				t.Errorf("id %q: line %q has request_id %v, want %v", id, e.Message, e.Data["request_id"], want)
			}
		}
	}
}
