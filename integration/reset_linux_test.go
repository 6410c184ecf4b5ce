package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

// wp is the warmpod API client of the run's daemon.
func wp() warmpodv1.WarmpodClient { return warmpodv1.NewWarmpodClient(d.Conn()) }

// resetPod is a pod of the shape KEP-5532 talks about: an init container
// that appends to a file in an emptyDir-like volume, a sidecar and a main
// container. The main container reports, in its log, whether it found a
// marker it leaves in its writable layer.
type resetPod struct {
	id      string
	cfg     *runtimeapi.PodSandboxConfig
	vol     string
	configs []*runtimeapi.ContainerConfig
	ids     []string
}

func newResetPod(t *testing.T, name string, annotations map[string]string) *resetPod {
	t.Helper()
	p := &resetPod{cfg: newPodConfig(name), vol: t.TempDir()}
	for k, v := range annotations {
		p.cfg.Annotations[k] = v
	}
	p.id = runPod(t, p.cfg)
	mount := []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: p.vol}}
	initCfg := newContainerConfig("init", "sh", "-c", "echo run >> /data/init.log")
	sidecarCfg := newContainerConfig("sidecar", "sleep", "3600")
	mainCfg := newContainerConfig("main", "sh", "-c",
		"if [ -e /marker ]; then echo stale-layer; fi; touch /marker; echo main-started; exec sleep 3600")
	for _, c := range []*runtimeapi.ContainerConfig{initCfg, sidecarCfg, mainCfg} {
		c.Mounts = mount
		p.configs = append(p.configs, c)
	}
	p.startAll(t)
	return p
}

// startAll creates and starts the containers in Kubernetes' order, the
// init container to completion, as the kubelet does.
func (p *resetPod) startAll(t *testing.T) {
	t.Helper()
	p.ids = p.ids[:0]
	for i, c := range p.configs {
		id := runContainer(t, p.id, p.cfg, c)
		p.ids = append(p.ids, id)
		if i == 0 {
			if st := waitExited(t, id); st.ExitCode != 0 {
				t.Fatalf("init container exited with %d", st.ExitCode)
			}
		}
	}
}

// waitWarm waits until every container has its next generation ready.
func (p *resetPod) waitWarm(t *testing.T) {
	t.Helper()
	waitFor(t, "warm next generations", func() (bool, string) {
		st, err := wp().PodStatus(testCtx(t), &warmpodv1.PodStatusRequest{PodSandboxId: p.id})
		if err != nil {
			return false, err.Error()
		}
		for _, c := range st.Containers {
			if !c.Warm {
				return false, fmt.Sprintf("%s has no warm generation", c.Name)
			}
		}
		return true, ""
	})
}

func (p *resetPod) initRuns(t *testing.T) int {
	data, _ := os.ReadFile(filepath.Join(p.vol, "init.log"))
	return strings.Count(string(data), "run")
}

// verboseInfo returns the "info" map of a verbose ContainerStatus.
func verboseInfo(t testing.TB, id string) map[string]any {
	t.Helper()
	resp, err := d.Runtime.ContainerStatus(testCtx(t), &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
		t.Fatalf("verbose info of %s: %v", id, err)
	}
	return info
}

