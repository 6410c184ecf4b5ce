package container

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Stdio is the shim's side of a process's standard streams. With a terminal
// only Console is set (it carries input and output); otherwise Stdout and
// Stderr are read ends of pipes and Stdin, when requested, a write end.
type Stdio struct {
	Stdin   *os.File
	Stdout  *os.File
	Stderr  *os.File
	Console console.Console
}

// ErrNoStdin is returned by Write for a process started with neither a
// terminal nor a stdin pipe; it is of class errdefs.ErrFailedPrecondition.
var ErrNoStdin = errdefs.ErrFailedPrecondition.WithMessage("process has no stdin")

// Write writes p to the process's input: its terminal when it has one,
// otherwise its stdin pipe.
func (s *Stdio) Write(p []byte) (int, error) {
	switch {
	case s.Console != nil:
		return s.Console.Write(p)
	case s.Stdin != nil:
		return s.Stdin.Write(p)
	}
	return 0, ErrNoStdin
}

// Close releases every stream the shim holds.
func (s *Stdio) Close() {
	for _, f := range []*os.File{s.Stdin, s.Stdout, s.Stderr} {
		if f != nil {
			f.Close()
		}
	}
	if s.Console != nil {
		s.Console.Close()
	}
}

// CloseStdin closes the write end of the process's stdin so that it reads EOF.
// With a terminal it sends the terminal's EOF character instead.
func (s *Stdio) CloseStdin() error {
	if s.Console != nil {
		_, err := s.Console.Write([]byte{4})
		return err
	}
	if s.Stdin != nil {
		return s.Stdin.Close()
	}
	return nil
}

// process is what Proc needs of a started process: a libcontainer.Process,
// or an os.Process for a fast generation's init.
type process interface {
	Signal(os.Signal) error
	Wait() (*os.ProcessState, error)
}

// Proc is a container's init or an exec. Its exit is observed by one
// goroutine that waits for it; Done is closed then.
type Proc struct {
	lp   process
	pid  int
	IO   Stdio
	done chan struct{}

	mu       sync.Mutex
	exitCode int
	exitedAt time.Time
	signaled bool
}

// Pid is the host pid of the process.
func (p *Proc) Pid() int { return p.pid }

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exit returns the exit code (128+signal for a killed process) and when the
// exit was observed. Valid once Done is closed.
func (p *Proc) Exit() (code int, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitCode, p.exitedAt
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.lp.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %d to pid %d: %w", sig, p.pid, err)
	}
	return nil
}

// Resize sets the terminal size of a process started with a terminal.
func (p *Proc) Resize(width, height uint16) error {
	if p.IO.Console == nil {
		return nil
	}
	return p.IO.Console.Resize(console.WinSize{Width: width, Height: height})
}

func (p *Proc) wait() {
	state, _ := p.lp.Wait()
	code := 255
	if state != nil {
		code = exitCode(state)
	}
	p.mu.Lock()
	p.exitCode = code
	p.exitedAt = time.Now()
	p.mu.Unlock()
	close(p.done)
}

func exitCode(state *os.ProcessState) int {
	ws, ok := state.Sys().(syscall.WaitStatus)
	if !ok {
		return state.ExitCode()
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// childIO holds the ends of the stdio plumbing that belong to the child; they
// are closed in the shim as soon as libcontainer has handed them over.
type childIO struct {
	files   []*os.File
	console *os.File // our end of the console socket
}

func (c *childIO) close() {
	for _, f := range c.files {
		f.Close()
	}
}

// setupIO wires lp's stdio to fresh pipes, or to a console socket when tty is
// set, and returns the shim's ends.
func setupIO(lp *libcontainer.Process, tty, stdin bool) (*childIO, Stdio, error) {
	child := &childIO{}
	var parent Stdio
	fail := func(err error) (*childIO, Stdio, error) {
		child.close()
		if child.console != nil {
			child.console.Close()
		}
		parent.Close()
		return nil, Stdio{}, err
	}
	if tty {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("create console socket: %w", err))
		}
		child.console = os.NewFile(uintptr(fds[0]), "console-parent")
		sock := os.NewFile(uintptr(fds[1]), "console-child")
		child.files = append(child.files, sock)
		lp.ConsoleSocket = sock
		return child, parent, nil
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("create stdout pipe: %w", err))
	}
	parent.Stdout = outR
	child.files = append(child.files, outW)
	lp.Stdout = outW
	errR, errW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("create stderr pipe: %w", err))
	}
	parent.Stderr = errR
	child.files = append(child.files, errW)
	lp.Stderr = errW
	if stdin {
		inR, inW, err := os.Pipe()
		if err != nil {
			return fail(fmt.Errorf("create stdin pipe: %w", err))
		}
		parent.Stdin = inW
		child.files = append(child.files, inR)
		lp.Stdin = inR
	}
	return child, parent, nil
}

// receiveConsole reads the pty master that the container's init sends over
// the console socket.
func receiveConsole(sock *os.File) (console.Console, error) {
	defer sock.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, 0)
	if err != nil {
		return nil, fmt.Errorf("receive console: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("receive console: no control message (%d bytes): %w", n, err)
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("receive console: %d control messages (%d bytes), want 1", len(msgs), n)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, fmt.Errorf("receive console: no file descriptor: %w", err)
	}
	if len(fds) != 1 {
		return nil, fmt.Errorf("receive console: %d file descriptors, want 1", len(fds))
	}
	f := os.NewFile(uintptr(fds[0]), string(buf[:n]))
	c, err := console.ConsoleFromFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("receive console: %w", err)
	}
	// Output is copied to logs and attach streams verbatim; the CRI log
	// format wants "\n" line ends, not the terminal's "\r\n".
	if err := console.ClearONLCR(c.Fd()); err != nil {
		c.Close()
		return nil, fmt.Errorf("receive console: %w", err)
	}
	return c, nil
}

// newProcess converts an OCI process into a libcontainer one.
func newProcess(p *specs.Process) (*libcontainer.Process, error) {
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		NoNewPrivileges: &p.NoNewPrivileges,
		AppArmorProfile: p.ApparmorProfile,
		Label:           p.SelinuxLabel,
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth = uint16(p.ConsoleSize.Width)
		lp.ConsoleHeight = uint16(p.ConsoleSize.Height)
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding:    c.Bounding,
			Effective:   c.Effective,
			Inheritable: c.Inheritable,
			Permitted:   c.Permitted,
			Ambient:     c.Ambient,
		}
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for _, r := range p.Rlimits {
		kind, ok := rlimits[r.Type]
		if !ok {
			return nil, fmt.Errorf("unknown rlimit %q", r.Type)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: kind, Hard: r.Hard, Soft: r.Soft})
	}
	return lp, nil
}

var rlimits = map[string]int{
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
}
