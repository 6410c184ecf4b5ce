package cgroup

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/warmpod/warmpod/internal/testutil"
)

func requireRoot(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t, "it creates cgroups")
}

// requireRootForFakeTree skips tests in which the library writes limits
// into a fake tree: it creates missing control files with mode 0, which
// only root can open again.
func requireRootForFakeTree(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t, "the cgroup library creates fake control files with mode 0")
}

func uniqueParent(t *testing.T) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "/warmpod-test-" + hex.EncodeToString(b)
}

// writeFiles creates files (name -> content) under dir, making dirs.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// worker is a child process that waits for a line on stdin, burns a little
// CPU, reports "done" and then sleeps until killed.
type worker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startWorker(t *testing.T) *worker {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c",
		`read go; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo done; exec sleep 600`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &worker{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(w.stop)
	return w
}

// run lets the worker do its CPU work and waits until it is done.
func (w *worker) run(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(w.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	line, err := w.out.ReadString('\n')
	if err != nil || line != "done\n" {
		t.Fatalf("worker said %q, %v", line, err)
	}
}

// stop kills the worker (by its own pid) and reaps it; idempotent.
func (w *worker) stop() {
	if w.cmd.ProcessState != nil {
		return
	}
	_ = w.cmd.Process.Kill()
	_ = w.cmd.Wait()
}

// exercise runs the life cycle every mode must support on m, with a real
// process: create, place, stats, refuse to delete while busy, delete.
func exercise(t *testing.T, m manager, parent string) {
	path, err := create(m, parent+"/pod", nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		if err := remove(m, path); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})

	w := startWorker(t)
	pid := w.cmd.Process.Pid
	if err := addProc(m, path, pid); err != nil {
		t.Fatalf("addProc: %v", err)
	}
	w.run(t)
	pids, err := procs(m, path)
	if err != nil || !slices.Contains(pids, pid) {
		t.Fatalf("procs = %v, %v; want to include %d", pids, err, pid)
	}
	st, err := stats(m, path)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	if st.CPU.UsageNanos == 0 {
		t.Errorf("no CPU usage recorded for a process that ran a loop: %+v", st.CPU)
	}

	if err := remove(m, path); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("remove of a busy cgroup = %v, want ErrNotEmpty", err)
	}
	w.stop()
	if err := remove(m, path); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if ok, err := m.exists(path); ok || err != nil {
		t.Fatalf("cgroup still exists after remove (%v)", err)
	}
	if err := remove(m, path); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if _, err := stats(m, path); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stats of a removed cgroup = %v, want ErrNotFound", err)
	}
}

func TestPublicCallsRejectBadPaths(t *testing.T) {
	for _, p := range []string{"", "/", "rel/path", "/a/../b", "/a/"} {
		if err := Delete(p); !errors.Is(err, ErrInvalid) {
			t.Errorf("Delete(%q) = %v, want ErrInvalid", p, err)
		}
		if err := Update(p, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("Update(%q) = %v, want ErrInvalid", p, err)
		}
		if _, err := Stats(p); !errors.Is(err, ErrInvalid) {
			t.Errorf("Stats(%q) = %v, want ErrInvalid", p, err)
		}
		if _, err := Procs(p); !errors.Is(err, ErrInvalid) {
			t.Errorf("Procs(%q) = %v, want ErrInvalid", p, err)
		}
	}
	if err := AddProc("/warmpod/x", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddProc pid 0 = %v, want ErrInvalid", err)
	}
}

// exerciseKill puts a process that keeps forking and a sleeper with a child
// in two cgroups below a pod cgroup, as containers are, and checks that
// kill of the pod cgroup leaves none of them, so that it can be removed.
func exerciseKill(t *testing.T, m manager, parent string) {
	path, err := create(m, parent+"/pod", nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		if err := remove(m, path); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	var cmds []*exec.Cmd
	for _, c := range []struct{ name, script string }{
		// A shell that forks a new sleeper as fast as it can.
		{"forker", "while true; do sleep 600 & done"},
		{"sleeper", "sleep 600 & exec sleep 600"},
	} {
		cg, err := create(m, path+"/"+c.name, nil)
		if err != nil {
			t.Fatalf("create %s: %v", c.name, err)
		}
		cmd := exec.Command("/bin/sh", "-c", "read go; "+c.script)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		if err := addProc(m, cg, cmd.Process.Pid); err != nil {
			t.Fatalf("addProc: %v", err)
		}
		if _, err := io.WriteString(stdin, "go\n"); err != nil {
			t.Fatal(err)
		}
	}
	for {
		pids, err := procs(m, path)
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) > 4 {
			break
		}
	}
	if err := kill(m, path, killTimeout); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if pids, err := procs(m, path); err != nil || len(pids) != 0 {
		t.Fatalf("processes after kill: %v, %v", pids, err)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("%v ended with %v, want killed", cmd.Args, err)
		}
	}
	if err := remove(m, path); err != nil {
		t.Fatalf("remove after kill: %v", err)
	}
	if err := kill(m, path, killTimeout); err != nil {
		t.Errorf("kill in a removed cgroup: %v", err)
	}
}
