package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/shim"
)

// ErrGone says that a pod's shim process is not running: it exited, was
// killed or crashed.
var ErrGone = errors.New("the pod's shim is gone")

// process is a shim process, held by a pidfd: whether it still runs is
// asked of that very process, never of a pid that another process may have
// taken since it died. Its methods are safe for concurrent use, and after
// close (which makes it look exited).
type process struct {
	pid int

	mu sync.Mutex
	fd int // -1 once closed
}

// openProcess holds process pid. The caller must know that pid is the
// shim: its own unreaped child, or a pid it checks after the open.
func openProcess(pid int) (*process, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("shim process %d: %w", pid, ErrGone)
		}
		return nil, fmt.Errorf("open shim process %d: %w", pid, err)
	}
	return &process{pid: pid, fd: fd}, nil
}

// findProcess returns the shim serving stateDir, which a daemon started
// before this one, from the pid file the shim wrote; ErrGone when it does
// not run any more.
func findProcess(stateDir string) (*process, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, shim.PidFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no pid file in %s: %w", stateDir, ErrGone)
	}
	if err != nil {
		return nil, fmt.Errorf("read shim pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return nil, fmt.Errorf("shim pid file of %s holds %q: %w", stateDir, data, ErrGone)
	}
	p, err := openProcess(pid)
	if err != nil {
		return nil, err
	}
	// The pid is the shim's only while the shim lives; after its death it
	// may be any process's. The pidfd, opened first, holds one process
	// whatever happens next, so a check made now holds for it.
	if !servesState(pid, stateDir) || p.exited() {
		p.close()
		return nil, fmt.Errorf("shim process %d of %s: %w", pid, stateDir, ErrGone)
	}
	return p, nil
}

// servesState tells whether process pid is the shim of stateDir: its
// command line is "warmpod shim --state stateDir" (Start).
func servesState(pid int, stateDir string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(bytes.TrimSuffix(cmdline, []byte{0})), "\x00")
	for i := 1; i+2 < len(args); i++ {
		if args[i] == "shim" && args[i+1] == "--state" && args[i+2] == stateDir {
			return true
		}
	}
	return false
}

// exited tells whether the process has exited (a zombie has).
func (p *process) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd < 0 {
		return true
	}
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n > 0
	}
}

// kill sends SIGKILL to the process.
func (p *process) kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd < 0 {
		return nil
	}
	if err := unix.PidfdSendSignal(p.fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill shim process %d: %w", p.pid, err)
	}
	return nil
}

// wait waits until the process has exited or ctx ends.
func (p *process) wait(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !p.exited() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for shim process %d to exit: %w", p.pid, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

func (p *process) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}
