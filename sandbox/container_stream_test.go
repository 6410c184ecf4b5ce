package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/shim"
	shimclient "github.com/warmpod/warmpod/runtime/shim/client"
)

// fakeShim serves Exec and Attach the way the real shim frames them: it
// echoes stdin to stdout until close_stdin, writes "err" to stderr and ends
// Exec with exitCode. It records what the daemon sent.
type fakeShim struct {
	shimv1.UnimplementedShimServer
	exitCode int32
	// fail, when set, is returned instead of running the session.
	fail error

	// resized, when set, gets a value for every resize recorded.
	resized chan struct{}

	mu      sync.Mutex
	starts  []*shimv1.StreamStart
	resizes []*shimv1.Resize
	closed  bool
}

func (f *fakeShim) session(stream grpc.BidiStreamingServer[shimv1.StreamInput, shimv1.StreamOutput], exit bool) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.starts = append(f.starts, first.GetStart())
	f.mu.Unlock()
	if f.fail != nil {
		return errgrpc.ToGRPC(f.fail)
	}
	for {
		in, err := stream.Recv()
		if err != nil {
			return err
		}
		switch k := in.Kind.(type) {
		case *shimv1.StreamInput_Stdin:
			if err := stream.Send(&shimv1.StreamOutput{Kind: &shimv1.StreamOutput_Stdout{Stdout: k.Stdin}}); err != nil {
				return err
			}
		case *shimv1.StreamInput_Resize:
			f.mu.Lock()
			f.resizes = append(f.resizes, k.Resize)
			f.mu.Unlock()
			if f.resized != nil {
				f.resized <- struct{}{}
			}
		case *shimv1.StreamInput_CloseStdin:
			f.mu.Lock()
			f.closed = true
			f.mu.Unlock()
			if err := stream.Send(&shimv1.StreamOutput{Kind: &shimv1.StreamOutput_Stderr{Stderr: []byte("err")}}); err != nil {
				return err
			}
			if exit {
				return stream.Send(&shimv1.StreamOutput{Kind: &shimv1.StreamOutput_ExitCode{ExitCode: f.exitCode}})
			}
			return nil
		}
	}
}

func (f *fakeShim) Exec(stream grpc.BidiStreamingServer[shimv1.StreamInput, shimv1.StreamOutput]) error {
	return f.session(stream, true)
}

func (f *fakeShim) Attach(stream grpc.BidiStreamingServer[shimv1.StreamInput, shimv1.StreamOutput]) error {
	return f.session(stream, false)
}

