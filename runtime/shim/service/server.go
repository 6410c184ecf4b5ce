package service

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/shim"
)

// Version is reported by Info; set by the binary at link time.
var Version = "dev"

// server adapts Shim to the Shim gRPC service.
type server struct {
	shimv1.UnimplementedShimServer
	s *Shim
	// shutdown is called once the Shutdown RPC has answered.
	shutdown func()
}

// Register adds the shim service for s to g. onShutdown runs after a
// Shutdown RPC has been answered.
func Register(g *grpc.Server, s *Shim, onShutdown func()) {
	shimv1.RegisterShimServer(g, &server{s: s, shutdown: onShutdown})
}

// UnaryInterceptor returns the shim's interceptor: it gives each call a
// logger (base with the shim RPC's name, and the daemon's request id when
// the call carries one, see shim.RequestIDKey), logs the call at Debug
// (Trace for the reads the daemon polls), and turns errors into gRPC
// statuses carrying their errdefs class, so the daemon can tell NotFound
// from FailedPrecondition: the one place where the shim chooses a code.
func UnaryInterceptor(base *log.Entry) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		rpc := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
		ctx, l := requestContext(ctx, base, rpc)
		start := time.Now()
		resp, err := h(ctx, req)
		level := log.DebugLevel
		if rpc == "Info" || rpc == "ListContainers" {
			level = log.TraceLevel
		}
		if l.Logger.IsLevelEnabled(level) {
			l.WithField("duration", time.Since(start)).WithError(err).Log(level, "request")
		}
		return resp, errgrpc.ToGRPC(err)
	}
}

// StreamInterceptor is UnaryInterceptor for streams.
func StreamInterceptor(base *log.Entry) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		rpc := info.FullMethod[strings.LastIndex(info.FullMethod, "/")+1:]
		ctx, l := requestContext(ss.Context(), base, rpc)
		l.Debug("stream opened")
		err := h(srv, &requestStream{ServerStream: ss, ctx: ctx})
		l.WithError(err).Debug("stream closed")
		return errgrpc.ToGRPC(err)
	}
}

// requestContext returns ctx with the call's logger, and the daemon's
// request id when the call carries a valid one.
func requestContext(ctx context.Context, base *log.Entry, rpc string) (context.Context, *log.Entry) {
	l := base.WithField("rpc", rpc)
	if ids := metadata.ValueFromIncomingContext(ctx, shim.RequestIDKey); len(ids) > 0 && shim.ValidRequestID(ids[0]) {
		l = l.WithField("request_id", ids[0])
		ctx = shim.WithRequestID(ctx, ids[0])
	}
	return log.WithLogger(ctx, l), l
}

type requestStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (r *requestStream) Context() context.Context { return r.ctx }

func (v *server) Info(ctx context.Context, _ *shimv1.InfoRequest) (*shimv1.InfoResponse, error) {
	i := v.s.Info()
	return &shimv1.InfoResponse{
		PodId:                   i.PodID,
		Pid:                     int32(i.Pid),
		PausePid:                int32(i.PausePid),
		Version:                 Version,
		AllContainersRestarting: i.Restarting,
		Resets:                  i.Resets,
		Precreating:             i.Precreating,
	}, nil
}

func (v *server) CreateContainer(ctx context.Context, r *shimv1.CreateContainerRequest) (*shimv1.CreateContainerResponse, error) {
	rec, warm, err := v.s.Create(ctx, &CreateRequest{
		ID:         r.Id,
		Name:       r.Name,
		Spec:       r.Spec,
		Layers:     r.Layers,
		LogPath:    r.LogPath,
		Tty:        r.Tty,
		Stdin:      r.Stdin,
		StdinOnce:  r.StdinOnce,
		StopSignal: int(r.StopSignal),

		TerminationMessagePath: r.TerminationMessagePath,
	})
	if err != nil {
		return nil, err
	}
	return &shimv1.CreateContainerResponse{State: shim.ToProto(rec), Warm: warm}, nil
}

func (v *server) StartContainer(ctx context.Context, r *shimv1.ContainerRequest) (*shimv1.ContainerResponse, error) {
	rec, err := v.s.Start(ctx, r.Id)
	if err != nil {
		return nil, err
	}
	return &shimv1.ContainerResponse{State: shim.ToProto(rec)}, nil
}