func TestResetPodNative(t *testing.T) {
	ctx := begin(t)
	p := newResetPod(t, "reset-native", nil)
	ipBefore := podStatus(t, p.id).Network.Ip
	if err := os.WriteFile(filepath.Join(p.vol, "keep"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.waitWarm(t)

	resp, err := wp().ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: p.id})
	if err != nil {
		t.Fatalf("ResetPod: %v", err)
	}
	t.Logf("reset took %.2f ms in the shim", float64(resp.DurationNs)/1e6)
	byName := map[string]*warmpodv1.ContainerStatus{}
	for _, c := range resp.Containers {
		byName[c.Name] = c
	}
	if c := byName["init"]; c == nil || c.State != "CONTAINER_EXITED" || c.ExitCode != 0 || c.RestartCount != 1 {
		t.Errorf("init after reset: %+v", c)
	}
	for _, n := range []string{"sidecar", "main"} {
		c := byName[n]
		if c == nil || c.State != "CONTAINER_RUNNING" || c.RestartCount != 1 {
			t.Fatalf("%s after reset: %+v", n, c)
		}
		if c.LastTermination == nil || c.LastTermination.ExitCode != 137 {
			t.Errorf("%s last termination = %+v, want the kill (137)", n, c.LastTermination)
		}
		if !c.FromWarm {
			t.Errorf("%s was not restarted from its pre-created generation", n)
		}
	}
	// The same container ids, the same sandbox, IP and volume content.
	for i, id := range p.ids {
		if st := containerStatus(t, id); st.Metadata.Name != p.configs[i].Metadata.Name {
			t.Errorf("container %s is now %s", id, st.Metadata.Name)
		}
	}
	if ip := podStatus(t, p.id).Network.Ip; ip != ipBefore {
		t.Errorf("pod IP changed from %s to %s", ipBefore, ip)
	}
	if data, err := os.ReadFile(filepath.Join(p.vol, "keep")); err != nil || string(data) != "kept" {
		t.Errorf("volume content after reset: %q, %v", data, err)
	}
	if n := p.initRuns(t); n != 2 {
		t.Errorf("init container ran %d times, want 2", n)
	}
	// A fresh writable layer: the main container never finds its marker.
	mainLog := filepath.Join(p.cfg.LogDirectory, "main.log")
	waitFor(t, "main's second start in its log", func() (bool, string) {
		lines := logContents(readCRILog(t, mainLog), "stdout")
		return strings.Count(strings.Join(lines, "\n"), "main-started") == 2, strings.Join(lines, "|")
	})
	if lines := logContents(readCRILog(t, mainLog), "stdout"); strings.Contains(strings.Join(lines, "\n"), "stale-layer") {
		t.Errorf("main found its old writable layer: %q", lines)
	}
	if info := verboseInfo(t, p.ids[2]); info["restartCount"] != float64(1) {
		t.Errorf("verbose restartCount = %v", info["restartCount"])
	}
}

// TestResetKubeletSequence drives the reset the way the kubelet does for
// RestartAllContainers: every container stopped without grace and removed,
// then created and started again with the next attempt.
func TestResetKubeletSequence(t *testing.T) {
	ctx := begin(t)
	p := newResetPod(t, "reset-kubelet", nil)
	ipBefore := podStatus(t, p.id).Network.Ip
	p.waitWarm(t)
	for _, id := range p.ids {
		if _, err := d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0}); err != nil {
			t.Fatalf("StopContainer: %v", err)
		}
		if _, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer: %v", err)
		}
	}
	for _, c := range p.configs {
		c.Metadata.Attempt++
		// The kubelet bumps the restart count it keeps in an annotation.
		c.Annotations = map[string]string{"io.kubernetes.container.restartCount": "1"}
		c.LogPath = c.Metadata.Name + "-1.log"
	}
	p.startAll(t)
	for i, id := range p.ids {
		info := verboseInfo(t, id)
		if info["fromWarm"] != true {
			t.Errorf("%s: CreateContainer did not use the pre-created generation (info %v)", p.configs[i].Metadata.Name, info)
		}
	}
	if n := p.initRuns(t); n != 2 {
		t.Errorf("init container ran %d times, want 2", n)
	}
	if ip := podStatus(t, p.id).Network.Ip; ip != ipBefore {
		t.Errorf("pod IP changed from %s to %s", ipBefore, ip)
	}
	// The new main logs to the new path the kubelet gave.
	waitFor(t, "main's log at its new path", func() (bool, string) {
		lines := logContents(readCRILog(t, filepath.Join(p.cfg.LogDirectory, "main-1.log")), "stdout")
		return strings.Contains(strings.Join(lines, "\n"), "main-started"), strings.Join(lines, "|")
	})
	resp, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: p.id}})
	if err != nil || len(resp.Containers) != 3 {
		t.Fatalf("containers after the sequence: %v, %v", containerIDs(resp.GetContainers()), err)
	}
}

