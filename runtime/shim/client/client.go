// Package client starts pod shims and talks to them. It is the daemon's
// side of the shim API (api/shim/v1); what it shares with the shim beyond
// the protocol (the configuration, the files of a pod's state dir) is the
// contract in runtime/shim.
package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/shim"
)

// startTimeout bounds how long a new shim may take to report ready.
const startTimeout = 30 * time.Second

// Client is a connection to one pod's shim, and, from Start or Reconnect, a
// hold on its process (Exited, Stop). Errors it returns carry the errdefs
// class the shim gave them (errors.Is(err, errdefs.ErrNotFound)).
type Client struct {
	shimv1.ShimClient
	conn *grpc.ClientConn
	pid  int
	// proc is the shim process; nil for a client of Connect.
	proc *process
}

// Pid is the shim process's pid, 0 when it is not known.
func (c *Client) Pid() int { return c.pid }

// Start writes cfg to its state dir, starts "binary shim --state DIR" as a
// detached process and connects to it once it reports ready. The shim's own
// output goes to DIR/shim.log.
//
// When place is not nil, the shim waits (shim.PlacedFd) until place has run
// on its pid, before it does anything else: place moves it into a cgroup of
// its own and sets its OOM score, which every process it starts then
// inherits. If place fails, the shim is killed and Start fails.
func Start(ctx context.Context, binary string, cfg *shim.Config, place func(pid int) error) (_ *Client, retErr error) {
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("create shim state dir: %w", err)
	}
	cfg.WaitPlaced = place != nil
	if err := shim.WriteConfig(cfg); err != nil {
		return nil, fmt.Errorf("write shim config: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(cfg.StateDir, shim.LogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open shim log: %w", err)
	}
	defer logf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	cmd := exec.Command(binary, "shim", "--state", cfg.StateDir)
	// The binary may be a sealed copy (/proc/self/fd/N): name the process
	// for ps as what it is.
	cmd.Args[0] = "warmpod"
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.ExtraFiles = []*os.File{readyW} // fd 3: shim.ReadyFd
	var placedW *os.File
	if place != nil {
		placedR, w, err := os.Pipe()
		if err != nil {
			readyW.Close()
			return nil, err
		}
		defer placedR.Close()
		placedW = w
		defer placedW.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, placedR) // fd 4: shim.PlacedFd
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		readyW.Close()
		return nil, fmt.Errorf("start shim: %w", err)
	}
	readyW.Close()
	// Held before anything waits for the child: until then its pid cannot
	// be another process's.
	proc, procErr := openProcess(cmd.Process.Pid)
	// The daemon reaps its shims while it lives; a restarted daemon's shims
	// are reaped by init.
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		if retErr != nil {
			_ = cmd.Process.Kill()
			<-exited
			if proc != nil {
				proc.close()
			}
		}
	}()
	if procErr != nil {
		return nil, procErr
	}

	if place != nil {
		if err := place(cmd.Process.Pid); err != nil {
			return nil, fmt.Errorf("place shim of pod %s: %w", cfg.PodID, err)
		}
		if _, err := placedW.Write([]byte{1}); err != nil {
			return nil, fmt.Errorf("release shim of pod %s: %w", cfg.PodID, err)
		}
	}

	msg := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(readyR).ReadString('\n')
		msg <- strings.TrimSpace(line)
	}()
	select {
	case m := <-msg:
		if m != "ok" {
			if m == "" {
				m = "exited without a word (see " + filepath.Join(cfg.StateDir, shim.LogFile) + ")"
			}
			return nil, fmt.Errorf("shim of pod %s: %s", cfg.PodID, m)
		}
	case <-time.After(startTimeout):
		return nil, fmt.Errorf("shim of pod %s did not start within %s", cfg.PodID, startTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c, err := Connect(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	c.pid = cmd.Process.Pid
	c.proc = proc
	return c, nil
}

// Reconnect connects to the shim serving in stateDir, started by an earlier
// daemon, and holds its process. It fails with ErrGone when that shim does
// not run any more. A shim that runs without its socket cannot be driven
// again: Reconnect kills it and reports it gone.
func Reconnect(ctx context.Context, stateDir string) (*Client, error) {
	proc, err := findProcess(stateDir)
	if err != nil {
		return nil, err
	}
	c, err := Connect(stateDir)
	if err != nil {
		kerr := proc.kill()
		if kerr == nil {
			kerr = proc.wait(ctx)
		}
		proc.close()
		if kerr != nil {
			return nil, fmt.Errorf("%w: %w; killing it: %w", ErrGone, err, kerr)
		}
		return nil, fmt.Errorf("%w: %w; killed it", ErrGone, err)
	}
	c.pid = proc.pid
	c.proc = proc
	return c, nil
}

// Connect connects to the shim serving in stateDir. It does not wait: a
// shim that is gone makes the first call fail with ErrUnavailable. The
// shim's pid is read from its pid file.
func Connect(stateDir string) (*Client, error) {
	sock := shim.SocketPath(stateDir)
	if _, err := os.Stat(sock); err != nil {
		return nil, fmt.Errorf("shim socket %s: %w", sock, err)
	}
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		addr, done, err := shim.SocketAddr(stateDir)
		if err != nil {
			return nil, err
		}
		defer done()
		var d net.Dialer
		return d.DialContext(ctx, "unix", addr)
	}
	conn, err := grpc.NewClient("passthrough:///"+sock,
		grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(requestIDInterceptor, errorInterceptor),
		grpc.WithChainStreamInterceptor(streamRequestIDInterceptor, streamErrorInterceptor),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(shim.MaxMessageSize), grpc.MaxCallSendMsgSize(shim.MaxMessageSize)),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to shim at %s: %w", sock, err)
	}
	return &Client{ShimClient: shimv1.NewShimClient(conn), conn: conn, pid: readPid(stateDir)}, nil
}

