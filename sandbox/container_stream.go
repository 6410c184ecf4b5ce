package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/containerd/errdefs"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/shim"
)

// TerminalSize is a terminal's size in character cells.
type TerminalSize struct {
	Width, Height uint16
}

// StreamIO is the client's end of an Exec or Attach session. A nil Stdin,
// Stdout or Stderr is a stream the client did not ask for.
type StreamIO struct {
	// Stdin is read until EOF, which then closes the process's stdin.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Tty    bool
	// Resize delivers terminal size changes; nil without a terminal.
	Resize <-chan TerminalSize
}

// stdinChunk bounds one stdin message to the shim.
const stdinChunk = 32 << 10

// shimStream is the part of the shim's Exec and Attach client streams a
// session uses.
type shimStream interface {
	Send(*shimv1.StreamInput) error
	Recv() (*shimv1.StreamOutput, error)
}

// Exec runs cmd in running container id with its stdio joined to sio and
// returns the process's exit code (128+signal when killed) once it has
// exited and all of its output has been written to sio. Ending ctx kills the
// process.
func (m *Manager) Exec(ctx context.Context, id string, cmd []string, sio StreamIO) (int, error) {
	if len(cmd) == 0 {
		return 0, fmt.Errorf("exec: cmd is empty: %w", errdefs.ErrInvalidArgument)
	}
	c, client, err := m.runningContainer(id)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", c.meta.ID, err)
	}
	s := newSession(stream, sio)
	if err := s.start(&shimv1.StreamStart{
		Id: c.meta.ID, Cmd: cmd, Tty: sio.Tty,
		Stdin: sio.Stdin != nil, Stdout: sio.Stdout != nil, Stderr: sio.Stderr != nil,
	}); err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", c.meta.ID, err)
	}
	go s.pumpResize(ctx)
	if sio.Stdin != nil {
		go s.pumpStdin(nil)
	}
	code, exited, err := s.receive()
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", c.meta.ID, err)
	}
	if !exited {
		return 0, fmt.Errorf("exec in container %s: the shim ended the stream without an exit code: %w", c.meta.ID, errdefs.ErrUnavailable)
	}
	return code, nil
}

// Attach joins sio to running container id's own stdio. Output written
// before the call is not replayed (it is in the log). Stdin EOF closes the
// container's stdin when it was created with stdin_once; the session lasts
// until the container exits, ctx ends or sio's output cannot be written,
// and, when the client asked for stdin alone, until stdin ends.
func (m *Manager) Attach(ctx context.Context, id string, sio StreamIO) error {
	c, client, err := m.runningContainer(id)
	if err != nil {
		return err
	}
	if sio.Stdin != nil && !c.meta.Config.Stdin {
		return fmt.Errorf("attach to container %s: stdin requested, but the container was created without stdin: %w", c.meta.ID, errdefs.ErrInvalidArgument)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Attach(ctx)
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", c.meta.ID, err)
	}
	s := newSession(stream, sio)
	if err := s.start(&shimv1.StreamStart{
		Id: c.meta.ID, Tty: c.meta.Config.Tty,
		Stdin: sio.Stdin != nil, Stdout: sio.Stdout != nil, Stderr: sio.Stderr != nil,
	}); err != nil {
		return fmt.Errorf("attach to container %s: %w", c.meta.ID, err)
	}
	go s.pumpResize(ctx)
	if sio.Stdin != nil {
		onEOF := func() {}
		if sio.Stdout == nil && sio.Stderr == nil {
			// Nothing else tells a stdin-only client's session to end.
			onEOF = cancel
		}
		go s.pumpStdin(onEOF)
	}
	if _, _, err := s.receive(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("attach to container %s: %w", c.meta.ID, err)
	}
	return nil
}

// runningContainer returns container id and its pod's shim, failing with
// ErrFailedPrecondition unless it runs.
func (m *Manager) runningContainer(id string) (*container, shimConn, error) {
	c, client, err := m.containerClient(id)
	if err != nil {
		return nil, nil, err
	}
	if st := c.Status().Record.State; st != shim.StateRunning {
		return nil, nil, fmt.Errorf("container %s is %s, not running: %w", c.meta.ID, st, errdefs.ErrFailedPrecondition)
	}
	return c, client, nil
}

// session pumps one Exec or Attach stream. gRPC allows one sender at a time,
// so every Send goes through sendMu.
type session struct {
	stream shimStream
	sio    StreamIO

	sendMu sync.Mutex
}

func newSession(stream shimStream, sio StreamIO) *session {
	return &session{stream: stream, sio: sio}
}

func (s *session) send(in *shimv1.StreamInput) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(in)
}

// start sends the session's first message. When the shim has already
// ended the stream, Send only says io.EOF; receive then reports why.
func (s *session) start(st *shimv1.StreamStart) error {
	err := s.send(&shimv1.StreamInput{Kind: &shimv1.StreamInput_Start{Start: st}})
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// pumpStdin forwards stdin until EOF or a read error, then closes the
// process's stdin and calls onEOF (when not nil). It returns early when the
// stream is gone.
func (s *session) pumpStdin(onEOF func()) {
	buf := make([]byte, stdinChunk)
	for {
		n, err := s.sio.Stdin.Read(buf)
		if n > 0 {
			chunk := append([]byte(nil), buf[:n]...)
			if s.send(&shimv1.StreamInput{Kind: &shimv1.StreamInput_Stdin{Stdin: chunk}}) != nil {
				return
			}
		}
		if err != nil {
			_ = s.send(&shimv1.StreamInput{Kind: &shimv1.StreamInput_CloseStdin{CloseStdin: true}})
			if onEOF != nil {
				onEOF()
			}
			return
		}
	}
}

// pumpResize forwards terminal size changes until ctx ends or the client
// closes the channel.
func (s *session) pumpResize(ctx context.Context) {
	if s.sio.Resize == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case size, ok := <-s.sio.Resize:
			if !ok {
				return
			}
			r := &shimv1.Resize{Width: uint32(size.Width), Height: uint32(size.Height)}
			if s.send(&shimv1.StreamInput{Kind: &shimv1.StreamInput_Resize{Resize: r}}) != nil {
				return
			}
		}
	}
}

// receive writes the stream's output to the client until the shim ends the
// stream, and reports the exit code when the shim sent one. Output of a
// stream the client did not ask for is dropped.
func (s *session) receive() (code int, exited bool, _ error) {
	for {
		out, err := s.stream.Recv()
		if errors.Is(err, io.EOF) {
			return code, exited, nil
		}
		if err != nil {
			return code, exited, err
		}
		switch k := out.Kind.(type) {
		case *shimv1.StreamOutput_Stdout:
			if err := writeOutput(s.sio.Stdout, k.Stdout); err != nil {
				return code, exited, fmt.Errorf("write stdout to the client: %w", err)
			}
		case *shimv1.StreamOutput_Stderr:
			if err := writeOutput(s.sio.Stderr, k.Stderr); err != nil {
				return code, exited, fmt.Errorf("write stderr to the client: %w", err)
			}
		case *shimv1.StreamOutput_ExitCode:
			code, exited = int(k.ExitCode), true
		}
	}
}

func writeOutput(w io.Writer, p []byte) error {
	if w == nil {
		return nil
	}
	_, err := w.Write(p)
	return err
}