// TestResetDuringReset asks for two resets at once: both are done, one
// after the other.
func TestResetDuringReset(t *testing.T) {
	ctx := begin(t)
	p := newResetPod(t, "reset-twice", nil)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, errs[i] = wp().ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: p.id})
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent ResetPod: %v", err)
		}
	}
	st, err := wp().PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: p.id})
	if err != nil {
		t.Fatal(err)
	}
	if st.Resets != 2 {
		t.Errorf("resets = %d, want 2", st.Resets)
	}
	for _, c := range st.Containers {
		if c.RestartCount != 2 {
			t.Errorf("%s restart count = %d, want 2", c.Name, c.RestartCount)
		}
	}
	if n := p.initRuns(t); n != 3 {
		t.Errorf("init container ran %d times, want 3", n)
	}
}

// TestResetIgnoresGracePeriod resets a pod whose main container refuses
// SIGTERM: the reset kills without a grace period, so it neither waits for
// nor needs the container's consent.
func TestResetIgnoresGracePeriod(t *testing.T) {
	ctx := begin(t)
	cfg := newPodConfig("reset-stubborn")
	id := runPod(t, cfg)
	main := runContainer(t, id, cfg, newContainerConfig("main", "sh", "-c", "trap '' TERM; echo ready; while true; do sleep 1; done"))
	waitFor(t, "the TERM trap", func() (bool, string) {
		lines := logContents(readCRILog(t, filepath.Join(cfg.LogDirectory, "main.log")), "stdout")
		return len(lines) > 0, ""
	})
	resp, err := wp().ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("ResetPod: %v", err)
	}
	c := resp.Containers[0]
	if c.Id != main || c.State != "CONTAINER_RUNNING" || c.RestartCount != 1 || c.LastTermination.GetExitCode() != 137 {
		t.Errorf("after reset: %+v", c)
	}
}

// TestRestartRules lets the shim apply Kubernetes restart rules itself: an
// exit code matching RestartAllContainers resets the whole pod, one
// matching Restart restarts that container alone.
func TestRestartRules(t *testing.T) {
	begin(t)
	rules := `{"main":[{"action":"RestartAllContainers","exitCodes":{"operator":"In","values":[42]}}],` +
		`"sidecar":[{"action":"Restart","exitCodes":{"operator":"NotIn","values":[0]}}]}`
	cfg := newPodConfig("reset-rules")
	cfg.Annotations["warmpod.io/restart-policy-rules"] = rules
	vol := t.TempDir()
	id := runPod(t, cfg)
	mount := []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: vol}}
	initCfg := newContainerConfig("init", "sh", "-c", "echo run >> /data/init.log")
	initCfg.Mounts = mount
	initID := runContainer(t, id, cfg, initCfg)
	waitExited(t, initID)
	// The sidecar fails once; its rule restarts it in place.
	sidecarCfg := newContainerConfig("sidecar", "sh", "-c", "if [ ! -e /data/sidecar-failed ]; then touch /data/sidecar-failed; exit 3; fi; exec sleep 3600")
	sidecarCfg.Mounts = mount
	sidecar := runContainer(t, id, cfg, sidecarCfg)
	waitFor(t, "the sidecar restarted by its rule", func() (bool, string) {
		st, _ := wp().PodStatus(testCtx(t), &warmpodv1.PodStatusRequest{PodSandboxId: id})
		for _, c := range st.GetContainers() {
			if c.Id == sidecar {
				return c.RestartCount == 1 && c.State == "CONTAINER_RUNNING", fmt.Sprintf("%+v", c)
			}
		}
		return false, "sidecar not listed"
	})
	// The main container exits with 42 once: the whole pod restarts.
	mainCfg := newContainerConfig("main", "sh", "-c", "if [ ! -e /data/main-failed ]; then touch /data/main-failed; exit 42; fi; exec sleep 3600")
	mainCfg.Mounts = mount
	runContainer(t, id, cfg, mainCfg)
	waitFor(t, "the pod reset by main's rule", func() (bool, string) {
		st, _ := wp().PodStatus(testCtx(t), &warmpodv1.PodStatusRequest{PodSandboxId: id})
		if st.GetResets() != 1 {
			return false, fmt.Sprintf("resets %d", st.GetResets())
		}
		for _, c := range st.Containers {
			if c.Name == "main" && c.State == "CONTAINER_RUNNING" && c.LastTermination.GetExitCode() == 42 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", st.Containers)
	})
	data, _ := os.ReadFile(filepath.Join(vol, "init.log"))
	if n := strings.Count(string(data), "run"); n != 2 {
		t.Errorf("init container ran %d times, want 2", n)
	}
}

