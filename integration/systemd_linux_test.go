package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

// hostLayout is the cgroup layout of this host, which a node copies.
func hostLayout() string {
	if cgroups.IsCgroup2UnifiedMode() {
		return layoutUnified
	}
	return layoutHybrid
}

const nodeSocket = "/run/warmpod/warmpod.sock"

// TestSystemdUnit runs warmpod as the unit of deploy/systemd under a real
// systemd and checks what an operator relies on: start waits for the daemon
// to be ready; pods with their exit codes and logs survive a restart, a
// reload, every process of the unit killed, and a stop; the shims are
// outside the unit and rank above it for the OOM killer; the daemon's log is
// in the journal.
func TestSystemdUnit(t *testing.T) {
	begin(t)
	// The systemd cgroup driver, the one for a node whose init is systemd
	// (the README says why cgroupfs is not, on cgroup v1).
	n := bootSystemd(t, hostLayout(), "log_level = \"debug\"\n"+systemdRuntimeConfig())
	ctx := testCtx(t)

	n.systemctl("start", "warmpod")
	st := n.show("warmpod", "ActiveState", "SubState", "MainPID", "Type", "NRestarts")
	if st["ActiveState"] != "active" || st["SubState"] != "running" || st["Type"] != "notify" {
		t.Fatalf("after systemctl start: %v", st)
	}
	mainPID := st["MainPID"]
	c := n.dial(nodeSocket)
	n.run(nodeShare+"/warmpodctl", "image", "import", nodeShare+"/busybox.tar")

	p := c.runPod(t, ctx, "sd-unit")
	// sleeper logs "signal N" on its Nth SIGUSR1: after each thing done to
	// the daemon, a line that only the shim can have written to the log.
	sleeper := c.runContainer(t, ctx, p, "sleeper", "sh", "-c",
		"n=0; echo before; trap 'n=$((n+1)); echo signal $n' USR1; trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; kill $! 2>/dev/null; done")
	signals := 0
	exiter := c.runContainer(t, ctx, p, "exiter", "sh", "-c", "exit 7")
	c.waitExited(t, ctx, exiter)
	sleeperPid := c.pid(t, ctx, sleeper)
	shimPid := c.shimPid(t, ctx, p.id)

	// check is what must hold after each thing done to the daemon.
	check := func(after string) {
		t.Helper()
		if st := c.status(t, ctx, sleeper); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("after %s: sleeper is %s", after, st.State)
		}
		if pid := c.pid(t, ctx, sleeper); pid != sleeperPid {
			t.Errorf("after %s: sleeper runs as pid %d, was %d", after, pid, sleeperPid)
		}
		if st := c.status(t, ctx, exiter); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 7 {
			t.Errorf("after %s: exiter is %s with exit code %d, want exited with 7", after, st.State, st.ExitCode)
		}
		if pid := c.shimPid(t, ctx, p.id); pid != shimPid {
			t.Errorf("after %s: the pod's shim is pid %d, was %d", after, pid, shimPid)
		}
		// The shim still owns the container's stdout and its log.
		signals++
		line := fmt.Sprintf("signal %d\n", signals)
		resp, err := c.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: sleeper, Cmd: []string{"kill", "-USR1", "1"}, Timeout: 30})
		if err != nil || resp.ExitCode != 0 {
			t.Fatalf("after %s: ExecSync: %v %+v", after, err, resp)
		}
		waitFor(t, "the log line after "+after, func() (bool, string) {
			log := n.readFile(p.logDir + "/sleeper.log")
			return strings.Contains(log, "before") && strings.Contains(log, line), log
		})
	}
	check("start")

	n.systemctl("restart", "warmpod")
	st = n.show("warmpod", "ActiveState", "MainPID")
	if st["ActiveState"] != "active" || st["MainPID"] == mainPID {
		t.Fatalf("after systemctl restart: %v (the daemon was pid %s)", st, mainPID)
	}
	mainPID = st["MainPID"]
	check("restart")

	n.systemctl("reload", "warmpod")
	if st := n.show("warmpod", "ActiveState", "MainPID"); st["ActiveState"] != "active" || st["MainPID"] != mainPID {
		t.Fatalf("after systemctl reload: %v, want the daemon (pid %s) still running", st, mainPID)
	}
	check("reload")

	// The shim is out of the unit's cgroup, in a scope of its own in the
	// pod's slice, and the OOM killer ranks it just above the daemon.
	shimCgroup := n.run("cat", "/proc/"+strconv.Itoa(shimPid)+"/cgroup")
	if strings.Contains(shimCgroup, "warmpod.service") || !strings.Contains(shimCgroup, "/warmpod-"+p.id+".slice/warmpod-shim-"+p.id+".scope\n") {
		t.Errorf("the shim's cgroups:\n%s\nwant the scope warmpod-shim-<pod>.scope in the pod's slice, outside warmpod.service", shimCgroup)
	}
	daemonAdj, _ := strconv.Atoi(strings.TrimSpace(n.readFile("/proc/" + mainPID + "/oom_score_adj")))
	shimAdj, _ := strconv.Atoi(strings.TrimSpace(n.readFile("/proc/" + strconv.Itoa(shimPid) + "/oom_score_adj")))
	switch {
	case hasCapability(unix.CAP_SYS_RESOURCE):
		if daemonAdj != -999 {
			t.Errorf("the daemon's oom_score_adj is %d, want -999 (the unit's OOMScoreAdjust)", daemonAdj)
		}
	default:
		// Lowering a score below the last a privileged process set needs
		// CAP_SYS_RESOURCE, which systemd does not have here: it skips
		// OOMScoreAdjust, and the daemon keeps the score it inherited.
		t.Logf("the unit's OOMScoreAdjust=-999 cannot apply without CAP_SYS_RESOURCE, which this test runs without: the daemon has %d", daemonAdj)
	}
	if shimAdj != daemonAdj+1 {
		t.Errorf("oom_score_adj: daemon %d, shim %d; want the shim's one above the daemon's", daemonAdj, shimAdj)
	}
	ctrAdj := strings.TrimSpace(n.readFile("/proc/" + strconv.Itoa(sleeperPid) + "/oom_score_adj"))
	if ctrAdj != "0" {
		t.Errorf("the container's oom_score_adj is %s, want 0 (its spec's), not its shim's", ctrAdj)
	}

	// "systemctl kill" signals every process of the unit: the daemon dies,
	// as in an OOM kill, and systemd starts it again (Restart=always); the
	// shims, in cgroups of their own, are not among its processes.
	n.systemctl("kill", "--signal=SIGKILL", "warmpod")
	waitFor(t, "systemd to restart the killed daemon", func() (bool, string) {
		st := n.show("warmpod", "ActiveState", "SubState", "NRestarts", "MainPID")
		return st["NRestarts"] == "1" && st["ActiveState"] == "active" && st["SubState"] == "running" && st["MainPID"] != mainPID, fmt.Sprint(st)
	})
	mainPID = n.show("warmpod", "MainPID")["MainPID"]
	check("a killed daemon")

	n.systemctl("stop", "warmpod")
	if st := n.show("warmpod", "ActiveState"); st["ActiveState"] != "inactive" {
		t.Fatalf("after systemctl stop: %v", st)
	}
	if err := procAlive(n, shimPid); err != nil {
		t.Fatalf("after systemctl stop: the pod's shim: %v", err)
	}
	n.systemctl("start", "warmpod")
	check("stop and start")

	journal := n.journal("warmpod")
	for _, want := range []string{"serving CRI", "received terminated: stopping; pods keep running", "reloading the configuration"} {
		if !strings.Contains(journal, want) {
			t.Errorf("the unit's journal lacks %q:\n%s", want, journal)
		}
	}
	if got := strings.Count(journal, "serving CRI"); got != 4 {
		t.Errorf("the journal shows %d starts of the daemon, want 4 (start, restart, after the kill, start):\n%s", got, journal)
	}

	c.removePod(t, ctx, p)
	n.systemctl("stop", "warmpod")
}

