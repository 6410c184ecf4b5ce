package service

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	clog "github.com/containerd/log"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/internal/testutil"
	"github.com/warmpod/warmpod/runtime/container"
	"github.com/warmpod/warmpod/runtime/shim"
)

func TestMain(m *testing.M) {
	container.Init()
	os.Exit(m.Run())
}

// busyboxLayer makes a layer dir with a static busybox and its applets.
func busyboxLayer(t testing.TB) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox (Debian busybox-static) is not installed")
	}
	dir := t.TempDir()
	for _, d := range []string{"bin", "tmp", "proc", "dev", "sys", "etc", "vol"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(dir, "bin", "busybox"), "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		_ = os.Symlink("busybox", filepath.Join(dir, "bin", applet))
	}
	return dir
}

type fixture struct {
	t      testing.TB
	s      *Shim
	layer  string
	vol    string
	logDir string
	// cgroup is the pod cgroup, below the cgroup root.
	cgroup string
}

func newFixture(t testing.TB, cfgMod func(*shim.Config)) *fixture {
	t.Helper()
	testutil.RequireRoot(t, "it creates containers")
	layer := busyboxLayer(t)
	state := t.TempDir()
	cgroup := fmt.Sprintf("warmpod-test-%d", time.Now().UnixNano())
	root := t.TempDir()
	cfg := &shim.Config{
		PodID:        "pod-" + t.Name(),
		StateDir:     state,
		RootDir:      root,
		CgroupParent: cgroup,
		// WARMPOD_SPAWNER runs the tests with another spawner than the
		// daemon's default, as the integration tests (see Makefile).
		Spawner: testSpawner(),
	}
	if cfgMod != nil {
		cfgMod(cfg)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	if os.Getenv("WARMPOD_TEST_DEBUG") != "" {
		log.SetOutput(os.Stderr)
		log.SetLevel(logrus.DebugLevel)
	}
	s, err := New(clog.WithLogger(context.Background(), logrus.NewEntry(log)), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, s: s, layer: layer, vol: t.TempDir(), logDir: t.TempDir(), cgroup: cgroup}
	t.Cleanup(func() {
		_ = s.Shutdown(context.Background())
		// Every generation ends with Shutdown: no rootfs may be left
		// mounted, nothing of the pod left running.
		if left := mountsBelow(root); len(left) > 0 {
			t.Errorf("mounts left below the pod's root dir after Shutdown: %v", left)
			for i := len(left) - 1; i >= 0; i-- {
				_ = unix.Unmount(left[i], unix.MNT_DETACH)
			}
		}
		if left := f.podProcesses(); len(left) > 0 {
			t.Errorf("processes left in the pod cgroup after Shutdown: %v", left)
			for _, pid := range left {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
		removeCgroup(cgroup)
	})
	return f
}

// testSpawner is the spawner the tests run with: WARMPOD_SPAWNER, or the
// daemon's default (the fast spawner).
func testSpawner() string {
	if sp := os.Getenv("WARMPOD_SPAWNER"); sp != "" {
		return sp
	}
	return container.SpawnerFast
}

// mountsBelow lists the mount points below dir, in mount order.
func mountsBelow(dir string) []string {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range mounts {
		out = append(out, m.Mountpoint)
	}
	return out
}

// podProcesses lists the live processes in the pod cgroup or below it.
func (f *fixture) podProcesses() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The state follows the command name, which ends at the last ')'.
		if i := strings.LastIndexByte(string(stat), ')'); i < 0 || strings.HasPrefix(string(stat[i+1:]), " Z") {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err == nil && strings.Contains(string(data), ":/"+f.cgroup+"/") {
			out = append(out, pid)
		}
	}
	return out
}

// holdNewGen makes the creation of every generation for which hold(name,
// idle) is true wait until release is called; entered receives once per
// held creation. Call it before any container operation.
func (f *fixture) holdNewGen(hold func(name string, idle bool) bool) (entered <-chan bool, release func()) {
	ch := make(chan bool, 64)
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	hook := func(name string, idle bool) {
		if !hold(name, idle) {
			return
		}
		ch <- idle
		<-gate
	}
	f.s.newGenHook.Store(&hook)
	// Before the fixture's Shutdown, which may wait for a held creation.
	f.t.Cleanup(release)
	return ch, release
}

// removeCgroup removes the pod cgroup libcontainer created as the parent of
// the generations' cgroups.
func removeCgroup(name string) {
	matches, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	if m, _ := filepath.Glob("/sys/fs/cgroup/" + name); len(m) > 0 {
		matches = append(matches, m...)
	}
	// A generation's cgroup may still hold its exiting process for a
	// moment after Shutdown returns (rmdir: EBUSY); the host is cleaned
	// up all the same, within a bound.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		left := matches[:0]
		for _, m := range matches {
			if removeTree(m) != nil {
				left = append(left, m)
			}
		}
		matches = left
		if len(matches) == 0 || time.Now().After(deadline) {
			return
		}
	}
}

// removeTree removes the cgroup directory dir and, first, every cgroup
// below it (a container's generation that Shutdown left behind): rmdir
// takes only a cgroup without children.
func removeTree(dir string) error {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			_ = removeTree(filepath.Join(dir, e.Name()))
		}
	}
	if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

