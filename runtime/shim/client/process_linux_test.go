package client

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/warmpod/warmpod/runtime/shim"
)

// fakeShim starts a process whose command line is that of the shim of
// stateDir, and writes its pid file.
func fakeShim(t *testing.T, stateDir string) *exec.Cmd {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	// A shell that runs sleep keeps the shim's arguments in its command
	// line ($0 and the positional parameters).
	cmd := exec.Command("/bin/sh", "-c", sleep+" 600", "warmpod", "shim", "--state", stateDir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if err := os.WriteFile(filepath.Join(stateDir, shim.PidFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func TestFindProcess(t *testing.T) {
	t.Run("running", func(t *testing.T) {
		dir := t.TempDir()
		cmd := fakeShim(t, dir)
		p, err := findProcess(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer p.close()
		if p.pid != cmd.Process.Pid || p.exited() {
			t.Fatalf("found pid %d exited %v, want running %d", p.pid, p.exited(), cmd.Process.Pid)
		}
		if err := p.kill(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.wait(ctx); err != nil {
			t.Fatal(err)
		}
		if !p.exited() {
			t.Error("killed process not exited")
		}
		p.close()
		if !p.exited() || p.kill() != nil {
			t.Error("a closed process must look exited and take kill quietly")
		}
	})
	t.Run("no pid file", func(t *testing.T) {
		if _, err := findProcess(t.TempDir()); !errors.Is(err, ErrGone) {
			t.Fatalf("err = %v, want ErrGone", err)
		}
	})
	t.Run("exited", func(t *testing.T) {
		dir := t.TempDir()
		cmd := fakeShim(t, dir)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if _, err := findProcess(dir); !errors.Is(err, ErrGone) {
			t.Fatalf("err = %v, want ErrGone", err)
		}
	})
	t.Run("pid of another process", func(t *testing.T) {
		// The shim died and its pid went to this test process.
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, shim.PidFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := findProcess(dir); !errors.Is(err, ErrGone) {
			t.Fatalf("err = %v, want ErrGone", err)
		}
	})
	t.Run("shim of another pod", func(t *testing.T) {
		dir := t.TempDir()
		other := fakeShim(t, t.TempDir())
		if err := os.WriteFile(filepath.Join(dir, shim.PidFile), []byte(strconv.Itoa(other.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := findProcess(dir); !errors.Is(err, ErrGone) {
			t.Fatalf("err = %v, want ErrGone", err)
		}
	})
}
