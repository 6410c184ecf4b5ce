package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

// The worker writes numbered lines until the test creates /ctl/exit, then
// exits 7; /ctl/last always holds the last number it wrote.
const restartWorker = `i=0
while [ ! -e /ctl/exit ]; do
  i=$((i+1)); echo "tick $i"; echo $i > /ctl/last.tmp; mv /ctl/last.tmp /ctl/last; sleep 0.02
done
echo "last line"
exit 7`

// TestDaemonRestart checks that pods outlive the daemon: a container that
// exits while the daemon is down has its exit code and every log line kept,
// and a daemon started again on the same directories reports the pod and
// its containers as before.
func TestDaemonRestart(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill bool
	}{
		{"SIGKILL", true},
		{"SIGTERM", false},
	} {
		t.Run(tc.name, func(t *testing.T) { testDaemonRestart(t, tc.kill) })
	}
}

func testDaemonRestart(t *testing.T, kill bool) {
	ctx := begin(t)
	ctl, err := os.MkdirTemp(d.base, "ctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(ctl) })

	podCfg := newPodConfig("restart")
	podID := runPod(t, podCfg)
	// Registered after runPod so it runs first: the pod's removal needs a
	// daemon, even when the test stopped half-way.
	t.Cleanup(func() {
		if d.PID() == 0 {
			if err := d.Start(); err != nil {
				t.Errorf("start the daemon again after the test: %v", err)
			}
		}
	})
	workerCfg := newContainerConfig("worker", "sh", "-c", restartWorker)
	workerCfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/ctl", HostPath: ctl}}
	worker := runContainer(t, podID, podCfg, workerCfg)
	steady := runContainer(t, podID, podCfg, newContainerConfig("steady", "sleep", "3600"))
	waitFor(t, "the worker to write", func() (bool, string) {
		_, err := os.Stat(filepath.Join(ctl, "last"))
		return err == nil, fmt.Sprint(err)
	})

	before := listAll(t, podID, worker, steady)
	workerPid := containerPid(t, worker)
	shimsBefore := shimPids(t)

	if kill {
		d.Kill()
	} else if err := d.Stop(); err != nil {
		t.Fatalf("stop the daemon: %v", err)
	}
	if got := shimPids(t); !sameSet(got, shimsBefore) {
		t.Fatalf("shims after the daemon stopped: %v, before: %v", got, shimsBefore)
	}
	if err := os.WriteFile(filepath.Join(ctl, "exit"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the worker to exit while the daemon is down", func() (bool, string) {
		err := syscall.Kill(workerPid, 0)
		return err == syscall.ESRCH, fmt.Sprintf("pid %d: kill 0: %v", workerPid, err)
	})

	if err := d.Start(); err != nil {
		t.Fatalf("start the daemon again: %v", err)
	}
	after := listAll(t, podID, worker, steady)

	// What may change: the worker exited. Everything else is as before.
	wantWorker := proto.Clone(before.workerStatus).(*runtimeapi.ContainerStatus)
	wantWorker.State = runtimeapi.ContainerState_CONTAINER_EXITED
	wantWorker.ExitCode = 7
	wantWorker.Reason = "Error"
	wantWorker.FinishedAt = after.workerStatus.FinishedAt
	if after.workerStatus.FinishedAt < after.workerStatus.StartedAt {
		t.Errorf("worker finished_at %d before started_at %d", after.workerStatus.FinishedAt, after.workerStatus.StartedAt)
	}
	if !proto.Equal(after.workerStatus, wantWorker) {
		t.Errorf("worker status after the restart:\n%v\nwant:\n%v", after.workerStatus, wantWorker)
	}
	for i, c := range before.containers {
		if c.Id == worker {
			before.containers[i].State = runtimeapi.ContainerState_CONTAINER_EXITED
		}
	}
	for _, cmp := range []struct {
		what          string
		before, after proto.Message
	}{
		{"PodSandboxStatus", before.podStatus, after.podStatus},
		{"ListPodSandbox", before.pods, after.pods},
		{"ListContainers", &runtimeapi.ListContainersResponse{Containers: before.containers}, &runtimeapi.ListContainersResponse{Containers: after.containers}},
		{"ContainerStatus of the steady container", before.steadyStatus, after.steadyStatus},
	} {
		if !proto.Equal(cmp.before, cmp.after) {
			t.Errorf("%s differs after the restart:\nbefore: %v\nafter:  %v", cmp.what, cmp.before, cmp.after)
		}
	}

	// Every line the worker wrote is in the log, those written while the
	// daemon was down included.
	lastData, err := os.ReadFile(filepath.Join(ctl, "last"))
	if err != nil {
		t.Fatal(err)
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(lastData)))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]string, 0, last+1)
	for i := 1; i <= last; i++ {
		want = append(want, fmt.Sprintf("tick %d", i))
	}
	want = append(want, "last line")
	got := logContents(readCRILog(t, after.workerStatus.LogPath), "stdout")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("worker log has %d lines, want %d (tick 1 to tick %d, then \"last line\"); first difference at line %d",
			len(got), len(want), last, firstDiff(got, want)+1)
	}

	// The daemon talks to the pod's shim again.
	if out, _, code := execSync(t, steady, "echo", "still here"); out != "still here\n" || code != 0 {
		t.Errorf("exec after the restart: %q, exit %d", out, code)
	}
	if _, err := d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: steady, Timeout: 0}); err != nil {
		t.Errorf("StopContainer after the restart: %v", err)
	}
	if st := waitExited(t, steady); st.ExitCode != 137 {
		t.Errorf("steady container stopped after the restart with exit code %d, want 137", st.ExitCode)
	}
}