func (f *fixture) spec(args ...string) []byte {
	f.t.Helper()
	spec := specconv.Example()
	spec.Root = &specs.Root{}
	spec.Process.Terminal = false
	spec.Process.Args = args
	spec.Hostname = "shimtest"
	if testSpawner() == container.SpawnerFast {
		// The host's network: a pod's containers join its network
		// namespace, and the fast spawner leaves a new, empty one to
		// libcontainer.
		spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
			return ns.Type == specs.NetworkNamespace
		})
	}
	spec.Mounts = append(spec.Mounts, specs.Mount{
		Destination: "/vol", Type: "bind", Source: f.vol, Options: []string{"rbind", "rw"},
	})
	data, err := json.Marshal(spec)
	if err != nil {
		f.t.Fatal(err)
	}
	return data
}

func (f *fixture) create(id, name string, args ...string) (shim.Record, bool) {
	f.t.Helper()
	rec, warm, err := f.s.Create(context.Background(), &CreateRequest{
		ID: id, Name: name, Spec: f.spec(args...), Layers: []string{f.layer},
		LogPath: filepath.Join(f.logDir, id+".log"),
	})
	if err != nil {
		f.t.Fatalf("create %s: %v", id, err)
	}
	return rec, warm
}

func (f *fixture) start(id string) shim.Record {
	f.t.Helper()
	rec, err := f.s.Start(context.Background(), id)
	if err != nil {
		f.t.Fatalf("start %s: %v", id, err)
	}
	return rec
}

// waitFor polls cond; the deadline is generous and only guards against a hang.
func (f *fixture) waitFor(what string, cond func() bool) {
	f.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return
		}
	}
	f.t.Fatalf("timed out waiting for %s", what)
}

func (f *fixture) waitExited(id string) shim.Record {
	f.t.Helper()
	var rec shim.Record
	f.waitFor(id+" to exit", func() bool {
		r, err := f.s.Get(id)
		rec = r
		return err == nil && r.State == shim.StateExited
	})
	return rec
}

// waitWarm waits until id has a next generation ready and pre-creation
// has settled (the fast spawner keeps more than one).
func (f *fixture) waitWarm(id string) {
	f.t.Helper()
	f.waitFor(id+"'s next generations", func() bool {
		r, err := f.s.Get(id)
		return err == nil && r.Warm && !r.Precreating
	})
}

