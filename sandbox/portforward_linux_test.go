package sandbox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/warmpod/warmpod/internal/testutil"
	"github.com/warmpod/warmpod/sandbox/netns"
)

// reqStream is the client's side of a forwarded connection: it sends req,
// then EOF, and collects what comes back.
type reqStream struct {
	r   io.Reader
	out bytes.Buffer
}

func (s *reqStream) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *reqStream) Write(p []byte) (int, error) { return s.out.Write(p) }

// serveOnce accepts one connection on l, reads it to EOF and answers
// "pong:" and what it read, then closes it.
func serveOnce(t *testing.T, l net.Listener) {
	t.Helper()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, _ := io.ReadAll(c)
		_, _ = c.Write(append([]byte("pong:"), req...))
	}()
}

func TestSpliceHalfCloses(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	serveOnce(t, l)
	conn, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := &reqStream{r: strings.NewReader("ping")}
	// The server answers only after the request's EOF: a splice that did
	// not pass the EOF on would wait forever.
	if err := splice(context.Background(), conn, s); err != nil {
		t.Fatal(err)
	}
	if got := s.out.String(); got != "pong:ping" {
		t.Errorf("response = %q, want %q", got, "pong:ping")
	}
}

func TestSpliceEndsWithContext(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	conn, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	defer peer.Close()
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- splice(ctx, conn, &reqStream{r: pr}) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("splice = %v, want nil after the context ended", err)
	}
}

func TestPortForwardErrors(t *testing.T) {
	m := testManager()
	m.pods["ready"] = &pod{meta: podMeta{ID: "ready"}, status: podStatus{State: PodReady}}
	m.pods["stopped"] = &pod{meta: podMeta{ID: "stopped"}, status: podStatus{State: PodNotReady}}
	tests := []struct {
		name string
		pod  string
		port int32
		want error
	}{
		{"unknown pod", "nope", 80, errdefs.ErrNotFound},
		{"port zero", "ready", 0, errdefs.ErrInvalidArgument},
		{"port too large", "ready", 65536, errdefs.ErrInvalidArgument},
		{"pod not ready", "stopped", 80, errdefs.ErrFailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := m.PortForward(context.Background(), tt.pod, tt.port, &reqStream{r: strings.NewReader("")})
			if !errors.Is(err, tt.want) {
				t.Errorf("PortForward = %v, want %v", err, tt.want)
			}
		})
	}
}

// podNetNS pins a fresh network namespace for the test and removes it after.
func podNetNS(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t, "it creates a network namespace")
	dir := filepath.Join(t.TempDir(), "ns")
	paths, err := netns.Create(dir, netns.Options{Net: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Remove(dir); err != nil {
			t.Errorf("remove namespace: %v", err)
		}
	})
	return paths.Net
}

// listenIn listens on addr inside the namespace at nsPath.
func listenIn(t *testing.T, nsPath, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := netns.Do(nsPath, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestPortForwardIntoPodNamespace(t *testing.T) {
	nsPath := podNetNS(t)
	tests := []struct {
		name, network, addr string
	}{
		{"ipv4 loopback", "tcp4", "127.0.0.1:0"},
		{"ipv6 loopback only", "tcp6", "[::1]:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := listenIn(t, nsPath, tt.network, tt.addr)
			serveOnce(t, l)
			port := int32(l.Addr().(*net.TCPAddr).Port)

			m := testManager()
			m.pods["p"] = &pod{meta: podMeta{ID: "p", NS: netns.Paths{Net: nsPath}}, status: podStatus{State: PodReady}}
			s := &reqStream{r: strings.NewReader("ping")}
			if err := m.PortForward(context.Background(), "p", port, s); err != nil {
				t.Fatal(err)
			}
			if got := s.out.String(); got != "pong:ping" {
				t.Errorf("response = %q, want %q", got, "pong:ping")
			}
		})
	}
}

func TestPortForwardStaysInPodNamespace(t *testing.T) {
	nsPath := podNetNS(t)
	// A port open on the node's loopback is not the pod's.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if _, err := dialLoopback(context.Background(), nsPath, port); err == nil {
		t.Fatalf("dial port %d in the pod reached the node's listener", port)
	}
	conn, err := dialLoopback(context.Background(), "", port)
	if err != nil {
		t.Fatalf("dial on the node: %v", err)
	}
	conn.Close()
}