func (v *server) StopContainer(ctx context.Context, r *shimv1.StopContainerRequest) (*shimv1.ContainerResponse, error) {
	rec, err := v.s.Stop(ctx, r.Id, time.Duration(r.TimeoutSeconds)*time.Second)
	if err != nil {
		return nil, err
	}
	return &shimv1.ContainerResponse{State: shim.ToProto(rec)}, nil
}

func (v *server) RemoveContainer(ctx context.Context, r *shimv1.ContainerRequest) (*shimv1.RemoveContainerResponse, error) {
	if err := v.s.Remove(ctx, r.Id); err != nil {
		return nil, err
	}
	return &shimv1.RemoveContainerResponse{}, nil
}

func (v *server) ListContainers(ctx context.Context, _ *shimv1.ListContainersRequest) (*shimv1.ListContainersResponse, error) {
	return &shimv1.ListContainersResponse{Containers: toProtos(v.s.List())}, nil
}

func (v *server) ExecSync(ctx context.Context, r *shimv1.ExecSyncRequest) (*shimv1.ExecSyncResponse, error) {
	stdout, stderr, code, err := v.s.ExecSync(ctx, r.Id, r.Cmd, time.Duration(r.TimeoutSeconds)*time.Second)
	if err != nil {
		return nil, err
	}
	return &shimv1.ExecSyncResponse{Stdout: stdout, Stderr: stderr, ExitCode: int32(code)}, nil
}

func (v *server) ReopenLog(ctx context.Context, r *shimv1.ContainerRequest) (*shimv1.ContainerResponse, error) {
	if err := v.s.ReopenLog(r.Id); err != nil {
		return nil, err
	}
	return v.current(r.Id)
}

func (v *server) UpdateResources(ctx context.Context, r *shimv1.UpdateResourcesRequest) (*shimv1.ContainerResponse, error) {
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources, &res); err != nil {
		return nil, fmt.Errorf("parse resources: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if err := v.s.Update(r.Id, &res); err != nil {
		return nil, err
	}
	return v.current(r.Id)
}

// current answers with container id's state as it is now.
func (v *server) current(id string) (*shimv1.ContainerResponse, error) {
	rec, err := v.s.Get(id)
	if err != nil {
		return nil, err
	}
	return &shimv1.ContainerResponse{State: shim.ToProto(rec)}, nil
}

func (v *server) ResetPod(ctx context.Context, _ *shimv1.ResetPodRequest) (*shimv1.ResetPodResponse, error) {
	recs, d, err := v.s.Reset(ctx)
	if err != nil {
		return nil, err
	}
	return &shimv1.ResetPodResponse{Containers: toProtos(recs), DurationNs: d.Nanoseconds()}, nil
}

