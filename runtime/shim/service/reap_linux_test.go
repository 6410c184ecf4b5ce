package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/shim"
)

// zombieChildren lists this process's children that have exited and not
// been waited for (in the tests the shim is the test process).
func zombieChildren() []string {
	var out []string
	for _, pid := range children() {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(stat)
		if i := strings.LastIndexByte(s, ')'); i > 0 && strings.HasPrefix(s[i+1:], " Z") {
			out = append(out, strings.TrimSpace(s[:i+1]))
		}
	}
	return out
}

// A process a container leaves behind becomes the shim's child (the shim is
// its pod's subreaper) when its parent dies, or the pause process's in a pod
// that shares its pid namespace. Once it exits, nothing of it may remain:
// the shim reaps what nobody else waits for, and takes no exit status from
// those that are waited for (the container's own, an exec's).
func TestOrphansAreReaped(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sharedPID bool
	}{
		{"host pid namespace", false},
		{"shared pid namespace", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *shim.Config) { c.SharedPID = tc.sharedPID })
			var spec specs.Spec
			// A subshell starts a process and exits at once: its child is
			// orphaned, and exits a moment later. The container's own
			// process runs on, so its pid namespace (when it has one) stays.
			orphan := "(sh -c 'sleep 0.2; touch /vol/orphan-$0-done' %s &); exec sleep 1000"
			if err := json.Unmarshal(f.spec("sh", "-c", fmt.Sprintf(orphan, "init")), &spec); err != nil {
				t.Fatal(err)
			}
			spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
				return ns.Type == specs.PIDNamespace
			})
			if tc.sharedPID {
				spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: shim.PIDNamespacePath(f.s.cfg.StateDir)})
			}
			data, err := json.Marshal(&spec)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := f.s.Create(context.Background(), &CreateRequest{
				ID: "c1", Name: "main", Spec: data, Layers: []string{f.layer}, LogPath: filepath.Join(f.logDir, "c1.log"),
			}); err != nil {
				t.Fatal(err)
			}
			f.start("c1")
			// An exec leaves one too, and exits with a status of its own.
			out, _, code, err := f.s.ExecSync(context.Background(), "c1", []string{"sh", "-c", fmt.Sprintf(strings.TrimSuffix(orphan, "; exec sleep 1000"), "exec") + "; exit 7"}, 0)
			if err != nil || code != 7 {
				t.Fatalf("exec: %q exit %d, %v; want exit 7", out, code, err)
			}
			for _, who := range []string{"init", "exec"} {
				f.waitFor("the orphan of "+who+" to exit", func() bool {
					_, err := os.Stat(filepath.Join(f.vol, "orphan-"+who+"-done"))
					return err == nil
				})
			}
			var zombies []string
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if zombies = zombieChildren(); len(zombies) == 0 {
					break
				}
			}
			if len(zombies) > 0 {
				t.Fatalf("zombies left: %v", zombies)
			}
			if r, _ := f.s.Get("c1"); r.State != shim.StateRunning {
				t.Fatalf("container is %v, want running", r.State)
			}
			if _, err := f.s.Stop(context.Background(), "c1", 0); err != nil {
				t.Fatal(err)
			}
			if r, _ := f.s.Get("c1"); r.ExitCode != 137 {
				t.Errorf("container exit code %d, want its own 137", r.ExitCode)
			}
		})
	}
}

// exitedUnwaited starts argv and returns its process once it has exited,
// not waited for (a zombie).
func exitedUnwaited(t *testing.T, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// A sweep reaps the exited children nobody owns and leaves the owned ones
// to their owners, whether it finds them by asking the kernel for one
// exited child at a time or by listing every child.
func TestSweepReapsOnlyUnowned(t *testing.T) {
	owned := exitedUnwaited(t, "sh", "-c", "exit 7")
	pid, err := exitedChild()
	if err != nil || pid != owned.Process.Pid {
		t.Fatalf("exitedChild() = %d, %v; want %d", pid, err, owned.Process.Pid)
	}
	// Asked again: it was not waited for.
	if again, _ := exitedChild(); again != pid {
		t.Fatalf("exitedChild() again = %d; want %d", again, pid)
	}
	stray := exitedUnwaited(t, "true")
	r := &reaper{owned: map[int]int{owned.Process.Pid: 1}}
	r.sweepLocked()
	var ws unix.WaitStatus
	if got, err := unix.Wait4(stray.Process.Pid, &ws, unix.WNOHANG, nil); err != unix.ECHILD {
		t.Errorf("unowned child %d after the sweep: wait4 = %d, %v; want ECHILD (reaped)", stray.Process.Pid, got, err)
	}
	err = owned.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 7 {
		t.Errorf("owner's wait = %v; want exit status 7", err)
	}
	if pid, err := exitedChild(); pid != 0 {
		t.Errorf("exitedChild() with no exited child = %d, %v; want 0", pid, err)
	}

	// Only unowned children exited: no listing needed, all are reaped.
	a, b := exitedUnwaited(t, "true"), exitedUnwaited(t, "true")
	(&reaper{owned: map[int]int{}}).sweepLocked()
	for _, c := range []*exec.Cmd{a, b} {
		if got, err := unix.Wait4(c.Process.Pid, &ws, unix.WNOHANG, nil); err != unix.ECHILD {
			t.Errorf("unowned child %d after the sweep: wait4 = %d, %v; want ECHILD (reaped)", c.Process.Pid, got, err)
		}
	}
}

// children finds this process's children through its threads' children
// files.
func TestChildren(t *testing.T) {
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if got := children(); !slices.Contains(got, cmd.Process.Pid) {
		t.Fatalf("children() = %v; want it to hold %d", got, cmd.Process.Pid)
	}
}
