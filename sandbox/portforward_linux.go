package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/containerd/errdefs"

	"github.com/warmpod/warmpod/sandbox/netns"
)

// portForwardDialTimeout bounds the connection to the pod's port.
const portForwardDialTimeout = 10 * time.Second

// PortForward connects stream to TCP port on the loopback address inside
// pod id's network namespace (the node's, for host-network pods) and copies
// data both ways. It returns once the pod's side has closed the connection,
// stream failed, or ctx ended; it does not close stream.
func (m *Manager) PortForward(ctx context.Context, id string, port int32, stream io.ReadWriter) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("port forward: port %d is out of range 1-65535: %w", port, errdefs.ErrInvalidArgument)
	}
	p, err := m.getPod(id)
	if err != nil {
		return err
	}
	if p.Status().State != PodReady {
		return fmt.Errorf("port forward to pod sandbox %s: pod is not ready: %w", p.meta.ID, errdefs.ErrFailedPrecondition)
	}
	nsPath := p.meta.NS.Net
	if p.meta.Config.HostNetwork() {
		nsPath = ""
	}
	conn, err := dialLoopback(ctx, nsPath, int(port))
	if err != nil {
		return fmt.Errorf("port forward to pod sandbox %s port %d: %w", p.meta.ID, port, err)
	}
	return splice(ctx, conn, stream)
}

// dialLoopback connects to port on 127.0.0.1, or ::1 when nothing listens
// there, inside the network namespace pinned at nsPath ("" for the
// node's). The socket is made on a thread that joined the namespace and
// belongs to it for good; the thread itself is thrown away.
func dialLoopback(ctx context.Context, nsPath string, port int) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, portForwardDialTimeout)
	defer cancel()
	dial := func() (net.Conn, error) {
		// One address per call: a dialer given several races them on
		// other goroutines, which would not be inside the namespace.
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			return conn, nil
		}
		if conn6, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", strconv.Itoa(port))); err6 == nil {
			return conn6, nil
		}
		return nil, err
	}
	if nsPath == "" {
		return dial()
	}
	var conn net.Conn
	err := netns.Do(nsPath, func() error {
		var err error
		conn, err = dial()
		return err
	})
	return conn, err
}

// splice copies between conn and stream until conn's peer closes, either
// copy fails or ctx ends, and closes conn. Stream's EOF only half-closes
// conn, so a request-then-response protocol still gets its response.
func splice(ctx context.Context, conn net.Conn, stream io.ReadWriter) error {
	defer conn.Close()
	toPod := make(chan error, 1)
	fromPod := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, stream)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok && err == nil {
			_ = cw.CloseWrite()
		}
		toPod <- err
	}()
	go func() {
		_, err := io.Copy(stream, conn)
		fromPod <- err
	}()
	for {
		select {
		case err := <-fromPod:
			return ignoreClosed(err)
		case err := <-toPod:
			if err != nil {
				conn.Close()
				<-fromPod
				return ignoreClosed(err)
			}
			toPod = nil
		case <-ctx.Done():
			conn.Close()
			<-fromPod
			return nil
		}
	}
}

// ignoreClosed drops the errors a copy sees when the other side ended the
// session: they are how sessions end, not failures.
func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
		return nil
	}
	return err
}