// restartView is what a client sees of one pod.
type restartView struct {
	podStatus                  *runtimeapi.PodSandboxStatus
	pods                       *runtimeapi.ListPodSandboxResponse
	containers                 []*runtimeapi.Container
	workerStatus, steadyStatus *runtimeapi.ContainerStatus
}

func listAll(t *testing.T, podID, worker, steady string) restartView {
	t.Helper()
	ctx := testCtx(t)
	pods, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: podID}})
	if err != nil {
		t.Fatal(err)
	}
	ctrs, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatal(err)
	}
	return restartView{
		podStatus:    podStatus(t, podID),
		pods:         pods,
		containers:   ctrs.Containers,
		workerStatus: containerStatus(t, worker),
		steadyStatus: containerStatus(t, steady),
	}
}

// containerPid reads a running container's host pid from its verbose
// status.
func containerPid(t testing.TB, id string) int {
	t.Helper()
	info := verboseInfo(t, id)
	pid, _ := info["pid"].(float64)
	if pid <= 0 {
		t.Fatalf("verbose status of %s has no pid: %v", id, info)
	}
	return int(pid)
}

// shimPids lists the run's shim processes.
func shimPids(t *testing.T) []string {
	t.Helper()
	procs, err := d.processes()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range procs {
		var pid int
		if _, err := fmt.Sscanf(p, "pid %d", &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && strings.Contains(string(cmdline), "\x00shim\x00--state\x00"+d.State+"/") {
			out = append(out, strconv.Itoa(pid))
		}
	}
	if len(out) == 0 {
		t.Fatal("no shim process found")
	}
	return out
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestDaemonKilledMidOperation kills the daemon (SIGKILL, as a crash) while
// a reset and container creates are in flight, in several rounds. The
// reset is held in the middle (its init container waits for a file) when
// the kill comes; the creates land wherever they land. Nothing may be lost
// or half-made: after a restart every container known before is listed,
// and every create that succeeded; the daemon's view of each container
// comes to match its shim's (the shim finishes the reset on its own); the
// shim knows no container the daemon does not; a container whose create was
// cut short is removable; and the pod goes on working.
func TestDaemonKilledMidOperation(t *testing.T) {
	ctx := begin(t)
	ctl, err := os.MkdirTemp(d.base, "ctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(ctl) })
	podCfg := newPodConfig("killed-mid-op")
	podCfg.Annotations["warmpod.io/init-containers"] = "init"
	podID := runPod(t, podCfg)
	t.Cleanup(func() {
		if d.PID() == 0 {
			if err := d.Start(); err != nil {
				t.Errorf("start the daemon again after the test: %v", err)
			}
		}
	})
	withCtl := func(c *runtimeapi.ContainerConfig) *runtimeapi.ContainerConfig {
		c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/ctl", HostPath: ctl}}
		return c
	}
	// The init container runs through at first; in a reset it waits for
	// /ctl/go.
	initCfg := withCtl(newContainerConfig("init", "sh", "-c",
		"if [ -e /ctl/started ]; then while [ ! -e /ctl/go ]; do sleep 0.02; done; fi; touch /ctl/started"))
	initID := runContainer(t, podID, podCfg, initCfg)
	waitExited(t, initID)
	known := map[string]bool{initID: true}
	for _, name := range []string{"sidecar", "main"} {
		known[runContainer(t, podID, podCfg, newContainerConfig(name, "sleep", "3600"))] = true
	}

	for round := 1; round <= 3; round++ {
		_ = os.Remove(filepath.Join(ctl, "go"))
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = wp().ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: podID})
		}()
		waitFor(t, "the reset to wait for its init container", func() (bool, string) {
			st, err := wp().PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: podID})
			if err != nil {
				return false, err.Error()
			}
			for _, c := range st.Containers {
				if c.Id == initID {
					return c.RestartCount == uint32(round) && c.State == "CONTAINER_RUNNING", fmt.Sprintf("init %s, restarts %d", c.State, c.RestartCount)
				}
			}
			return false, "init not listed"
		})
		var mu sync.Mutex
		created := map[string]bool{}
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cfg := newContainerConfig(fmt.Sprintf("extra-%d-%d", round, i), "sleep", "3600")
				resp, err := d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
				if err != nil {
					return
				}
				mu.Lock()
				created[resp.ContainerId] = true
				mu.Unlock()
				_, _ = d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId})
			}()
		}
		d.Kill()
		wg.Wait()
		if err := d.Start(); err != nil {
			t.Fatalf("round %d: start the daemon again: %v", round, err)
		}
		if err := os.WriteFile(filepath.Join(ctl, "go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if st := podStatus(t, podID); st.State != runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Fatalf("round %d: pod is %v after the restart", round, st.State)
		}
		listed := map[string]bool{}
		for _, id := range containerIDs(listContainers(t, podID)) {
			listed[id] = true
		}
		for id := range known {
			if !listed[id] {
				t.Errorf("round %d: container %s known before the kill is gone", round, short(id))
			}
		}
		for id := range created {
			if !listed[id] {
				t.Errorf("round %d: container %s, created before the kill, is gone", round, short(id))
			}
		}
		var views string
		waitFor(t, "the daemon's view to match the shim's", func() (bool, string) {
			ok, v := sameViews(t, podID)
			views = v
			return ok, v
		})
		// A create cut short between the daemon's record and the shim's:
		// the daemon has the container, the shim never made it. It goes.
		for id := range listed {
			if inShim(t, podID, id) {
				known[id] = true
				continue
			}
			if known[id] {
				t.Errorf("round %d: the shim lost container %s:\n%s", round, short(id), views)
			}
			if _, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
				t.Errorf("round %d: remove container %s whose create was cut short: %v", round, short(id), err)
			}
		}
	}
	// The pod still resets, all of it.
	if err := os.WriteFile(filepath.Join(ctl, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := wp().ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatalf("ResetPod after the rounds: %v", err)
	}
	for _, c := range resp.Containers {
		if c.Id != initID && c.State != "CONTAINER_RUNNING" {
			t.Errorf("container %s (%s) after the last reset: %s", short(c.Id), c.Name, c.State)
		}
	}
}