// TestResetNoLeaks resets a pod many times and checks that nothing grows:
// the shim's and daemon's open files, mounts, cgroups, network devices and
// processes.
func TestResetNoLeaks(t *testing.T) {
	ctx := begin(t)
	n := 1000
	if testing.Short() {
		n = 100
	}
	p := newResetPod(t, "reset-leaks", nil)
	for i := 0; i < 10; i++ {
		if _, err := wp().ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: p.id}); err != nil {
			t.Fatal(err)
		}
	}
	p.waitWarm(t)
	before := settledResetSnapshot(t, p.id)
	for i := 0; i < n; i++ {
		if _, err := wp().ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: p.id}); err != nil {
			t.Fatalf("reset %d: %v", i, err)
		}
	}
	p.waitWarm(t)
	var after resetSnapshot
	// Old generations are released in the background: give them time.
	waitFor(t, "resources back to their level before the resets", func() (bool, string) {
		after = takeResetSnapshot(t, p.id)
		grown := before.grown(after)
		return grown == "", grown
	})
	if got := p.initRuns(t); got != n+11 {
		t.Errorf("init container ran %d times, want %d", got, n+11)
	}
}

// settledResetSnapshot takes the snapshot once the daemon's background work
// is done: the generations that resets replaced are destroyed only when
// their pod is quiet, and on a loaded machine a backlog of them can outlast
// the next generations' pre-creation. Settled is two snapshots, 250 ms
// apart, that agree.
func settledResetSnapshot(t *testing.T, podID string) resetSnapshot {
	t.Helper()
	last := takeResetSnapshot(t, podID)
	waitFor(t, "the pod's resources to settle", func() (bool, string) {
		time.Sleep(250 * time.Millisecond)
		s := takeResetSnapshot(t, podID)
		diff := last.diff(s)
		last = s
		return diff == "", diff
	})
	return last
}

// resetSnapshot counts what a pod's resets could leak.
type resetSnapshot struct {
	daemonFDs, shimFDs int
	mounts             int
	cgroups            int
	links              int
	shimChildren       int
}

func takeResetSnapshot(t *testing.T, podID string) resetSnapshot {
	t.Helper()
	st, err := wp().PodStatus(testCtx(t), &warmpodv1.PodStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	shim := int(st.ShimPid)
	count := func(dir string) int {
		entries, _ := os.ReadDir(dir)
		return len(entries)
	}
	// Only what belongs to this run's daemon: other work on the machine
	// mounts and links too.
	mountinfo, _ := os.ReadFile("/proc/self/mountinfo")
	mounts := 0
	for _, line := range strings.Split(string(mountinfo), "\n") {
		if strings.Contains(line, d.base) || strings.Contains(line, d.State) || strings.Contains(line, d.Root) {
			mounts++
		}
	}
	var cgroups int
	hierarchy := "/sys/fs/cgroup/memory"
	if _, err := os.Stat(hierarchy); err != nil {
		hierarchy = "/sys/fs/cgroup"
	}
	_ = filepath.WalkDir(hierarchy+d.CgroupParent, func(_ string, e os.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			cgroups++
		}
		return nil
	})
	return resetSnapshot{
		daemonFDs:    count(fmt.Sprintf("/proc/%d/fd", d.PID())),
		shimFDs:      count(fmt.Sprintf("/proc/%d/fd", shim)),
		mounts:       mounts,
		cgroups:      cgroups,
		links:        count(filepath.Join("/sys/class/net", d.Bridge, "brif")),
		shimChildren: len(childrenOf(shim)),
	}
}

// diff lists what differs between a and b.
func (a resetSnapshot) diff(b resetSnapshot) string { return a.compare(b, false) }

// grown lists what b holds more of than a. Less is no leak: a daemon with
// an fd fewer than at its baseline (an idle connection closed meanwhile)
// leaked nothing.
func (a resetSnapshot) grown(b resetSnapshot) string { return a.compare(b, true) }

