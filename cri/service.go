// Package cri is warmpod's CRI v1 front end: the RuntimeService and
// ImageService the kubelet and crictl talk to, and warmpod's own API beside
// them. It validates requests, translates CRI messages to the sandbox and
// image packages' types and back, and maps errors to gRPC codes, in its
// interceptors only: errors carry their errdefs class from where they are
// made. It makes no system calls of its own.
package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
	"github.com/warmpod/warmpod/runtime/image"
	"github.com/warmpod/warmpod/runtime/metrics"
	"github.com/warmpod/warmpod/runtime/shim"
	"github.com/warmpod/warmpod/sandbox"
)

// Handler describes a runtime handler the service accepts in
// RunPodSandbox (the name a RuntimeClass's handler field gives).
type Handler struct {
	Name string
}

// Options configures the service.
type Options struct {
	Manager  *sandbox.Manager
	Images   *image.Store
	Handlers []Handler
	// Version of warmpod, reported by Version.
	Version string
	// Config is reported verbatim by a verbose Status.
	Config any
	// Log is the base of every request's logger (default: log.L).
	Log *log.Entry
	// Streams serves the URLs Exec, Attach and PortForward return; without
	// it those RPCs fail with Unavailable.
	Streams *StreamServer
	// Stats samples usage for the stats and metrics RPCs (default: a
	// sandbox.Stats of Manager).
	Stats *sandbox.Stats
	// PodCIDR, when set, takes the node's pod CIDR from UpdateRuntimeConfig
	// (the embedded network's UpdatePodCIDR).
	PodCIDR func(cidr string) error
}

// Service implements CRI's RuntimeService and ImageService and warmpod's API.
type Service struct {
	runtime.UnimplementedRuntimeServiceServer
	runtime.UnimplementedImageServiceServer
	warmpodv1.UnimplementedWarmpodServer

	opts   Options
	m      *sandbox.Manager
	images *image.Store
	log    *log.Entry
}

// New returns a Service.
func New(opts Options) *Service {
	if opts.Log == nil {
		opts.Log = log.L
	}
	if opts.Stats == nil && opts.Manager != nil {
		opts.Stats = sandbox.NewStats(opts.Manager)
	}
	if len(opts.Handlers) == 0 {
		opts.Handlers = []Handler{{Name: ""}, {Name: "warmpod"}}
	}
	return &Service{opts: opts, m: opts.Manager, images: opts.Images, log: opts.Log}
}

// Register adds the service to a gRPC server.
func (s *Service) Register(g *grpc.Server) {
	runtime.RegisterRuntimeServiceServer(g, s)
	runtime.RegisterImageServiceServer(g, s)
	warmpodv1.RegisterWarmpodServer(g, s)
}

// UnaryInterceptor gives each request a logger carrying the RPC name and a
// request id (log.G of the request's context; the id also goes to the
// pod's shim, see shim.RequestIDKey), logs the call (Trace for reads,
// Debug for the rest; a failure at Warn), counts it and its latency by
// method and code, and turns errors into gRPC statuses: it is where the
// code of an error is chosen, from the errdefs class the error was given
// where it was made (errgrpc.ToGRPC; context errors become Canceled and
// DeadlineExceeded, unclassed ones Unknown).
func (s *Service) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	rpc := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	ctx, l := s.requestContext(ctx, rpc)
	start := time.Now()
	resp, err := h(ctx, req)
	took := time.Since(start)
	err = errgrpc.ToGRPC(err)
	code := status.Code(err)
	metrics.CRIRequest(rpc, code.String(), took)
	level := log.DebugLevel
	switch {
	case failureWorthAWarning(rpc, code):
		level = log.WarnLevel
	case isRead(rpc):
		level = log.TraceLevel
	}
	if l.Logger.IsLevelEnabled(level) {
		l.WithField("duration", took).WithError(err).Log(level, "request")
	}
	return resp, err
}

// StreamInterceptor is UnaryInterceptor for streaming RPCs.
func (s *Service) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	rpc := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
	ctx, l := s.requestContext(ss.Context(), rpc)
	l.Debug("stream opened")
	start := time.Now()
	err := errgrpc.ToGRPC(h(srv, &loggedStream{ServerStream: ss, ctx: ctx}))
	code := status.Code(err)
	metrics.CRIRequest(rpc, code.String(), time.Since(start))
	level := log.DebugLevel
	if failureWorthAWarning(rpc, code) {
		level = log.WarnLevel
	}
	l.WithError(err).Log(level, "stream closed")
	return err
}

// failureWorthAWarning tells which failed requests are logged at Warn:
// all but a client giving up (Canceled) and a read of an object that is
// gone (NotFound from a status or list call), which the kubelet does in the
// normal course of removing pods.
func failureWorthAWarning(rpc string, code codes.Code) bool {
	switch code {
	case codes.OK, codes.Canceled:
		return false
	case codes.NotFound:
		return !isRead(rpc)
	}
	return true
}

// requestContext gives a request a fresh id and returns its context, which
// carries the id and the request's logger, and that logger.
func (s *Service) requestContext(ctx context.Context, rpc string) (context.Context, *log.Entry) {
	id := requestID()
	l := s.log.WithFields(log.Fields{"rpc": rpc, "request_id": id})
	return log.WithLogger(shim.WithRequestID(ctx, id), l), l
}

type loggedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (l *loggedStream) Context() context.Context { return l.ctx }

// readRPCs are the unary RPCs that change nothing, logged at Trace. They are
// named in full: matching on parts of a name took UpdateRuntimeConfig for
// the RuntimeConfig read.
var readRPCs = map[string]bool{
	"Version":               true,
	"Status":                true,
	"RuntimeConfig":         true,
	"ListPodSandbox":        true,
	"PodSandboxStatus":      true,
	"PodSandboxStats":       true,
	"ListPodSandboxStats":   true,
	"ListContainers":        true,
	"ContainerStatus":       true,
	"ContainerStats":        true,
	"ListContainerStats":    true,
	"ListMetricDescriptors": true,
	"ListPodSandboxMetrics": true,
	"ListImages":            true,
	"ImageStatus":           true,
	"ImageFsInfo":           true,
	"PodStatus":             true,
}

func isRead(rpc string) bool { return readRPCs[rpc] }

func requestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// invalid returns an error of class errdefs.ErrInvalidArgument whose
// message is the formatted text alone.
func invalid(format string, args ...any) error {
	return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf(format, args...))
}
