package container

import (
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// exiting tells a process that has ended but is not reaped yet (what an
// exec into a container whose init is exiting meets) from a live one.
func TestExiting(t *testing.T) {
	if exiting(os.Getpid()) {
		t.Error("exiting(this process) = true")
	}
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = live.Process.Kill(); _ = live.Wait() }()
	if exiting(live.Process.Pid) {
		t.Error("exiting(a sleeping child) = true")
	}

	done := exec.Command("true")
	if err := done.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for its exit without reaping it: it stays a zombie.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, done.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if !exiting(done.Process.Pid) {
		t.Error("exiting(a zombie child) = false")
	}
	if err := done.Wait(); err != nil {
		t.Fatal(err)
	}
}