func listContainers(t testing.TB, podID string) []*runtimeapi.Container {
	t.Helper()
	resp, err := d.Runtime.ListContainers(testCtx(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	return resp.Containers
}

// sameViews tells whether the daemon reports every container the pod's
// shim has as the shim has it (state and restart count), and the shim has
// every container the daemon reports but for those never made; it returns
// both views.
func sameViews(t testing.TB, podID string) (bool, string) {
	t.Helper()
	live, err := wp().PodStatus(testCtx(t), &warmpodv1.PodStatusRequest{PodSandboxId: podID})
	if err != nil {
		return false, err.Error()
	}
	shimView := map[string]string{}
	for _, c := range live.Containers {
		shimView[c.Id] = fmt.Sprintf("%s %s restarts %d", c.Name, c.State, c.RestartCount)
	}
	daemonView := map[string]string{}
	for _, c := range listContainers(t, podID) {
		restarts, _ := verboseInfo(t, c.Id)["restartCount"].(float64)
		daemonView[c.Id] = fmt.Sprintf("%s %s restarts %d", c.Metadata.Name, c.State, int(restarts))
	}
	same := true
	for id, s := range shimView {
		if daemonView[id] != s {
			same = false
		}
	}
	return same, fmt.Sprintf("shim: %v\ndaemon: %v", shimView, daemonView)
}

// inShim tells whether the pod's shim has container id.
func inShim(t testing.TB, podID, id string) bool {
	t.Helper()
	live, err := wp().PodStatus(testCtx(t), &warmpodv1.PodStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatalf("PodStatus: %v", err)
	}
	for _, c := range live.Containers {
		if c.Id == id {
			return true
		}
	}
	return false
}
