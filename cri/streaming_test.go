package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/warmpod/warmpod/sandbox"
)

// fakeBackend runs sessions in memory: Exec and Attach echo stdin to
// stdout and write "e" to stderr; PortForward answers "pong:" and the
// request. It records what it was asked.
type fakeBackend struct {
	code int
	err  error

	mu      sync.Mutex
	ids     []string
	cmds    [][]string
	sizes   []sandbox.TerminalSize
	ttys    []bool
	streams []string // which of stdin, stdout, stderr a session got
}

func (f *fakeBackend) record(id string, cmd []string, sio sandbox.StreamIO) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids = append(f.ids, id)
	f.cmds = append(f.cmds, cmd)
	f.ttys = append(f.ttys, sio.Tty)
	var s []string
	for name, ok := range map[string]bool{"stdin": sio.Stdin != nil, "stdout": sio.Stdout != nil, "stderr": sio.Stderr != nil} {
		if ok {
			s = append(s, name)
		}
	}
	slices.Sort(s)
	f.streams = append(f.streams, strings.Join(s, ","))
}

func (f *fakeBackend) session(sio sandbox.StreamIO) error {
	if sio.Tty && sio.Resize != nil {
		// A terminal session here waits for one size, then ends.
		size := <-sio.Resize
		f.mu.Lock()
		f.sizes = append(f.sizes, size)
		f.mu.Unlock()
		return nil
	}
	if sio.Stdin != nil && sio.Stdout != nil {
		if _, err := io.Copy(sio.Stdout, sio.Stdin); err != nil {
			return err
		}
	}
	if sio.Stderr != nil {
		if _, err := io.WriteString(sio.Stderr, "e"); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeBackend) Exec(ctx context.Context, id string, cmd []string, sio sandbox.StreamIO) (int, error) {
	f.record(id, cmd, sio)
	if f.err != nil {
		return 0, f.err
	}
	return f.code, f.session(sio)
}

func (f *fakeBackend) Attach(ctx context.Context, id string, sio sandbox.StreamIO) error {
	f.record(id, nil, sio)
	if f.err != nil {
		return f.err
	}
	return f.session(sio)
}

func (f *fakeBackend) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriter) error {
	f.record(fmt.Sprintf("%s:%d", podID, port), nil, sandbox.StreamIO{})
	if f.err != nil {
		return f.err
	}
	req, err := io.ReadAll(stream)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stream, "pong:%s", req)
	return err
}

func quietLog() *logrus.Entry {
	log := logrus.New()
	log.SetOutput(io.Discard)
	return logrus.NewEntry(log)
}

func startStreamServer(t *testing.T, b StreamBackend) *StreamServer {
	t.Helper()
	s, err := NewStreamServer(StreamConfig{Addr: "127.0.0.1:0", Log: quietLog()}, b)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s
}

