package cri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/containerd/log"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/warmpod/warmpod/sandbox"
)

// DefaultStreamAddress is where the streaming server listens unless
// configured otherwise: a free port on the loopback address, which the
// kubelet on the same node reaches and nothing else does.
const DefaultStreamAddress = "127.0.0.1:0"

// StreamBackend runs the sessions the streaming server accepts; the
// sandbox Manager is one.
type StreamBackend interface {
	Exec(ctx context.Context, id string, cmd []string, sio sandbox.StreamIO) (int, error)
	Attach(ctx context.Context, id string, sio sandbox.StreamIO) error
	PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriter) error
}

// StreamConfig configures the streaming server.
type StreamConfig struct {
	// Addr is host:port to listen on; port 0 picks a free port.
	Addr string
	// IdleTimeout ends a session with no traffic (0: four hours).
	IdleTimeout time.Duration
	Log         *log.Entry
}

// StreamServer serves the URLs that Exec, Attach and PortForward return:
// the kubelet (or crictl) connects to one and upgrades the connection to
// SPDY or WebSocket streams, which the server joins to a session in a
// container or pod.
type StreamServer struct {
	srv  streaming.Server
	http *http.Server
	l    net.Listener
	log  *log.Entry
}

// NewStreamServer listens on cfg.Addr and returns a server for backend's
// sessions. It answers once Serve runs; URLs handed out before point to the
// right place already.
func NewStreamServer(cfg StreamConfig, backend StreamBackend) (*StreamServer, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultStreamAddress
	}
	if cfg.Log == nil {
		cfg.Log = log.L
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("stream server address %q: want host:port: %w", cfg.Addr, err)
	}
	l, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen for streams on %s: %w", cfg.Addr, err)
	}
	sc := streaming.DefaultConfig
	sc.Addr = l.Addr().String()
	// The URLs name the port actually bound, which the library only learns
	// when it listens itself, after handing out URLs may have begun.
	sc.BaseURL = &url.URL{Scheme: "http", Host: sc.Addr}
	if cfg.IdleTimeout > 0 {
		sc.StreamIdleTimeout = cfg.IdleTimeout
	}
	srv, err := streaming.NewServer(sc, &streamRuntime{backend: backend})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("create stream server: %w", err)
	}
	return &StreamServer{
		srv:  srv,
		http: &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second},
		l:    l,
		log:  cfg.Log,
	}, nil
}

// Addr is the address the server listens on.
func (s *StreamServer) Addr() net.Addr { return s.l.Addr() }

// Serve answers connections until Close; it then returns nil.
func (s *StreamServer) Serve() error {
	s.log.WithField("address", s.Addr().String()).Info("serving streams")
	if err := s.http.Serve(s.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve streams: %w", err)
	}
	return nil
}

// Close stops listening and ends every open session.
func (s *StreamServer) Close() error {
	return s.http.Close()
}

// streamRuntime adapts a StreamBackend to the streaming library.
type streamRuntime struct {
	backend StreamBackend
}

var _ streaming.Runtime = (*streamRuntime)(nil)

func (r *streamRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	code, err := r.backend.Exec(ctx, id, cmd, streamIO(ctx, in, out, errOut, tty, resize))
	if err != nil {
		return err
	}
	if code != 0 {
		// The library reports the code to the client only for this
		// error type, matched by type assertion, so it is not wrapped.
		return utilexec.CodeExitError{
			Err:  fmt.Errorf("command %q exited with code %d", strings.Join(cmd, " "), code),
			Code: code,
		}
	}
	return nil
}

func (r *streamRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return r.backend.Attach(ctx, id, streamIO(ctx, in, out, errOut, tty, resize))
}

func (r *streamRuntime) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	return r.backend.PortForward(ctx, podID, port, stream)
}

// streamIO converts the library's streams. The library hands over absent
// streams as nil interfaces of its own types; they stay nil here.
func streamIO(ctx context.Context, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) sandbox.StreamIO {
	sio := sandbox.StreamIO{Stdin: in, Tty: tty}
	if out != nil {
		sio.Stdout = out
	}
	if errOut != nil {
		sio.Stderr = errOut
	}
	if resize != nil {
		sio.Resize = forwardResize(ctx, resize)
	}
	return sio
}

// forwardResize relays terminal sizes until the library closes its channel
// or ctx ends.
func forwardResize(ctx context.Context, in <-chan remotecommand.TerminalSize) <-chan sandbox.TerminalSize {
	out := make(chan sandbox.TerminalSize)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case size, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- sandbox.TerminalSize{Width: size.Width, Height: size.Height}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