// readPid reads the pid file the shim of stateDir wrote once it served.
func readPid(stateDir string) int {
	data, err := os.ReadFile(filepath.Join(stateDir, shim.PidFile))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0
	}
	return pid
}

// Close closes the connection and lets go of the process; the shim keeps
// running.
func (c *Client) Close() error {
	if c.proc != nil {
		c.proc.close()
	}
	return c.conn.Close()
}

// Exited tells whether the shim process has exited (false for a client of
// Connect, which does not hold the process).
func (c *Client) Exited() bool { return c.proc != nil && c.proc.exited() }

// Stop makes sure the shim process is gone: it waits up to grace for it to
// exit (after a Shutdown), then kills it and waits until it has exited or
// ctx ends. A shim that exited already is fine.
func (c *Client) Stop(ctx context.Context, grace time.Duration) error {
	if c.proc == nil {
		return errors.New("stop shim: the client does not hold its process")
	}
	if grace > 0 {
		wctx, cancel := context.WithTimeout(ctx, grace)
		err := c.proc.wait(wctx)
		cancel()
		if err == nil {
			return nil
		}
	}
	if err := c.proc.kill(); err != nil {
		return err
	}
	return c.proc.wait(ctx)
}

// Alive tells whether the shim answers.
func (c *Client) Alive(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := c.Info(ctx, &shimv1.InfoRequest{})
	return err == nil
}

// requestIDInterceptor sends the id of the daemon request the call serves
// (shim.WithRequestID) as metadata, so that the shim logs it too.
func requestIDInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(withRequestID(ctx), method, req, reply, cc, opts...)
}

func streamRequestIDInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(withRequestID(ctx), desc, cc, method, opts...)
}

func withRequestID(ctx context.Context) context.Context {
	if id := shim.RequestID(ctx); shim.ValidRequestID(id) {
		return metadata.AppendToOutgoingContext(ctx, shim.RequestIDKey, id)
	}
	return ctx
}

func errorInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return native(invoker(ctx, method, req, reply, cc, opts...))
}

func streamErrorInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, native(err)
	}
	return nativeStream{s}, nil
}

// nativeStream converts the errors of an open stream's messages as
// errorInterceptor does those of a unary call.
type nativeStream struct{ grpc.ClientStream }

func (s nativeStream) SendMsg(m any) error { return nativeStreamErr(s.ClientStream.SendMsg(m)) }

func (s nativeStream) RecvMsg(m any) error { return nativeStreamErr(s.ClientStream.RecvMsg(m)) }

// nativeStreamErr is native but for io.EOF, a stream's normal end, which
// callers test for with errors.Is and which stays as it is.
func nativeStreamErr(err error) error {
	if errors.Is(err, io.EOF) {
		return err
	}
	return native(err)
}

// native turns a gRPC status back into an errdefs-classed error with the
// shim's message. Only the code and the message cross: the details
// errgrpc.ToGRPC adds for an error that joins several (one per cause, the
// class among them) would come back as extra lines of the message.
func native(err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		err = status.Error(s.Code(), s.Message())
	}
	return errgrpc.ToNative(err)
}