func (a resetSnapshot) compare(b resetSnapshot, grownOnly bool) string {
	var out []string
	for _, f := range []struct {
		name string
		x, y int
	}{
		{"daemon fds", a.daemonFDs, b.daemonFDs},
		{"shim fds", a.shimFDs, b.shimFDs},
		{"mounts", a.mounts, b.mounts},
		{"cgroups", a.cgroups, b.cgroups},
		{"network links", a.links, b.links},
		{"shim children", a.shimChildren, b.shimChildren},
	} {
		if f.y > f.x || (!grownOnly && f.y < f.x) {
			out = append(out, fmt.Sprintf("%s %d -> %d", f.name, f.x, f.y))
		}
	}
	return strings.Join(out, ", ")
}

// childrenOf lists the pids whose parent is pid.
func childrenOf(pid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if _, _, ppid := parseStat(string(data)); ppid == pid {
			out = append(out, child)
		}
	}
	return out
}

// TestBenchSmoke runs the reset benchmark against the daemon with a few
// iterations: it checks the tool works and prints its JSON, not timings.
func TestBenchSmoke(t *testing.T) {
	begin(t)
	bin := warmpodctl(t)
	out, err := exec.Command(bin, "--socket", d.SocketPath(), "bench", "reset",
		"-n", "3", "-warmup", "1", "-settle", "20ms", "-image", images.busybox,
		"-sustained-pods", "2", "-sustained-duration", "2s", "-json").Output()
	if err != nil {
		t.Fatalf("bench reset: %v\n%s", err, out)
	}
	t.Logf("bench output:\n%s", out)
	var rep struct {
		Scenarios map[string]struct {
			N     int     `json:"n"`
			P50   float64 `json:"p50_ms"`
			Error string  `json:"error"`
		} `json:"scenarios"`
		Sustained *struct {
			Resets int `json:"resets"`
		} `json:"sustained"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("bench JSON: %v", err)
	}
	for _, name := range []string{"kubelet-sequence", "native", "recreate"} {
		s, ok := rep.Scenarios[name]
		if !ok || s.N != 3 || s.Error != "" || s.P50 <= 0 {
			t.Errorf("scenario %s: %+v (present %t)", name, s, ok)
		}
	}
	if rep.Sustained == nil || rep.Sustained.Resets == 0 {
		t.Errorf("sustained mode reported no resets: %+v", rep.Sustained)
	}
}

// TestBenchInterrupt interrupts the reset benchmark while it resets its
// pod with the kubelet's calls: warmpodctl must finish the call in flight
// (a container create cut short could not be undone) and remove every pod it
// made before it exits.
func TestBenchInterrupt(t *testing.T) {
	ctx := begin(t)
	cmd := exec.Command(warmpodctl(t), "bench", "reset", "--socket", d.SocketPath(),
		"-n", "100000", "-settle", "0", "-image", images.busybox, "-scenarios", "kubelet-sequence")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	benchPods := func() []*runtimeapi.PodSandbox {
		resp, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
			LabelSelector: map[string]string{"warmpod.io/bench": "true"},
		}})
		if err != nil {
			t.Fatalf("ListPodSandbox: %v", err)
		}
		return resp.Items
	}
	// Interrupted once the resets have begun: a container of its pod has
	// been created again (attempt 1 or later).
	waitFor(t, "the benchmark's resets", func() (bool, string) {
		select {
		case err := <-exited:
			t.Fatalf("warmpodctl exited before it was interrupted: %v\n%s", err, stderr.String())
		default:
		}
		pods := benchPods()
		if len(pods) == 0 {
			return false, "no benchmark pod yet"
		}
		resp, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: pods[0].Id}})
		if err != nil {
			return false, err.Error()
		}
		for _, c := range resp.Containers {
			if c.Metadata.Attempt > 0 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d containers, none created again yet", len(resp.Containers))
	})
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := <-exited
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 130 {
		t.Errorf("warmpodctl after an interrupt: %v, want exit status 130\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "benchmark interrupted; its pods are removed") {
		t.Errorf("stderr lacks the interrupt message:\n%s", stderr.String())
	}
	if left := benchPods(); len(left) > 0 {
		t.Errorf("pods left behind: %v\n%s", podIDs(left), stderr.String())
	}
}
