package pause

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// Arg is the argument that makes the warmpod binary run as a pod's pause
// process (see Main).
const Arg = "pause"

// Process is a running pause process, started by a pod's shim.
type Process struct {
	proc *os.Process
	pin  string
	done chan struct{}
	// life is the write end of the pipe the pause process watches: when
	// the shim dies it closes, and the pause process exits.
	life *os.File
}

// Start starts the pause process in a new pid namespace and pins the
// namespace at pin, so containers can join it by path. In a pod with a user
// namespace (userns, its pinned path) the pid namespace must belong to it,
// or the pod's containers could not mount /proc; the pause process then
// runs as that namespace's root.
func Start(pin, userns string) (*Process, error) {
	// Not Pdeathsig: it fires when the thread that forked the child ends,
	// and the Go runtime ends threads whenever a goroutine exits locked to
	// one (libcontainer does, for mount sources) — killing the pod's pid
	// namespace with it. A pipe closes only with the shim.
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start pause process: %w", err)
	}
	defer lifeR.Close()
	var wait func()
	var proc *os.Process
	if userns == "" {
		cmd := exec.Command("/proc/self/exe", Arg)
		cmd.Args[0] = os.Args[0]
		cmd.ExtraFiles = []*os.File{lifeR} // fd 3
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID}
		err = cmd.Start()
		proc, wait = cmd.Process, func() { _ = cmd.Wait() }
	} else {
		proc, err = startPauseIn(userns, lifeR)
		wait = func() { _, _ = proc.Wait() }
	}
	if err != nil {
		lifeW.Close()
		return nil, fmt.Errorf("start pause process: %w", err)
	}
	p := &Process{proc: proc, pin: pin, done: make(chan struct{}), life: lifeW}
	go func() { wait(); close(p.done) }()
	f, err := os.OpenFile(pin, os.O_CREATE|os.O_RDONLY|os.O_EXCL, 0o444)
	if err == nil {
		f.Close()
		err = unix.Mount(fmt.Sprintf("/proc/%d/ns/pid", proc.Pid), pin, "", unix.MS_BIND, "")
	}
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("pin pod pid namespace: %w", err)
	}
	return p, nil
}

// startPauseIn starts the pause process as pid 1 of a new pid namespace
// of user namespace userns, with stdio on /dev/null and fd 3 on life.
func startPauseIn(userns string, life *os.File) (*os.Process, error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	return startInit(userns, []string{os.Args[0], Arg}, []*os.File{null, null, null, life})
}

// Pid is the pause process's pid, as the shim sees it.
func (p *Process) Pid() int { return p.proc.Pid }

// Done is closed once the pause process has exited and been waited for.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop kills the pause process, and with it every process left in the pid
// namespace, and removes the namespace's pin.
func (p *Process) Stop() {
	_ = p.proc.Kill()
	<-p.done
	p.life.Close()
	if err := unix.Unmount(p.pin, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return
	}
	_ = os.Remove(p.pin)
}

// Main is the pause process: pid 1 of a pod's pid namespace. It reaps
// orphans until it is killed or its shim is gone.
func Main() {
	signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGPIPE)
	go func() {
		// fd 3 is the read end of the shim's pipe: EOF means the shim died.
		life := os.NewFile(3, "life")
		_, _ = io.Copy(io.Discard, life)
		os.Exit(0)
	}()
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM)
	for sig := range sigs {
		if sig == unix.SIGTERM {
			os.Exit(0)
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