// procAlive checks that pid (a pid of the node) is a live process.
func procAlive(n *systemdNode, pid int) error {
	_, err := os.Stat(n.path("/proc/" + strconv.Itoa(pid) + "/stat"))
	return err
}

// nodePod is a pod run in a node.
type nodePod struct {
	id     string
	cfg    *runtimeapi.PodSandboxConfig
	logDir string
}

func (c *nodeClient) runPod(t *testing.T, ctx context.Context, name string) *nodePod {
	t.Helper()
	return c.runPodIn(t, ctx, name, "")
}

func (c *nodeClient) removePod(t *testing.T, ctx context.Context, p *nodePod) {
	t.Helper()
	if _, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := c.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
}

func (c *nodeClient) runContainer(t *testing.T, ctx context.Context, p *nodePod, name string, cmd ...string) string {
	t.Helper()
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Command:  cmd,
		LogPath:  name + ".log",
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
	resp, err := c.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", name, err)
	}
	if _, err := c.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Fatalf("StartContainer %s: %v", name, err)
	}
	return resp.ContainerId
}

// status reads a container's status and its verbose info; right after a
// daemon restart the socket may not be there yet, and that is waited out.
func (c *nodeClient) statusInfo(t *testing.T, ctx context.Context, id string) (*runtimeapi.ContainerStatus, map[string]any) {
	t.Helper()
	var resp *runtimeapi.ContainerStatusResponse
	waitFor(t, "ContainerStatus "+id, func() (bool, string) {
		var err error
		resp, err = c.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	var info map[string]any
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
		t.Fatalf("verbose info of %s: %v", id, err)
	}
	return resp.Status, info
}

func (c *nodeClient) status(t *testing.T, ctx context.Context, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	st, _ := c.statusInfo(t, ctx, id)
	return st
}

func (c *nodeClient) waitExited(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	waitFor(t, "container "+id+" to exit", func() (bool, string) {
		st := c.status(t, ctx, id)
		return st.State == runtimeapi.ContainerState_CONTAINER_EXITED, st.State.String()
	})
}

// pid is a container's pid (in the node's PID namespace).
func (c *nodeClient) pid(t *testing.T, ctx context.Context, id string) int {
	t.Helper()
	_, info := c.statusInfo(t, ctx, id)
	pid, _ := info["pid"].(float64)
	if pid <= 0 {
		t.Fatalf("verbose status of %s has no pid: %v", id, info)
	}
	return int(pid)
}

func (c *nodeClient) shimPid(t *testing.T, ctx context.Context, pod string) int {
	t.Helper()
	var resp *warmpodv1.PodStatusResponse
	waitFor(t, "PodStatus "+pod, func() (bool, string) {
		var err error
		resp, err = c.wp.PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: pod})
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return int(resp.ShimPid)
}

// systemdRuntimeConfig is the [runtime] section of a systemd node's
// configuration: the systemd cgroup driver and, when WARMPOD_SPAWNER names
// one, that spawner (the fast spawner leaves containers that systemd places
// to libcontainer, which these tests then check).
func systemdRuntimeConfig() string {
	cfg := "[runtime]\ncgroup_driver = \"systemd\"\n"
	if sp := os.Getenv("WARMPOD_SPAWNER"); sp != "" {
		cfg += fmt.Sprintf("spawner = %q\n", sp)
	}
	return cfg
}

// TestSystemdCgroupDriver runs warmpod with cgroup_driver = "systemd" under
// a real systemd, in the host's cgroup layout and, where the host has v1
// hierarchies, also in a unified (v2) one: pods are slices below the
// kubelet's pod slice and containers are scopes in them, made through
// systemd, limited through it, and gone with the pod.
func TestSystemdCgroupDriver(t *testing.T) {
	layouts := []string{hostLayout()}
	if hostLayout() == layoutHybrid {
		layouts = append(layouts, layoutUnified)
	}
	for _, layout := range layouts {
		t.Run(layout, func(t *testing.T) {
			begin(t)
			testSystemdDriver(t, layout)
		})
	}
}

func testSystemdDriver(t *testing.T, layout string) {
	n := bootSystemd(t, layout, systemdRuntimeConfig())
	ctx := testCtx(t)
	n.systemctl("start", "warmpod")
	c := n.dial(nodeSocket)
	n.run(nodeShare+"/warmpodctl", "image", "import", nodeShare+"/busybox.tar")

	rc, err := c.rt.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := rc.GetLinux().GetCgroupDriver(); got != runtimeapi.CgroupDriver_SYSTEMD {
		t.Fatalf("RuntimeConfig reports %s, want SYSTEMD", got)
	}

	// The kubelet's systemd driver names the pod's slice after its QoS class
	// and UID (dashes become underscores) and creates it before the pod.
	uid := "1234-5678-" + randomHex(8)
	kubeletSlice := "kubepods-burstable-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice"
	n.systemctl("start", kubeletSlice)

	for _, tc := range []struct {
		name, parent string
		// wantSlice is the pod's slice given its id, wantPath the cgroup
		// path of that slice.
		wantSlice func(id string) string
		wantPath  func(id string) string
	}{
		{"kubelet parent", kubeletSlice,
			func(id string) string { return strings.TrimSuffix(kubeletSlice, ".slice") + "-" + id + ".slice" },
			func(id string) string {
				return "/kubepods.slice/kubepods-burstable.slice/" + kubeletSlice + "/" + strings.TrimSuffix(kubeletSlice, ".slice") + "-" + id + ".slice"
			}},
		{"default parent", "",
			func(id string) string { return "warmpod-" + id + ".slice" },
			func(id string) string { return "/warmpod.slice/warmpod-" + id + ".slice" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := c.runPodIn(t, ctx, "sd-driver", tc.parent)
			slice, slicePath := tc.wantSlice(p.id), tc.wantPath(p.id)
			if st := n.show(slice, "ActiveState", "ControlGroup"); st["ActiveState"] != "active" || st["ControlGroup"] != slicePath {
				t.Fatalf("pod slice %s: %v, want active with cgroup %s", slice, st, slicePath)
			}
			ctr := c.runContainer(t, ctx, p, "sleeper", "sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")
			// Each generation of a container is a libcontainer container of
			// its own, and so a scope of its own, named after the
			// generation: the pre-created next one exists beside it.
			_, info := c.statusInfo(t, ctx, ctr)
			scopePath, _ := info["cgroupPath"].(string)
			scope := filepath.Base(scopePath)
			if filepath.Dir(scopePath) != slicePath || !strings.HasPrefix(scope, "warmpod-") || !strings.HasSuffix(scope, ".scope") {
				t.Fatalf("container cgroup %q, want a scope warmpod-<generation>.scope in %s", scopePath, slicePath)
			}
			if st := n.show(scope, "ActiveState", "Slice", "ControlGroup"); st["ActiveState"] != "active" || st["Slice"] != slice || st["ControlGroup"] != scopePath {
				t.Fatalf("container scope %s: %v, want active in %s with cgroup %s", scope, st, slice, scopePath)
			}
			// The pod's shim has a scope of its own in the pod's slice.
			shimScope := "warmpod-shim-" + p.id + ".scope"
			if st := n.show(shimScope, "ActiveState", "Slice", "MainPID"); st["ActiveState"] != "active" || st["Slice"] != slice {
				t.Errorf("shim scope %s: %v, want active in %s", shimScope, st, slice)
			}
			// The container's process is in its scope, as systemd tracks it.
			pid := c.pid(t, ctx, ctr)
			// Read in the node, whose cgroup namespace the paths are of.
			procCgroup := n.run("cat", "/proc/"+strconv.Itoa(pid)+"/cgroup")
			if !strings.Contains(procCgroup, ":"+scopePath+"\n") {
				t.Errorf("container process %d is in\n%s\nwant %s", pid, procCgroup, scopePath)
			}
			if _, err := c.rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: ctr}); err != nil {
				t.Errorf("ContainerStats: %v", err)
			}
			if _, err := c.rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: p.id}); err != nil {
				t.Errorf("PodSandboxStats: %v", err)
			}

			// A resize goes to the slice's unit properties. A unified
			// hierarchy without controllers (a hybrid host's, whose
			// controllers are all on v1) cannot take limits.
			if layout == layoutUnified && strings.TrimSpace(n.run("cat", "/sys/fs/cgroup/cgroup.controllers")) == "" {
				t.Log("resize not checked: this host's cgroup v2 hierarchy has no controllers (they are all bound to v1)")
			} else {
				limit := int64(256 << 20)
				if _, err := c.rt.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{
					PodSandboxId: p.id,
					Resources:    &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: limit, CpuShares: 512},
				}); err != nil {
					t.Fatalf("UpdatePodSandboxResources: %v", err)
				}
				memProp := "MemoryLimit"
				if layout == layoutUnified {
					memProp = "MemoryMax"
				}
				if st := n.show(slice, memProp); st[memProp] != strconv.FormatInt(limit, 10) {
					t.Errorf("pod slice %s after a resize: %v, want %s=%d", slice, st, memProp, limit)
				}
			}

			c.removePod(t, ctx, p)
			for _, unit := range []string{scope, shimScope, slice} {
				if st := n.show(unit, "ActiveState"); st["ActiveState"] == "active" {
					t.Errorf("%s after the pod's removal: %v", unit, st)
				}
			}
			cgroupRoot := "/sys/fs/cgroup/unified"
			if layout == layoutUnified {
				cgroupRoot = "/sys/fs/cgroup"
			}
			if _, err := os.Stat(n.path(cgroupRoot + slicePath)); !os.IsNotExist(err) {
				t.Errorf("the pod slice's cgroup is still there after the pod's removal: %v", err)
			}
		})
	}
	n.systemctl("stop", "warmpod")
}

func (c *nodeClient) runPodIn(t *testing.T, ctx context.Context, name, cgroupParent string) *nodePod {
	t.Helper()
	uid := randomHex(16)
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "integration", Uid: uid},
		Hostname:     name,
		LogDirectory: "/var/log/pods/" + uid,
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: cgroupParent},
	}
	resp, err := c.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	return &nodePod{id: resp.PodSandboxId, cfg: cfg, logDir: cfg.LogDirectory}
}

// hasCapability tells whether this process has capability c in its
// effective set.
func hasCapability(c int) bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<uint(c)) != 0
		}
	}
	return false
}