// spdyConnect upgrades a connection to rawURL, asking for protocol.
func spdyConnect(t *testing.T, rawURL, protocol string) httpstream.Connection {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := spdy.NewRoundTripper(nil)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, u.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(httpstream.HeaderProtocolVersion, protocol)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := rt.NewConnection(resp)
	if err != nil {
		t.Fatalf("upgrade: %v (status %s)", err, resp.Status)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func newStream(t *testing.T, conn httpstream.Connection, kv ...string) httpstream.Stream {
	t.Helper()
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	s, err := conn.CreateStream(h)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// execStatus is the part of the v4 status object the tests look at.
type execStatus struct {
	Status  string `json:"status"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Details struct {
		Causes []struct {
			Type    string `json:"reason"`
			Message string `json:"message"`
		} `json:"causes"`
	} `json:"details"`
}

// session runs a remote command session as kubectl would (protocol v4):
// stdin is sent and closed, and the output and final status collected.
func session(t *testing.T, rawURL string, stdin string, stdout, stderr bool) (string, string, execStatus) {
	t.Helper()
	conn := spdyConnect(t, rawURL, "v4.channel.k8s.io")
	errStream := newStream(t, conn, "streamType", "error")
	in := newStream(t, conn, "streamType", "stdin")
	var out, errOut httpstream.Stream
	if stdout {
		out = newStream(t, conn, "streamType", "stdout")
	}
	if stderr {
		errOut = newStream(t, conn, "streamType", "stderr")
	}
	// A session may end before it reads stdin (the backend failed): the
	// write can fail then, and the status says why.
	_, _ = io.WriteString(in, stdin)
	in.Close()
	// The streams are read at once, as real clients do: the connection
	// delivers frames in order, so a stream nobody reads holds up the rest.
	var wg sync.WaitGroup
	read := func(s httpstream.Stream, into *string) {
		if s == nil {
			return
		}
		wg.Go(func() {
			b, err := io.ReadAll(s)
			if err != nil {
				t.Errorf("read stream: %v", err)
			}
			*into = string(b)
		})
	}
	var o, e, raw string
	read(out, &o)
	read(errOut, &e)
	read(errStream, &raw)
	wg.Wait()
	var st execStatus
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &st); err != nil {
			t.Fatalf("status %q: %v", raw, err)
		}
	}
	return o, e, st
}

func TestStreamExec(t *testing.T) {
	tests := []struct {
		name       string
		code       int
		err        error
		wantStatus string
		wantCause  string
	}{
		{"success", 0, nil, "Success", ""},
		{"exit code", 3, nil, "Failure", "3"},
		{"backend error", 0, errors.New("shim gone"), "Failure", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &fakeBackend{code: tt.code, err: tt.err}
			s := startStreamServer(t, b)
			resp, err := s.srv.GetExec(&runtime.ExecRequest{ContainerId: "c1", Cmd: []string{"cat"}, Stdin: true, Stdout: true, Stderr: true})
			if err != nil {
				t.Fatal(err)
			}
			// The URL names the port actually bound.
			if u, _ := url.Parse(resp.Url); u.Host != s.Addr().String() {
				t.Errorf("URL %s, want host %s", resp.Url, s.Addr())
			}
			stdout, stderr, st := session(t, resp.Url, "hi", true, true)
			if st.Status != tt.wantStatus {
				t.Errorf("status = %+v, want %s", st, tt.wantStatus)
			}
			if tt.wantCause != "" && (len(st.Details.Causes) != 1 || st.Details.Causes[0].Message != tt.wantCause) {
				t.Errorf("causes = %+v, want exit code %s", st.Details.Causes, tt.wantCause)
			}
			if tt.err == nil && (stdout != "hi" || stderr != "e") {
				t.Errorf("stdout %q, stderr %q", stdout, stderr)
			}
			if tt.err != nil && !strings.Contains(st.Message, "shim gone") {
				t.Errorf("message = %q, want the backend's error", st.Message)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.ids[0] != "c1" || strings.Join(b.cmds[0], " ") != "cat" || b.streams[0] != "stderr,stdin,stdout" {
				t.Errorf("backend got %v %v %v", b.ids, b.cmds, b.streams)
			}
		})
	}
}

func TestStreamExecOnlyRequestedStreams(t *testing.T) {
	b := &fakeBackend{}
	s := startStreamServer(t, b)
	resp, err := s.srv.GetExec(&runtime.ExecRequest{ContainerId: "c1", Cmd: []string{"cat"}, Stdin: true, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	stdout, _, st := session(t, resp.Url, "x", true, false)
	if st.Status != "Success" || stdout != "x" {
		t.Errorf("status %+v, stdout %q", st, stdout)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.streams[0] != "stdin,stdout" {
		t.Errorf("backend got streams %q, want stdin and stdout only", b.streams[0])
	}
}

func TestStreamTerminalResize(t *testing.T) {
	b := &fakeBackend{}
	s := startStreamServer(t, b)
	resp, err := s.srv.GetExec(&runtime.ExecRequest{ContainerId: "c1", Cmd: []string{"sh"}, Stdin: true, Stdout: true, Tty: true})
	if err != nil {
		t.Fatal(err)
	}
	conn := spdyConnect(t, resp.Url, "v4.channel.k8s.io")
	errStream := newStream(t, conn, "streamType", "error")
	newStream(t, conn, "streamType", "stdin")
	newStream(t, conn, "streamType", "stdout")
	resize := newStream(t, conn, "streamType", "resize")
	if err := json.NewEncoder(resize).Encode(map[string]uint16{"Width": 132, "Height": 43}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(errStream); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.sizes) != 1 || b.sizes[0] != (sandbox.TerminalSize{Width: 132, Height: 43}) || !b.ttys[0] {
		t.Errorf("sizes %v, tty %v", b.sizes, b.ttys)
	}
}

func TestStreamAttach(t *testing.T) {
	b := &fakeBackend{}
	s := startStreamServer(t, b)
	resp, err := s.srv.GetAttach(&runtime.AttachRequest{ContainerId: "c1", Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, st := session(t, resp.Url, "typed", true, true)
	if st.Status != "Success" || stdout != "typed" || stderr != "e" {
		t.Errorf("status %+v, stdout %q, stderr %q", st, stdout, stderr)
	}
}

func TestStreamPortForward(t *testing.T) {
	b := &fakeBackend{}
	s := startStreamServer(t, b)
	resp, err := s.srv.GetPortForward(&runtime.PortForwardRequest{PodSandboxId: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	conn := spdyConnect(t, resp.Url, "portforward.k8s.io")
	errStream := newStream(t, conn, "streamType", "error", "port", "8080", "requestID", "0")
	data := newStream(t, conn, "streamType", "data", "port", "8080", "requestID", "0")
	if _, err := io.WriteString(data, "ping"); err != nil {
		t.Fatal(err)
	}
	data.Close()
	reply, err := io.ReadAll(data)
	if err != nil {
		t.Fatal(err)
	}
	if string(reply) != "pong:ping" {
		t.Errorf("reply = %q, want %q", reply, "pong:ping")
	}
	if msg, _ := io.ReadAll(errStream); len(msg) != 0 {
		t.Errorf("error stream = %q", msg)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ids[0] != "p1:8080" {
		t.Errorf("backend got %v, want pod p1 port 8080", b.ids)
	}
}

func TestStreamUnknownToken(t *testing.T) {
	s := startStreamServer(t, &fakeBackend{})
	resp, err := http.Post("http://"+s.Addr().String()+"/exec/nope", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("status = %s, want 404", resp.Status)
	}
}

func TestNewStreamServerBadAddress(t *testing.T) {
	for _, addr := range []string{"nope", "127.0.0.1:99999", "256.0.0.1:0"} {
		if s, err := NewStreamServer(StreamConfig{Addr: addr}, &fakeBackend{}); err == nil {
			s.Close()
			t.Errorf("NewStreamServer(%q) succeeded", addr)
		}
	}
}

func TestStreamServerClose(t *testing.T) {
	s, err := NewStreamServer(StreamConfig{Log: quietLog()}, &fakeBackend{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.Addr().String(), "127.0.0.1:") {
		t.Errorf("default address = %s, want loopback", s.Addr())
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
}
