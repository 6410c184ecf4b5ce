package service

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/warmpod/warmpod/runtime/container"
	"github.com/warmpod/warmpod/runtime/shim"
)

// maxExecSyncOutput caps what ExecSync keeps of each stream; the rest is
// read and dropped so the process never blocks on a full pipe.
const maxExecSyncOutput = shim.MaxExecSyncOutput

// ExecOptions describes a process to run in a container.
type ExecOptions struct {
	Cmd   []string
	Tty   bool
	Stdin bool
}

// Exec starts a process in running container id. The caller pumps its IO
// and waits for Done.
func (s *Shim) Exec(id string, o ExecOptions) (*container.Proc, error) {
	if len(o.Cmd) == 0 {
		return nil, fmt.Errorf("exec in container %q: empty command: %w", id, errdefs.ErrInvalidArgument)
	}
	c, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	g, err := c.running()
	if err != nil {
		return nil, err
	}
	p := *c.template().process
	p.Args = o.Cmd
	p.Terminal = o.Tty
	p.ConsoleSize = nil
	s.reaper.hold()
	defer s.reaper.release()
	proc, err := g.c.Exec(&p, o.Tty, o.Stdin)
	if err != nil {
		return nil, fmt.Errorf("exec in container %q: %w", id, err)
	}
	s.reaper.ownUntil(proc.Pid(), proc.Done())
	return proc, nil
}

// ExecSync runs cmd in container id and returns its output and exit code.
// With a timeout the process is killed when it runs longer, and the error
// wraps context.DeadlineExceeded.
func (s *Shim) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (stdout, stderr []byte, code int, err error) {
	proc, err := s.Exec(id, ExecOptions{Cmd: cmd})
	if err != nil {
		return nil, nil, 0, err
	}
	var outBuf, errBuf bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { drainCapped(&outBuf, proc.IO.Stdout); wg.Done() }()
	go func() { drainCapped(&errBuf, proc.IO.Stderr); wg.Done() }()
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-proc.Done():
	case <-expired:
		err = fmt.Errorf("exec in container %q timed out after %s: %w", id, timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = proc.Signal(9)
		<-proc.Done()
	}
	waitOrTimeout(&wg)
	proc.IO.Close()
	if err != nil {
		return nil, nil, 0, err
	}
	code, _ = proc.Exit()
	return outBuf.Bytes(), errBuf.Bytes(), code, nil
}

// waitOrTimeout waits for the output copiers of an exited process; a child
// it left behind holding the pipe must not hang the call.
func waitOrTimeout(wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
	}
}

func drainCapped(buf *bytes.Buffer, r io.Reader) {
	if r == nil {
		return
	}
	_, _ = io.Copy(buf, io.LimitReader(r, maxExecSyncOutput))
	_, _ = io.Copy(io.Discard, r)
}

// Attachment connects a client to a container's own stdio.
type Attachment struct {
	Stdout, Stderr <-chan []byte
	// Exited is closed when the container's process has exited.
	Exited <-chan struct{}
	c      *ctr
	g      *gen
	detach func()
}

// Attach subscribes to the output of running container id. Output written
// before the call is not replayed (it is in the log).
func (s *Shim) Attach(id string, stdout, stderr bool) (*Attachment, error) {
	c, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	g, err := c.running()
	if err != nil {
		return nil, err
	}
	t := c.template()
	a := &Attachment{Exited: g.exited, c: c, g: g}
	var unsub []func()
	if stdout {
		ch, cancel := c.stdout.subscribe()
		a.Stdout = ch
		unsub = append(unsub, cancel)
	}
	if stderr && !t.tty {
		ch, cancel := c.stderr.subscribe()
		a.Stderr = ch
		unsub = append(unsub, cancel)
	}
	a.detach = func() {
		for _, f := range unsub {
			f()
		}
	}
	return a, nil
}

// Detach ends the subscription.
func (a *Attachment) Detach() { a.detach() }

// WriteStdin writes to the container's stdin.
func (a *Attachment) WriteStdin(p []byte) error {
	if _, err := a.g.c.Init.IO.Write(p); err != nil {
		// container.ErrNoStdin, a FailedPrecondition, when the container
		// was created without stdin.
		return fmt.Errorf("write stdin of container %q: %w", a.c.id, err)
	}
	return nil
}

// CloseStdin closes the container's stdin when it was created with
// stdin_once: the first attached client to finish ends it.
func (a *Attachment) CloseStdin() error {
	if !a.c.template().stdinOnce {
		return nil
	}
	return a.g.c.Init.IO.CloseStdin()
}

// Resize sets the container's terminal size.
func (a *Attachment) Resize(w, h uint16) error { return a.g.c.Init.Resize(w, h) }