// streamManager returns a Manager holding one ready pod "pod1", whose shim
// is f, with a running container "ctr1" (created with stdin and a
// terminal) and an exited one "ctr2".
func streamManager(t *testing.T, f *fakeShim) *Manager {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("unix", shim.SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	shimv1.RegisterShimServer(g, f)
	go g.Serve(l)
	t.Cleanup(g.Stop)
	client, err := shimclient.Connect(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })

	m := testManager()
	m.pods["pod1"] = &pod{meta: podMeta{ID: "pod1"}, status: podStatus{State: PodReady}, shim: client}
	m.ctrs["ctr1"] = &container{
		meta:   containerMeta{ID: "ctr1", PodID: "pod1", Config: ContainerConfig{Stdin: true, Tty: true}},
		status: containerStatus{Record: shim.Record{ID: "ctr1", State: shim.StateRunning}},
	}
	m.ctrs["ctr2"] = &container{
		meta:   containerMeta{ID: "ctr2", PodID: "pod1"},
		status: containerStatus{Record: shim.Record{ID: "ctr2", State: shim.StateExited}},
	}
	return m
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestExec(t *testing.T) {
	f := &fakeShim{exitCode: 3}
	m := streamManager(t, f)
	var stdout, stderr lockedBuffer
	resize := make(chan TerminalSize, 1)
	resize <- TerminalSize{Width: 80, Height: 24}
	code, err := m.Exec(context.Background(), "ctr1", []string{"sh"}, StreamIO{
		Stdin: strings.NewReader("hello"), Stdout: &stdout, Stderr: &stderr, Tty: true, Resize: resize,
	})
	if err != nil {
		t.Fatal(err)
	}
	if code != 3 {
		t.Errorf("exit code = %d, want 3", code)
	}
	if stdout.String() != "hello" || stderr.String() != "err" {
		t.Errorf("stdout %q, stderr %q; want %q, %q", stdout.String(), stderr.String(), "hello", "err")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.starts[0]
	if st.Id != "ctr1" || strings.Join(st.Cmd, " ") != "sh" || !st.Tty || !st.Stdin || !st.Stdout || !st.Stderr {
		t.Errorf("start = %v", st)
	}
	if !f.closed {
		t.Error("stdin EOF did not close the process's stdin")
	}
}

func TestExecDropsUnrequestedOutput(t *testing.T) {
	f := &fakeShim{}
	m := streamManager(t, f)
	var stdout lockedBuffer
	code, err := m.Exec(context.Background(), "ctr1", []string{"true"}, StreamIO{Stdin: strings.NewReader("x"), Stdout: &stdout})
	if err != nil || code != 0 {
		t.Fatalf("Exec = %d, %v", code, err)
	}
	if got := stdout.String(); got != "x" {
		t.Errorf("stdout = %q, want %q", got, "x")
	}
	if st := f.starts[0]; st.Stderr || st.Tty {
		t.Errorf("start = %v, want no stderr and no tty", st)
	}
}

// failingWriter fails every write, as a client that went away does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestExecErrors(t *testing.T) {
	tests := []struct {
		name string
		id   string
		cmd  []string
		sio  StreamIO
		fail error
		want error
	}{
		{"unknown container", "nope", []string{"true"}, StreamIO{}, nil, errdefs.ErrNotFound},
		{"exited container", "ctr2", []string{"true"}, StreamIO{}, nil, errdefs.ErrFailedPrecondition},
		{"empty command", "ctr1", nil, StreamIO{}, nil, errdefs.ErrInvalidArgument},
		{"shim refuses", "ctr1", []string{"true"}, StreamIO{Stdin: strings.NewReader("x")}, fmt.Errorf("gone: %w", errdefs.ErrFailedPrecondition), errdefs.ErrFailedPrecondition},
		{"client gone", "ctr1", []string{"true"}, StreamIO{Stdin: strings.NewReader("x"), Stdout: failingWriter{}}, nil, io.ErrClosedPipe},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := streamManager(t, &fakeShim{fail: tt.fail})
			_, err := m.Exec(context.Background(), tt.id, tt.cmd, tt.sio)
			if !errors.Is(err, tt.want) {
				t.Errorf("Exec = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestExecWithoutExitCode(t *testing.T) {
	m := streamManager(t, &fakeShim{})
	// The fake's Attach framing sends no exit code.
	client := m.pods["pod1"].shim.(*shimclient.Client)
	client.ShimClient = attachAsExec{client.ShimClient}
	_, err := m.Exec(context.Background(), "ctr1", []string{"true"}, StreamIO{Stdin: strings.NewReader("")})
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("Exec = %v, want ErrUnavailable", err)
	}
}

// attachAsExec opens an Attach stream where Exec is asked for.
type attachAsExec struct{ shimv1.ShimClient }

func (a attachAsExec) Exec(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[shimv1.StreamInput, shimv1.StreamOutput], error) {
	return a.Attach(ctx, opts...)
}

func TestAttach(t *testing.T) {
	f := &fakeShim{}
	m := streamManager(t, f)
	var stdout lockedBuffer
	err := m.Attach(context.Background(), "ctr1", StreamIO{Stdin: strings.NewReader("typed"), Stdout: &stdout})
	if err != nil {
		t.Fatal(err)
	}
	if got := stdout.String(); got != "typed" {
		t.Errorf("stdout = %q, want %q", got, "typed")
	}
	// The container's terminal decides tty.
	if st := f.starts[0]; !st.Tty || !st.Stdin || !st.Stdout || st.Stderr {
		t.Errorf("start = %v", st)
	}
}

func TestAttachStdinOnlyEndsAtEOF(t *testing.T) {
	f := &fakeShim{}
	m := streamManager(t, f)
	// The fake never ends the stream by itself while stdin is open; with
	// stdin alone requested, its EOF is what ends the session.
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- m.Attach(context.Background(), "ctr1", StreamIO{Stdin: pr}) }()
	if _, err := pw.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAttachErrors(t *testing.T) {
	tests := []struct {
		name string
		id   string
		sio  StreamIO
		want error
	}{
		{"unknown container", "nope", StreamIO{Stdout: io.Discard}, errdefs.ErrNotFound},
		{"exited container", "ctr2", StreamIO{Stdout: io.Discard}, errdefs.ErrFailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := streamManager(t, &fakeShim{})
			if err := m.Attach(context.Background(), tt.id, tt.sio); !errors.Is(err, tt.want) {
				t.Errorf("Attach = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAttachStdinWithoutContainerStdin(t *testing.T) {
	m := streamManager(t, &fakeShim{})
	c := m.ctrs["ctr1"]
	c.meta.Config.Stdin = false
	err := m.Attach(context.Background(), "ctr1", StreamIO{Stdin: strings.NewReader("x")})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Attach = %v, want ErrInvalidArgument", err)
	}
}

func TestResizeReachesShim(t *testing.T) {
	f := &fakeShim{resized: make(chan struct{}, 2)}
	m := streamManager(t, f)
	resize := make(chan TerminalSize)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := m.Exec(context.Background(), "ctr1", []string{"sh"}, StreamIO{Stdin: pr, Stdout: io.Discard, Tty: true, Resize: resize})
		done <- err
	}()
	resize <- TerminalSize{Width: 100, Height: 40}
	resize <- TerminalSize{Width: 120, Height: 30}
	// Closing stdin ends the fake's session: only once both sizes arrived.
	<-f.resized
	<-f.resized
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.resizes) != 2 || f.resizes[0].Width != 100 || f.resizes[1].Height != 30 {
		t.Errorf("resizes = %v", f.resizes)
	}
}