func (v *server) Events(_ *shimv1.EventsRequest, stream shimv1.Shim_EventsServer) error {
	ch, cancel := v.s.Subscribe()
	defer cancel()
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return nil
			}
			ev := &shimv1.Event{
				Type:      shimv1.EventType(e.Type),
				Container: shim.ToProto(e.Container),
				Timestamp: e.Timestamp,
			}
			if e.Type != shim.EventDeleted {
				ev.Current = shim.ToProto(e.Current)
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (v *server) Stats(context.Context, *shimv1.StatsRequest) (*shimv1.StatsResponse, error) {
	return v.s.Stats(), nil
}

func (v *server) Shutdown(ctx context.Context, _ *shimv1.ShutdownRequest) (*shimv1.ShutdownResponse, error) {
	if err := v.s.Shutdown(ctx); err != nil {
		return nil, err
	}
	if v.shutdown != nil {
		go v.shutdown()
	}
	return &shimv1.ShutdownResponse{}, nil
}

func (v *server) Exec(stream shimv1.Shim_ExecServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return fmt.Errorf("exec stream must begin with start: %w", errdefs.ErrInvalidArgument)
	}
	proc, err := v.s.Exec(start.Id, ExecOptions{Cmd: start.Cmd, Tty: start.Tty, Stdin: start.Stdin})
	if err != nil {
		return err
	}
	defer proc.IO.Close()
	send := &lockedSender{fn: stream.Send}
	var wg sync.WaitGroup
	pump := func(r io.Reader, wrap func([]byte) *shimv1.StreamOutput) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if send.send(wrap(append([]byte(nil), buf[:n]...))) != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	stdout := func(b []byte) *shimv1.StreamOutput {
		return &shimv1.StreamOutput{Kind: &shimv1.StreamOutput_Stdout{Stdout: b}}
	}
	stderr := func(b []byte) *shimv1.StreamOutput {
		return &shimv1.StreamOutput{Kind: &shimv1.StreamOutput_Stderr{Stderr: b}}
	}
	if proc.IO.Console != nil {
		wg.Add(1)
		go pump(proc.IO.Console, stdout)
	} else {
		wg.Add(2)
		go pump(proc.IO.Stdout, stdout)
		go pump(proc.IO.Stderr, stderr)
	}
	go func() {
		for {
			in, err := stream.Recv()
			if err != nil {
				return
			}
			switch k := in.Kind.(type) {
			case *shimv1.StreamInput_Stdin:
				_, _ = proc.IO.Write(k.Stdin)
			case *shimv1.StreamInput_Resize:
				_ = proc.Resize(uint16(k.Resize.Width), uint16(k.Resize.Height))
			case *shimv1.StreamInput_CloseStdin:
				_ = proc.IO.CloseStdin()
			}
		}
	}()
	select {
	case <-proc.Done():
	case <-stream.Context().Done():
		_ = proc.Signal(9)
		<-proc.Done()
		return stream.Context().Err()
	}
	waitOrTimeout(&wg)
	code, _ := proc.Exit()
	return send.send(&shimv1.StreamOutput{Kind: &shimv1.StreamOutput_ExitCode{ExitCode: int32(code)}})
}

func (v *server) Attach(stream shimv1.Shim_AttachServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return fmt.Errorf("attach stream must begin with start: %w", errdefs.ErrInvalidArgument)
	}
	a, err := v.s.Attach(start.Id, start.Stdout, start.Stderr)
	if err != nil {
		return err
	}
	defer a.Detach()
	send := &lockedSender{fn: stream.Send}
	inputDone := make(chan struct{})
	go func() {
		defer close(inputDone)
		for {
			in, err := stream.Recv()
			if err != nil {
				return
			}
			switch k := in.Kind.(type) {
			case *shimv1.StreamInput_Stdin:
				if start.Stdin {
					_ = a.WriteStdin(k.Stdin)
				}
			case *shimv1.StreamInput_Resize:
				_ = a.Resize(uint16(k.Resize.Width), uint16(k.Resize.Height))
			case *shimv1.StreamInput_CloseStdin:
				if start.Stdin {
					_ = a.CloseStdin()
				}
			}
		}
	}()
	stdout, stderr := a.Stdout, a.Stderr
	for stdout != nil || stderr != nil {
		select {
		case b, ok := <-stdout:
			if !ok {
				stdout = nil
				continue
			}
			if err := send.send(&shimv1.StreamOutput{Kind: &shimv1.StreamOutput_Stdout{Stdout: b}}); err != nil {
				return err
			}
		case b, ok := <-stderr:
			if !ok {
				stderr = nil
				continue
			}
			if err := send.send(&shimv1.StreamOutput{Kind: &shimv1.StreamOutput_Stderr{Stderr: b}}); err != nil {
				return err
			}
		case <-a.Exited:
			return nil
		case <-stream.Context().Done():
			return nil
		}
	}
	select {
	case <-a.Exited:
	case <-stream.Context().Done():
	}
	return nil
}

// lockedSender serialises Send on a gRPC stream used by several goroutines.
type lockedSender struct {
	mu sync.Mutex
	fn func(*shimv1.StreamOutput) error
}

func (l *lockedSender) send(o *shimv1.StreamOutput) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fn(o)
}

// toProtos converts records to their wire form.
func toProtos(recs []shim.Record) []*shimv1.ContainerState {
	out := make([]*shimv1.ContainerState, 0, len(recs))
	for _, r := range recs {
		out = append(out, shim.ToProto(r))
	}
	return out
}