// TestPrecreationSettles checks what a container's record says of its next
// generations: one ready once pre-creation has settled; with a pipeline
// deeper than one (the fast spawner's), more while resets come back to back,
// and one again once they stop.
func TestPrecreationSettles(t *testing.T) {
	f := newFixture(t, nil)
	f.create("m", "main", "sleep", "1000")
	f.start("m")
	ready := func() uint32 {
		r, err := f.s.Get("m")
		if err != nil {
			t.Fatal(err)
		}
		return r.ReadyGenerations
	}
	f.waitWarm("m")
	if n := ready(); n != 1 {
		t.Errorf("%d next generations ready after the first start, want 1", n)
	}
	for range 3 {
		if _, _, err := f.s.Reset(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	f.waitWarm("m")
	if n, want := ready(), uint32(f.s.pipeline.depth); n != want {
		t.Errorf("%d next generations ready after resets back to back, want %d", n, want)
	}
	if f.s.pipeline.depth > 1 {
		f.waitFor("the ready generations back to one after the resets", func() bool { return ready() == 1 })
	}
	// A removed container's name keeps its next generations for the
	// container that replaces it: the pod settles with them too.
	f.create("x", "extra", "sleep", "1000")
	f.start("x")
	if _, err := f.s.Stop(context.Background(), "x", 0); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Remove(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the pod's pre-creation to settle", func() bool { return !f.s.Info().Precreating })
}

func TestRunToCompletion(t *testing.T) {
	f := newFixture(t, nil)
	f.create("c1", "main", "sh", "-c", "echo hello; echo oops >&2; exit 3")
	f.start("c1")
	rec := f.waitExited("c1")
	if rec.ExitCode != 3 || rec.Reason != shim.ReasonError {
		t.Errorf("exit = %d %q, want 3 Error", rec.ExitCode, rec.Reason)
	}
	if rec.StartedAt == 0 || rec.FinishedAt < rec.StartedAt {
		t.Errorf("times: started %d finished %d", rec.StartedAt, rec.FinishedAt)
	}
	data, _ := os.ReadFile(filepath.Join(f.logDir, "c1.log"))
	if !strings.Contains(string(data), " stdout F hello\n") || !strings.Contains(string(data), " stderr F oops\n") {
		t.Errorf("log = %q", data)
	}
	recs, err := shim.ReadRecords(f.s.cfg.StateDir)
	if err != nil || len(recs) != 1 || recs[0].ExitCode != 3 || recs[0].State != shim.StateExited {
		t.Errorf("records on disk = %+v, %v", recs, err)
	}
}

func TestStopAndRemove(t *testing.T) {
	f := newFixture(t, nil)
	f.create("c1", "main", "sh", "-c", "trap '' TERM; echo ready; while true; do sleep 1; done")
	f.start("c1")
	f.waitFor("the TERM trap", func() bool {
		data, _ := os.ReadFile(filepath.Join(f.logDir, "c1.log"))
		return strings.Contains(string(data), "ready")
	})
	rec, err := f.s.Stop(context.Background(), "c1", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != shim.StateExited || rec.ExitCode != 137 {
		t.Errorf("after stop: %v exit %d, want exited 137", rec.State, rec.ExitCode)
	}
	if err := f.s.Remove(context.Background(), "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Get("c1"); err == nil {
		t.Error("container still known after remove")
	}
	if err := f.s.Remove(context.Background(), "c1"); err == nil {
		t.Error("second remove of an unknown id should say not found (the daemon makes it idempotent)")
	}
}

func TestKubeletSequenceUsesPrecreatedGeneration(t *testing.T) {
	f := newFixture(t, nil)
	f.create("a1", "main", "sleep", "1000")
	f.start("a1")
	f.waitWarm("a1")
	if _, err := f.s.Stop(context.Background(), "a1", 0); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Remove(context.Background(), "a1"); err != nil {
		t.Fatal(err)
	}
	_, warm := f.create("a2", "main", "sleep", "1000")
	if !warm {
		t.Fatal("same-shape create after remove did not use the pre-created generation")
	}
	rec := f.start("a2")
	if rec.State != shim.StateRunning {
		t.Fatalf("a2 is %v", rec.State)
	}
	// Pre-created at idle priority, the released process runs at the
	// shim's own.
	attr, err := unix.SchedGetAttr(rec.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if attr.Policy != unix.SCHED_NORMAL {
		t.Errorf("released container runs with scheduling policy %d, want SCHED_NORMAL", attr.Policy)
	}
	// A different command must not take the pre-created generation.
	f.waitWarm("a2")
	f.s.Stop(context.Background(), "a2", 0)
	f.s.Remove(context.Background(), "a2")
	if _, warm := f.create("a3", "main", "sleep", "999"); warm {
		t.Fatal("create with another command used the pre-created generation")
	}
}

func TestResetPod(t *testing.T) {
	f := newFixture(t, nil)
	f.create("i1", "init", "sh", "-c", "echo run >> /vol/init.log")
	f.start("i1")
	f.waitExited("i1")
	f.create("s1", "sidecar", "sleep", "1000")
	f.start("s1")
	f.create("m1", "main", "sh", "-c", "touch /marker; echo started; sleep 1000")
	f.start("m1")
	if err := os.WriteFile(filepath.Join(f.vol, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.waitWarm("m1")
	first, err := f.s.Get("m1")
	if err != nil {
		t.Fatal(err)
	}

	recs, d, err := f.s.Reset(context.Background())
	if err != nil {
		t.Fatalf("reset: %v", err)
	}
	t.Logf("reset took %s", d)
	byName := map[string]shim.Record{}
	for _, r := range recs {
		byName[r.Name] = r
	}
	if r := byName["init"]; r.State != shim.StateExited || r.ExitCode != 0 || r.RestartCount != 1 {
		t.Errorf("init after reset: %+v", r)
	}
	for _, n := range []string{"sidecar", "main"} {
		r := byName[n]
		if r.State != shim.StateRunning || r.RestartCount != 1 {
			t.Errorf("%s after reset: %v restarts %d", n, r.State, r.RestartCount)
		}
		if r.LastTermination == nil || r.LastTermination.ExitCode != 137 {
			t.Errorf("%s last termination = %+v, want the kill (137)", n, r.LastTermination)
		}
	}
	data, _ := os.ReadFile(filepath.Join(f.vol, "init.log"))
	if got := strings.Count(string(data), "run"); got != 2 {
		t.Errorf("init ran %d times, want 2", got)
	}
	if _, err := os.Stat(filepath.Join(f.vol, "keep")); err != nil {
		t.Errorf("volume content lost: %v", err)
	}
	f.waitFor("main log of both runs", func() bool {
		data, _ := os.ReadFile(filepath.Join(f.logDir, "m1.log"))
		return strings.Count(string(data), "started") == 2
	})
	// The second run has a writable layer of its own, where it made the
	// marker again before saying it started: an exec reaches that run.
	if r := byName["main"]; r.UpperDir == "" || r.UpperDir == first.UpperDir {
		t.Errorf("main's writable layer after reset = %q, want a new one (was %q)", r.UpperDir, first.UpperDir)
	}
	out, _, code, err := f.s.ExecSync(context.Background(), "m1", []string{"sh", "-c", "ls /marker && cat /proc/1/cmdline"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 || !strings.Contains(string(out), "/marker") {
		t.Errorf("exec after reset: output %q code %d, want /marker listed", out, code)
	}
}

func TestExecSync(t *testing.T) {
	f := newFixture(t, nil)
	f.create("c1", "main", "sleep", "1000")
	f.start("c1")
	out, errOut, code, err := f.s.ExecSync(context.Background(), "c1", []string{"sh", "-c", "echo out; echo err >&2; exit 7"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "out\n" || string(errOut) != "err\n" || code != 7 {
		t.Errorf("got %q %q %d", out, errOut, code)
	}
	_, _, _, err = f.s.ExecSync(context.Background(), "c1", []string{"sleep", "10"}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("timeout error = %v", err)
	}
	if _, _, _, err := f.s.ExecSync(context.Background(), "nope", []string{"true"}, 0); err == nil {
		t.Error("exec in unknown container succeeded")
	}
}

// BenchmarkReset measures an in-place reset of a pod shaped like the
// kubelet benchmark's: init "true", sidecar and main "sleep".
func BenchmarkReset(b *testing.B) {
	f := newFixture(b, nil)
	f.create("i", "init", "true")
	f.start("i")
	f.waitExited("i")
	f.create("s", "sidecar", "sleep", "1000")
	f.start("s")
	f.create("m", "main", "sleep", "1000")
	f.start("m")
	warm := func() {
		for _, id := range []string{"i", "s", "m"} {
			f.waitWarm(id)
		}
	}
	warm()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := f.s.Reset(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		warm()
		time.Sleep(20 * time.Millisecond)
		b.StartTimer()
	}
}

// BenchmarkNewGen measures the creation of one generation: rootfs, cgroup,
// namespaces and a process blocked before execve. This is the work
// pre-creation does off the reset path.
func BenchmarkNewGen(b *testing.B) {
	f := newFixture(b, nil)
	t, err := newTemplate(&CreateRequest{ID: "x", Name: "main", Spec: f.spec("sleep", "1000"), Layers: []string{f.layer}})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g, err := f.s.newGen(t, false)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		f.s.destroy(g)
		b.StartTimer()
	}
}

// TestResetCondition checks that AllContainersRestarting is set while a
// reset tears the containers down and cleared once they start again.
func TestResetCondition(t *testing.T) {
	f := newFixture(t, nil)
	f.create("m", "main", "sleep", "1000")
	f.start("m")
	if f.s.Info().Restarting {
		t.Fatal("condition set before any reset")
	}
	var during Info
	f.s.killedHook = func() { during = f.s.Info() }
	if _, _, err := f.s.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !during.Restarting {
		t.Error("AllContainersRestarting was not set while the containers were torn down")
	}
	if after := f.s.Info(); after.Restarting || after.Resets != 1 {
		t.Errorf("after the reset: %+v", after)
	}
}

// TestResetFailingInit checks that a pod whose restart policy is Never
// stops its reset at an init container that fails, and reports it.
func TestResetFailingInit(t *testing.T) {
	f := newFixture(t, func(c *shim.Config) {
		c.RestartPolicy = "Never"
		c.InitContainers = []string{"init"}
	})
	// The init container succeeds the first time only.
	f.create("i", "init", "sh", "-c", "if [ -e /vol/ran ]; then exit 5; fi; touch /vol/ran")
	f.start("i")
	f.waitExited("i")
	f.create("m", "main", "sleep", "1000")
	before := f.start("m")
	_, _, err := f.s.Reset(context.Background())
	if err == nil || !strings.Contains(err.Error(), `init container "init" exited with code 5`) {
		t.Fatalf("reset error = %v, want the failed init container named", err)
	}
	// The reset killed main; its exit is recorded by its monitor, which
	// need not have done so when the reset returns.
	if r := f.waitExited("m"); r.StartedAt != before.StartedAt {
		t.Errorf("main after a failed init: started again at %d, want it not started", r.StartedAt)
	}
}

// TestResetRetriesFailingInit checks that with restart policy Always an
// init container that fails during a reset runs again, with back-off,
// until it succeeds, and only then do the main containers start.
func TestResetRetriesFailingInit(t *testing.T) {
	f := newFixture(t, func(c *shim.Config) { c.InitContainers = []string{"init"} })
	// Succeeds on its first run, fails on its second, succeeds after.
	f.create("i", "init", "sh", "-c", "echo x >> /vol/runs; [ $(wc -l < /vol/runs) -ne 2 ]")
	f.start("i")
	f.waitExited("i")
	f.create("m", "main", "sleep", "1000")
	f.start("m")
	recs, _, err := f.s.Reset(context.Background())
	if err != nil {
		t.Fatalf("reset: %v", err)
	}
	data, _ := os.ReadFile(filepath.Join(f.vol, "runs"))
	if n := strings.Count(string(data), "x"); n != 3 {
		t.Errorf("init ran %d times, want 3 (first start, failed retry, success)", n)
	}
	for _, r := range recs {
		if r.Name == "init" && (r.RestartCount != 2 || r.ExitCode != 0) {
			t.Errorf("init after reset: %+v", r)
		}
		if r.Name == "main" && r.State != shim.StateRunning {
			t.Errorf("main after reset: %v", r.State)
		}
	}
}

// TestUpdateSurvivesReset checks that limits updated on a running
// container hold for its later generations: a reset does not bring back
// the limits it was created with.
func TestUpdateSurvivesReset(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		t.Skip("needs the cgroup v1 memory controller to read limits")
	}
	f.create("m", "main", "sleep", "1000")
	f.start("m")
	f.waitWarm("m")
	limit := int64(64 << 20)
	if err := f.s.Update("m", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
		t.Fatal(err)
	}
	readLimit := func() string {
		r, _ := f.s.Get("m")
		data, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", r.CgroupPath, "memory.limit_in_bytes"))
		return strings.TrimSpace(string(data))
	}
	if got := readLimit(); got != "67108864" {
		t.Fatalf("limit after update = %s", got)
	}
	f.waitWarm("m")
	if _, _, err := f.s.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readLimit(); got != "67108864" {
		t.Errorf("limit after reset = %s, want the updated 67108864", got)
	}
}

// TestStopRightAfterStart stops a container the moment it was started: the
// stop signal must reach the command (here a shell that traps it), not the
// runtime's init code that runs just before the command.
func TestStopRightAfterStart(t *testing.T) {
	f := newFixture(t, nil)
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("c%d", i)
		f.create(id, "main", "sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done")
		f.start(id)
		rec, err := f.s.Stop(context.Background(), id, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// The shell traps the signal: if it came before the trap was set
		// (the shell is pid 1 of its namespace, whose unhandled signals the
		// kernel drops), it is sent again once the trap is. What must not
		// happen is the runtime's own init code dying of it (2), or the
		// signal being lost until the stop timeout kills the shell (137).
		if rec.ExitCode != 7 {
			t.Fatalf("run %d: exit code %d after stop, want 7 (the trap)", i, rec.ExitCode)
		}
		if err := f.s.Remove(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
}

// drainEvents collects the events published until the channel is quiet
// for a moment.
func drainEvents(ch <-chan shim.Event) []shim.Event {
	var out []shim.Event
	for {
		select {
		case e := <-ch:
			out = append(out, e)
		case <-time.After(300 * time.Millisecond):
			return out
		}
	}
}

// eventTypes is the types of the events of container name among evs.
func eventTypes(evs []shim.Event, name string) []shim.EventType {
	var out []shim.EventType
	for _, e := range evs {
		if e.Container.Name == name {
			out = append(out, e.Type)
		}
	}
	return out
}

// checkEventTimes checks what every event of a pod promises: a timestamp
// after the one before, equal to the time the event's record keeps of it.
func checkEventTimes(t *testing.T, evs []shim.Event) {
	t.Helper()
	var last int64
	for i, e := range evs {
		if e.Timestamp <= last {
			t.Errorf("event %d (%s %s) at %d, not after the one before (%d)", i, e.Container.Name, e.Type, e.Timestamp, last)
		}
		last = e.Timestamp
		if e.Type != shim.EventDeleted && e.Container.Time(e.Type) != e.Timestamp {
			t.Errorf("event %d (%s %s) at %d, its record says %d", i, e.Container.Name, e.Type, e.Timestamp, e.Container.Time(e.Type))
		}
	}
}

// A container that exits at once still tells created, started, stopped,
// in that order, each at the time its record keeps.
func TestEventsOfAQuickRun(t *testing.T) {
	f := newFixture(t, nil)
	ch, cancel := f.s.Subscribe()
	defer cancel()
	f.create("c", "main", "true")
	f.start("c")
	rec := f.waitExited("c")
	if err := f.s.Remove(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
	evs := drainEvents(ch)
	want := []shim.EventType{shim.EventCreated, shim.EventStarted, shim.EventStopped, shim.EventDeleted}
	if got := eventTypes(evs, "main"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	checkEventTimes(t, evs)
	if evs[0].Timestamp != rec.CreatedAt || evs[1].Timestamp != rec.StartedAt || evs[2].Timestamp != rec.FinishedAt {
		t.Errorf("event times %d %d %d, record %d %d %d", evs[0].Timestamp, evs[1].Timestamp, evs[2].Timestamp,
			rec.CreatedAt, rec.StartedAt, rec.FinishedAt)
	}
}

// TestResetIsQuiet checks that a watcher (the kubelet) hears nothing while
// a reset runs, and afterwards what happened, in order: every container's
// kill (or, for one that had exited, nothing more), then each new run's
// start, and an init container's completion.
func TestResetIsQuiet(t *testing.T) {
	f := newFixture(t, nil)
	f.create("i", "init", "true")
	f.start("i")
	f.waitExited("i")
	f.create("m", "main", "sleep", "1000")
	f.start("m")
	ch, cancel := f.s.Subscribe()
	defer cancel()
	drainEvents(ch)
	var during []shim.Event
	f.s.killedHook = func() { during = drainNow(ch) }
	recs, _, err := f.s.Reset(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(during) > 0 {
		t.Errorf("events during the reset: %v", during)
	}
	evs := drainEvents(ch)
	checkEventTimes(t, evs)
	if want := []shim.EventType{shim.EventStopped, shim.EventStarted}; fmt.Sprint(eventTypes(evs, "main")) != fmt.Sprint(want) {
		t.Errorf("main's events = %v, want %v", eventTypes(evs, "main"), want)
	}
	if want := []shim.EventType{shim.EventStarted, shim.EventStopped}; fmt.Sprint(eventTypes(evs, "init")) != fmt.Sprint(want) {
		t.Errorf("init's events = %v, want %v (ran again)", eventTypes(evs, "init"), want)
	}
	byName := map[string]shim.Record{}
	for _, r := range recs {
		byName[r.Name] = r
	}
	for _, e := range evs {
		r := byName[e.Container.Name]
		switch {
		case e.Container.Name == "main" && e.Type == shim.EventStopped:
			if e.Container.RestartCount != 0 || e.Container.ExitCode != 137 || r.LastTermination == nil || e.Timestamp != r.LastTermination.FinishedAt {
				t.Errorf("main's stop: %+v, want the kill of run 0 at its last termination (%+v)", e.Container, r.LastTermination)
			}
		case e.Type == shim.EventStarted:
			if e.Container.RestartCount != 1 || e.Timestamp != r.StartedAt {
				t.Errorf("%s's start: %+v, want run 1 started at %d", e.Container.Name, e.Container, r.StartedAt)
			}
		}
	}
	// The kills came before the starts.
	if len(evs) == 4 && evs[0].Type != shim.EventStopped {
		t.Errorf("first event after the reset: %s of %s, want main's kill", evs[0].Type, evs[0].Container.Name)
	}
}

// drainNow collects the events already published.
func drainNow(ch <-chan shim.Event) []shim.Event {
	var out []shim.Event
	for {
		select {
		case e := <-ch:
			out = append(out, e)
		default:
			return out
		}
	}
}

// TestRuleRestartIsQuiet checks the same for a container restarted by its
// own restart rule: its exit is told only once it runs again.
func TestRuleRestartIsQuiet(t *testing.T) {
	f := newFixture(t, func(c *shim.Config) {
		c.RestartRules = map[string][]shim.RestartRule{
			"main": {{Action: shim.ActionRestart, ExitCodes: &shim.ExitCodes{Operator: "In", Values: []int32{3}}}},
		}
	})
	f.create("m", "main", "sh", "-c", "if [ ! -e /vol/failed ]; then touch /vol/failed; exit 3; fi; exec sleep 1000")
	ch, cancel := f.s.Subscribe()
	defer cancel()
	f.start("m")
	f.waitFor("the restart by the rule", func() bool {
		r, _ := f.s.Get("m")
		return r.RestartCount == 1 && r.State == shim.StateRunning
	})
	evs := drainEvents(ch)
	checkEventTimes(t, evs)
	want := []shim.EventType{shim.EventStarted, shim.EventStopped, shim.EventStarted}
	if got := eventTypes(evs, "main"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events = %v, want %v (the start, the exit, the restart)", got, want)
	}
	if e := evs[1].Container; e.ExitCode != 3 || e.RestartCount != 0 {
		t.Errorf("the exit told: %+v, want run 0's exit 3", e)
	}
	// Told once run 1 runs: a status read that follows the event must see
	// it running.
	if cur := evs[1].Current; cur.State != shim.StateRunning || cur.RestartCount != 1 {
		t.Errorf("the exit's current record: run %d %s, want run 1 running", cur.RestartCount, cur.State)
	}
	if r, _ := f.s.Get("m"); r.LastTermination == nil || r.LastTermination.ExitCode != 3 {
		t.Errorf("last termination = %+v, want exit 3", r.LastTermination)
	}
}

// TestRuleResetTellsTheExitFirst checks that a reset asked for by a
// container's RestartAllContainers rule tells that container's exit first,
// at the time it happened, and the kills it caused after it.
func TestRuleResetTellsTheExitFirst(t *testing.T) {
	f := newFixture(t, func(c *shim.Config) {
		c.RestartRules = map[string][]shim.RestartRule{
			"side": {{Action: shim.ActionRestartAllContainers, ExitCodes: &shim.ExitCodes{Operator: "In", Values: []int32{3}}}},
		}
	})
	f.create("m", "main", "sleep", "1000")
	f.start("m")
	f.create("s", "side", "sh", "-c", "if [ ! -e /vol/failed ]; then touch /vol/failed; exit 3; fi; exec sleep 1000")
	ch, cancel := f.s.Subscribe()
	defer cancel()
	f.start("s")
	f.waitFor("the reset by the rule", func() bool {
		r, _ := f.s.Get("s")
		return r.RestartCount == 1 && r.State == shim.StateRunning
	})
	f.waitFor("main's restart", func() bool {
		r, _ := f.s.Get("m")
		return r.RestartCount == 1 && r.State == shim.StateRunning
	})
	evs := drainEvents(ch)
	checkEventTimes(t, evs)
	var stops []shim.Event
	for _, e := range evs {
		if e.Type == shim.EventStopped {
			stops = append(stops, e)
		}
	}
	if len(stops) != 2 || stops[0].Container.Name != "side" || stops[1].Container.Name != "main" {
		t.Fatalf("stopped events %v, want side's exit, then main's kill", stops)
	}
	side, _ := f.s.Get("s")
	if lt := side.LastTermination; lt == nil || lt.ExitCode != 3 || lt.FinishedAt != stops[0].Timestamp {
		t.Errorf("side's last termination %+v, want exit 3 at %d, the time its exit was told", lt, stops[0].Timestamp)
	}
	main, _ := f.s.Get("m")
	if side.LastTermination != nil && side.LastTermination.FinishedAt >= main.StartedAt {
		t.Errorf("side's exit recorded at %d, not before main's restart at %d", side.LastTermination.FinishedAt, main.StartedAt)
	}
}

// TestStopReachesExecedProgram stops a container whose shell is about to
// exec the real program: the signal the shell (pid 1, no handler yet)
// cannot receive must reach the program once it handles it, not be lost
// until the stop timeout kills the container.
func TestStopReachesExecedProgram(t *testing.T) {
	f := newFixture(t, nil)
	f.create("c", "main", "sh", "-c", "sleep 0.2; exec sh -c \"trap 'exit 9' TERM; while true; do sleep 0.05; done\"")
	f.start("c")
	rec, err := f.s.Stop(context.Background(), "c", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ExitCode != 9 {
		t.Errorf("exit code %d, want 9: the stop signal never reached the program's handler", rec.ExitCode)
	}
}

// An init that shares its pid namespace leaves its background processes in
// the container's cgroup when it exits; they end with it, before its exit is
// recorded, as they would in a pid namespace of its own.
func TestSharedPIDNamespaceEndsWithInit(t *testing.T) {
	f := newFixture(t, nil)
	var spec specs.Spec
	if err := json.Unmarshal(f.spec("sh", "-c", "sleep 7717 & exit 0"), &spec); err != nil {
		t.Fatal(err)
	}
	spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
		return ns.Type == specs.PIDNamespace
	})
	data, err := json.Marshal(&spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.s.Create(context.Background(), &CreateRequest{
		ID: "c1", Name: "main", Spec: data, Layers: []string{f.layer},
		LogPath: filepath.Join(f.logDir, "c1.log"),
	}); err != nil {
		t.Fatal(err)
	}
	f.start("c1")
	f.waitExited("c1")
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if cmd, _ := os.ReadFile(p); string(cmd) == "sleep\x007717\x00" {
			t.Errorf("%s (sleep 7717) outlived the init that started it", filepath.Dir(p))
		}
	}
}

// A create that fails after its generation was made (here: its log cannot be
// opened) leaves nothing of the container behind, for a reset neither.
func TestFailedCreateLeavesNoContainer(t *testing.T) {
	f := newFixture(t, nil)
	f.create("m1", "main", "sleep", "1000")
	f.start("m1")
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.s.Create(context.Background(), &CreateRequest{
		ID: "s1", Name: "side", Spec: f.spec("sleep", "1000"), Layers: []string{f.layer},
		LogPath: filepath.Join(notDir, "s1.log"),
	})
	if err == nil {
		t.Fatal("create with a log path under a regular file succeeded")
	}
	if _, err := f.s.Get("s1"); err == nil {
		t.Error("the failed container is listed")
	}
	recs, _, err := f.s.Reset(context.Background())
	if err != nil {
		t.Fatalf("reset: %v", err)
	}
	if len(recs) != 1 || recs[0].ID != "m1" {
		t.Errorf("reset restarted %+v, want m1 only", recs)
	}
}

// TestStartDuringReset starts a created container while a reset has
// killed its generation and not yet given it a new one: the start loses
// a race (FailedPrecondition), as TestLoad saw, instead of failing with
// an unclassified "container process is already dead".
func TestStartDuringReset(t *testing.T) {
	f := newFixture(t, nil)
	f.create("m", "main", "sleep", "1000")
	f.start("m")
	f.create("a", "side", "sleep", "1000")
	var startErr error
	f.s.killedHook = func() { _, startErr = f.s.Start(context.Background(), "a") }
	if _, _, err := f.s.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	if startErr != nil && !errdefs.IsFailedPrecondition(startErr) {
		t.Errorf("Start during the reset = %v, want success or FailedPrecondition", startErr)
	}
}

// TestRemovedNameLetsGoOfItsGenerations checks that a container name whose
// container was removed keeps its next generations for a successor for a
// while, and then discards them.
func TestRemovedNameLetsGoOfItsGenerations(t *testing.T) {
	f := newFixture(t, nil)
	f.s.mu.Lock()
	f.s.removedLinger = 200 * time.Millisecond
	f.s.mu.Unlock()
	ready := func(name string) int {
		f.s.mu.Lock()
		defer f.s.mu.Unlock()
		return len(f.s.slots[name].next)
	}
	f.create("x1", "oneoff", "sleep", "1000")
	f.start("x1")
	f.waitWarm("x1")
	if _, err := f.s.Stop(context.Background(), "x1", 0); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Remove(context.Background(), "x1"); err != nil {
		t.Fatal(err)
	}
	// A successor within the linger gets the pre-created generation.
	if _, warm := f.create("x2", "oneoff", "sleep", "1000"); !warm {
		t.Error("a successor created right after the removal was not served warm")
	}
	f.start("x2")
	f.waitWarm("x2")
	if err := f.s.Remove(context.Background(), "x2"); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the removed name's next generations discarded", func() bool {
		return ready("oneoff") == 0 && !f.s.Info().Precreating
	})
	// The name is cold again, and works.
	if _, warm := f.create("x3", "oneoff", "sleep", "1000"); warm {
		t.Error("a create after the linger was served from a discarded generation")
	}
	f.start("x3")
}
