package shim

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// PauseArg is the argument that makes the warmpod binary run as a pod's
// pause process (see PauseMain).
const PauseArg = "pause"

// pause is the process holding a pod's shared pid namespace: its pid 1,
// which reaps the orphans of every container in the pod.
type pause struct {
	cmd  *exec.Cmd
	pin  string
	done chan struct{}
}

// startPause starts the pause process in a new pid namespace and pins the
// namespace at pin, so containers can join it by path.
func startPause(pin string) (*pause, error) {
	cmd := exec.Command("/proc/self/exe", PauseArg)
	cmd.Args[0] = os.Args[0]
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID, Pdeathsig: unix.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pause process: %w", err)
	}
	p := &pause{cmd: cmd, pin: pin, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	f, err := os.OpenFile(pin, os.O_CREATE|os.O_RDONLY|os.O_EXCL, 0o444)
	if err == nil {
		f.Close()
		err = unix.Mount(fmt.Sprintf("/proc/%d/ns/pid", cmd.Process.Pid), pin, "", unix.MS_BIND, "")
	}
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("pin pod pid namespace: %w", err)
	}
	return p, nil
}

func (p *pause) pid() int { return p.cmd.Process.Pid }

func (p *pause) stop() {
	_ = p.cmd.Process.Kill()
	<-p.done
	if err := unix.Unmount(p.pin, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return
	}
	_ = os.Remove(p.pin)
}

// PauseMain is the pause process: pid 1 of a pod's pid namespace. It reaps
// orphans until it is killed.
func PauseMain() {
	signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGPIPE)
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
