//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
	cdispec "tags.cncf.io/container-device-interface/specs-go"
)

// nativeReset resets a pod through warmpod's API and returns the shim's
// time for it.
func nativeReset(t testing.TB, podID string) time.Duration {
	t.Helper()
	resp, err := wp().ResetPod(testCtx(t), &warmpodv1.ResetPodRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatalf("ResetPod %s: %v", short(podID), err)
	}
	return time.Duration(resp.DurationNs)
}

// mknodNull makes a character device with /dev/null's numbers (1:3) at
// path: a device node every kernel lets us open, under a name no real
// device has.
func mknodNull(t testing.TB, path string) {
	t.Helper()
	if err := unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod %s: %v", path, err)
	}
}

// hookScript is a CDI hook that appends a line to file: the hook's kind
// and the id of the container generation it ran for, read from the OCI
// state on its stdin.
func hookScript(kind, file string) []string {
	return []string{"sh", "-c", fmt.Sprintf(
		`id=$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p'); echo "%s $id" >> %s`, kind, file)}
}

// writeJSONAtomic writes v as JSON, renaming it into place so the CDI
// library's directory watch never reads half a file.
func writeJSONAtomic(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// deviceEnv is what the device tests give their daemon: a CDI spec dir
// with vendor example.com/fake's devices fake0 and fake1 (fake nodes,
// env, a mount of the hook log dir, and a hook of every kind that runs
// when a container is created or started), a node for a CRI Device, and a
// host dir mounted read-write as the kubelet mounts an emptyDir.
type deviceEnv struct {
	specDir, nodeDir, hookDir, emptyDir string
	criNode                             string
	// hookLog collects the hooks' lines; containers see it as
	// /hooklog/hooks.log.
	hookLog string
	// hooks puts the hooks in the spec.
	hooks bool
	// kind is the spec's vendor/class, example.com/fake unless a test
	// needs two envs in one spec dir.
	kind string
}

// dev is the qualified name of one of the env's devices.
func (e *deviceEnv) dev(name string) string { return e.kind + "=" + name }

func newDeviceEnv(t testing.TB, hooks bool, kind string) *deviceEnv {
	t.Helper()
	dir := t.TempDir()
	e := &deviceEnv{
		hooks: hooks, kind: kind,
		specDir: filepath.Join(dir, "cdi"), nodeDir: filepath.Join(dir, "nodes"),
		hookDir: filepath.Join(dir, "hooks"), emptyDir: filepath.Join(dir, "empty-dir"),
	}
	for _, p := range []string{e.specDir, e.nodeDir, e.hookDir, e.emptyDir} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"fake0", "fake1", "cri"} {
		mknodNull(t, filepath.Join(e.nodeDir, n))
	}
	e.criNode = filepath.Join(e.nodeDir, "cri")
	e.hookLog = filepath.Join(e.hookDir, "hooks.log")
	e.writeSpec(t, "1")
	return e
}

// writeSpec writes the fake vendor's spec with FAKE_VENDOR=version.
func (e *deviceEnv) writeSpec(t testing.TB, version string) {
	e.writeSpecIn(t, e.specDir, version)
}

// writeSpecIn writes the spec into dir (another env's spec dir, so that
// one daemon serves both envs' devices).
func (e *deviceEnv) writeSpecIn(t testing.TB, dir, version string) {
	t.Helper()
	dev := func(name string) cdispec.Device {
		return cdispec.Device{Name: name, ContainerEdits: cdispec.ContainerEdits{
			Env:         []string{strings.ToUpper(name) + "=1"},
			DeviceNodes: []*cdispec.DeviceNode{{Path: "/dev/" + name, HostPath: filepath.Join(e.nodeDir, name)}},
		}}
	}
	spec := cdispec.Spec{
		Version: "0.6.0",
		Kind:    e.kind,
		ContainerEdits: cdispec.ContainerEdits{
			Env:    []string{"FAKE_VENDOR=" + version},
			Mounts: []*cdispec.Mount{{HostPath: e.hookDir, ContainerPath: "/hooklog", Options: []string{"rbind", "rw"}}},
		},
		Devices: []cdispec.Device{dev("fake0"), dev("fake1")},
	}
	if e.hooks {
		spec.ContainerEdits.Hooks = []*cdispec.Hook{
			{HookName: "createRuntime", Path: "/bin/sh", Args: hookScript("createRuntime", e.hookLog)},
			{HookName: "createContainer", Path: "/bin/sh", Args: hookScript("createContainer", e.hookLog)},
			{HookName: "poststart", Path: "/bin/sh", Args: hookScript("poststart", e.hookLog)},
			// Runs inside the container, so it writes through the mount.
			{HookName: "startContainer", Path: "/bin/sh", Args: hookScript("startContainer", "/hooklog/hooks.log")},
		}
	}
	writeJSONAtomic(t, filepath.Join(dir, strings.ReplaceAll(e.kind, "/", "_")+".json"), spec)
}

// container asks for fake0 through the CRI field (fake1 comes from an
// annotation, of the container or the pod), the CRI device and the
// emptyDir.
func (e *deviceEnv) container(annotateFake1 bool) *runtimeapi.ContainerConfig {
	c := newContainerConfig("main", "sleep", "3600")
	c.CDIDevices = []*runtimeapi.CDIDevice{{Name: e.dev("fake0")}}
	if annotateFake1 {
		c.Annotations = map[string]string{"cdi.k8s.io/test": e.dev("fake1")}
	}
	c.Devices = []*runtimeapi.Device{{HostPath: e.criNode, ContainerPath: "/dev/cridev", Permissions: "rw"}}
	c.Mounts = []*runtimeapi.Mount{{HostPath: e.emptyDir, ContainerPath: "/data"}}
	return c
}

// checkDevices writes to every device and the emptyDir from inside the
// container (the device cgroup would refuse a node without its rule) and
// reads back the CDI env of the container's process.
func checkDevices(t testing.TB, ctrID, vendor string) {
	t.Helper()
	out, stderr, code := execSync(t, ctrID, "sh", "-c",
		`for d in fake0 fake1 cridev; do echo x > /dev/$d || exit 1; done; echo ok > /data/probe && cat /data/probe; tr '\0' '\n' < /proc/1/environ | grep ^FAKE | sort`)
	want := "ok\nFAKE0=1\nFAKE1=1\nFAKE_VENDOR=" + vendor + "\n"
	if code != 0 || out != want {
		t.Fatalf("devices in container %s: exit %d, output %q (stderr %q), want %q", short(ctrID), code, out, stderr, want)
	}
}

// hookEntry is one line of the hook log and where it starts.
type hookEntry struct {
	kind, id string
	offset   int64
}

func readHooks(t testing.TB, path string) []hookEntry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []hookEntry
	var off int64
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if kind, id, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			out = append(out, hookEntry{kind: kind, id: id, offset: off})
		}
		off += int64(len(line))
	}
	return out
}

func hookLogSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// checkStartedWarm waits for the startContainer line written after mark
// (the hook runs inside the container just before its command) and checks
// that the generation it started had run its create hooks before mark:
// it was pre-created, and a reset or restart only released it.
func (e *deviceEnv) checkStartedWarm(t testing.TB, mark int64) {
	t.Helper()
	var started string
	waitFor(t, "the startContainer hook", func() (bool, string) {
		for _, h := range readHooks(t, e.hookLog) {
			if h.offset >= mark && h.kind == "startContainer" {
				started = h.id
				return true, ""
			}
		}
		return false, "no startContainer line after the reset"
	})
	for _, kind := range []string{"createRuntime", "createContainer", "poststart"} {
		found := false
		for _, h := range readHooks(t, e.hookLog) {
			if h.kind == kind && h.id == started {
				if h.offset >= mark {
					t.Fatalf("%s hook of generation %s ran during the reset or restart, not at pre-creation", kind, started)
				}
				found = true
			}
		}
		if !found {
			t.Fatalf("no %s hook line for generation %s", kind, started)
		}
	}
}

// hookCounts counts the log's lines by kind and checks that no generation
// ran a hook twice.
func (e *deviceEnv) hookCounts(t testing.TB) map[string]int {
	t.Helper()
	counts := map[string]int{}
	seen := map[hookEntry]bool{}
	for _, h := range readHooks(t, e.hookLog) {
		k := hookEntry{kind: h.kind, id: h.id}
		if seen[k] {
			t.Errorf("%s hook ran twice for generation %s", h.kind, h.id)
		}
		seen[k] = true
		counts[h.kind]++
	}
	return counts
}

// deviceResets is how many times the device tests restart their pods.
const deviceResets = 100

func TestDevices(t *testing.T) {
	begin(t)
	e := newDeviceEnv(t, true, "example.com/fake")
	startExtraDaemon(t, "devices", "--cdi-spec-dirs", e.specDir)
	pullImage(t, images.busybox)

	t.Run("native resets keep devices and run create hooks at pre-creation", func(t *testing.T) {
		podCfg := newPodConfig("devices-native")
		podID := runPod(t, podCfg)
		ctrID := runContainer(t, podID, podCfg, e.container(true))
		checkDevices(t, ctrID, "1")
		for i := range deviceResets {
			waitWarm(t, podID, ctrID)
			mark := hookLogSize(t, e.hookLog)
			nativeReset(t, podID)
			e.checkStartedWarm(t, mark)
			if i%10 == 9 {
				checkDevices(t, ctrID, "1")
			}
		}
		waitWarm(t, podID, ctrID)
		counts := e.hookCounts(t)
		// One generation per start plus the warm spare; each started once.
		if counts["createRuntime"] != deviceResets+2 || counts["createContainer"] != deviceResets+2 ||
			counts["poststart"] != deviceResets+2 || counts["startContainer"] != deviceResets+1 {
			t.Errorf("hook counts %v after %d resets, want %d per create hook and %d startContainer",
				counts, deviceResets, deviceResets+2, deviceResets+1)
		}
	})

	t.Run("kubelet restarts reuse the pod's device edits", func(t *testing.T) {
		podCfg := newPodConfig("devices-kubelet")
		podID := runPod(t, podCfg)
		ctrCfg := e.container(true)
		ctrID := runContainer(t, podID, podCfg, ctrCfg)
		checkDevices(t, ctrID, "1")
		for i := range deviceResets {
			waitWarm(t, podID, ctrID)
			ctrID = cdiKubeletRestart(t, podID, podCfg, ctrCfg, ctrID, e)
			if i%10 == 9 {
				checkDevices(t, ctrID, "1")
			}
		}
	})

	// Issue 12: the pod's cdi.k8s.io/* annotations are any pod author's to
	// write; only the kubelet (the CRI field, container annotations from
	// device plugins) requests devices.
	t.Run("pod annotations request no devices", func(t *testing.T) {
		podCfg := newPodConfig("devices-pod-annotation")
		podCfg.Annotations["cdi.k8s.io/pod"] = e.dev("fake1")
		podCfg.Annotations["cdi.k8s.io/bad"] = "not-a-device"
		podID := runPod(t, podCfg)
		ctrID := runContainer(t, podID, podCfg, e.container(false))
		out, _, _ := execSync(t, ctrID, "sh", "-c", `ls /dev/fake0 /dev/fake1; tr '\0' '\n' < /proc/1/environ | grep ^FAKE | sort`)
		if !strings.Contains(out, "/dev/fake0") || !strings.Contains(out, "FAKE0=1") || strings.Contains(out, "/dev/fake1") || strings.Contains(out, "FAKE1") {
			t.Errorf("container of a pod annotated with device fake1 has %q; want fake0 only", out)
		}
	})

	t.Run("bad device requests fail and leave nothing", func(t *testing.T) {
		missing := filepath.Join(e.nodeDir, "absent")
		writeJSONAtomic(t, filepath.Join(e.specDir, "missing.json"), cdispec.Spec{
			Version: "0.6.0", Kind: "example.com/missing",
			Devices: []cdispec.Device{{Name: "x", ContainerEdits: cdispec.ContainerEdits{
				DeviceNodes: []*cdispec.DeviceNode{{Path: "/dev/x", HostPath: missing}},
			}}},
		})
		t.Cleanup(func() { _ = os.Remove(filepath.Join(e.specDir, "missing.json")) })
		podCfg := newPodConfig("devices-bad")
		podID := runPod(t, podCfg)
		hooksBefore := hookLogSize(t, e.hookLog)
		for _, tc := range []struct {
			name     string
			edit     func(*runtimeapi.ContainerConfig)
			mentions []string
		}{
			{"unknown CDI device", func(c *runtimeapi.ContainerConfig) {
				c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "example.com/fake=nope"}}
			}, []string{"example.com/fake=nope"}},
			{"CDI device without its host node", func(c *runtimeapi.ContainerConfig) {
				c.CDIDevices = []*runtimeapi.CDIDevice{{Name: "example.com/missing=x"}}
			}, []string{"example.com/missing=x", missing}},
			{"malformed CDI annotation", func(c *runtimeapi.ContainerConfig) {
				c.Annotations = map[string]string{"cdi.k8s.io/bad": "not-a-device"}
			}, []string{"cdi.k8s.io/bad"}},
			{"CRI device without its host node", func(c *runtimeapi.ContainerConfig) {
				c.Devices = []*runtimeapi.Device{{HostPath: missing, ContainerPath: "/dev/y", Permissions: "rw"}}
			}, []string{missing}},
		} {
			c := e.container(true)
			tc.edit(c)
			_, err := d.Runtime.CreateContainer(testCtx(t), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: c, SandboxConfig: podCfg})
			wantCode(t, err, codes.InvalidArgument, tc.mentions...)
		}
		list, err := d.Runtime.ListContainers(testCtx(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
		if err != nil || len(list.Containers) != 0 {
			t.Errorf("containers after failed creates: %v, %v", list.GetContainers(), err)
		}
		if after := hookLogSize(t, e.hookLog); after != hooksBefore {
			t.Errorf("hooks ran for failed creates: %d bytes of hook log before, %d after", hooksBefore, after)
		}
	})

	t.Run("a changed spec reaches new pods, not running ones", func(t *testing.T) {
		oldCfg := newPodConfig("devices-old")
		oldID := runPod(t, oldCfg)
		ctrCfg := e.container(true)
		oldCtr := runContainer(t, oldID, oldCfg, ctrCfg)
		checkDevices(t, oldCtr, "1")
		e.writeSpec(t, "2")
		t.Cleanup(func() { e.writeSpec(t, "1") })
		// The spec dir watch reloads asynchronously: wait for the state.
		n := 0
		waitFor(t, "a new pod to get the changed spec", func() (bool, string) {
			n++
			cfg := newPodConfig(fmt.Sprintf("devices-new-%d", n))
			id := runPod(t, cfg)
			ctr := runContainer(t, id, cfg, e.container(true))
			out, _, _ := execSync(t, ctr, "sh", "-c", `tr '\0' '\n' < /proc/1/environ | grep ^FAKE_VENDOR`)
			removePod(t, id, cfg)
			return out == "FAKE_VENDOR=2\n", "new pod got " + out
		})
		waitWarm(t, oldID, oldCtr)
		oldCtr = cdiKubeletRestart(t, oldID, oldCfg, ctrCfg, oldCtr, e)
		checkDevices(t, oldCtr, "1")
	})
}

// cdiKubeletRestart restarts a container the way the kubelet does for
// RestartAllContainers: StopContainer with no grace, RemoveContainer, then
// CreateContainer with the next attempt and StartContainer. It checks the
// new container was served from a generation pre-created before the
// CreateContainer (the spec, device edits included, did not change), and
// returns its id.
func cdiKubeletRestart(t testing.TB, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig, old string, e *deviceEnv) string {
	t.Helper()
	ctx := testCtx(t)
	if _, err := d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: old, Timeout: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: old}); err != nil {
		t.Fatal(err)
	}
	cfg.Metadata.Attempt++
	mark := hookLogSize(t, e.hookLog)
	id := runContainer(t, podID, podCfg, cfg)
	e.checkStartedWarm(t, mark)
	return id
}

// resetShapes are the pods the reset measurements compare: a bare one,
// and one with two CDI devices (nodes, env, a mount), a CRI device and an
// emptyDir, with and without CDI hooks.
var resetShapes = []struct {
	name    string
	devices bool
	hooks   bool
}{{"bare", false, false}, {"devices", true, false}, {"devices-hooks", true, true}}

// startResetDaemon starts a daemon whose CDI spec dir serves both device
// envs of resetShapes, with busybox pulled, and returns the env of each
// shape in resetShapes' order (nil for the bare one).
func startResetDaemon(t testing.TB, name string) []*deviceEnv {
	t.Helper()
	plain, hooked := newDeviceEnv(t, false, "example.com/fake"), newDeviceEnv(t, true, "example.com/hooked")
	hooked.writeSpecIn(t, plain.specDir, "1")
	startExtraDaemon(t, name, "--cdi-spec-dirs", plain.specDir)
	pullImage(t, images.busybox)
	envs := make([]*deviceEnv, len(resetShapes))
	for i, sh := range resetShapes {
		if sh.devices {
			envs[i] = plain
			if sh.hooks {
				envs[i] = hooked
			}
		}
	}
	return envs
}

// resetTarget runs one pod of a shape on the current daemon and returns
// it with its container's id.
func resetTarget(t testing.TB, name string, e *deviceEnv) (podID, ctrID string) {
	t.Helper()
	podCfg := newPodConfig(name)
	podID = runPod(t, podCfg)
	ctrCfg := newContainerConfig("main", "sleep", "3600")
	if e != nil {
		ctrCfg = e.container(true)
	}
	ctrID = runContainer(t, podID, podCfg, ctrCfg)
	return podID, ctrID
}

// timeReset waits for the container's pre-created generation (the steady
// state of a pod that resets now and then), then times one ResetPod as
// the client sees it and as the shim reports it.
func timeReset(t testing.TB, podID, ctrID string) (client, shim time.Duration) {
	t.Helper()
	waitWarm(t, podID, ctrID)
	start := time.Now()
	shim = nativeReset(t, podID)
	return time.Since(start), shim
}

// resetLatencyRounds is how many resets TestResetLatencyWithDevices times
// per shape.
const resetLatencyRounds = 50

// TestResetLatencyWithDevices reports the median ResetPod time of a bare
// pod and of pods with devices, CDI edits and an emptyDir. It asserts
// nothing about the numbers (the machine is shared); for numbers to
// compare, run BenchmarkResetPodDevices.
func TestResetLatencyWithDevices(t *testing.T) {
	begin(t)
	envs := startResetDaemon(t, "reset-latency")
	var lines []string
	for i, sh := range resetShapes {
		e := envs[i]
		podID, ctrID := resetTarget(t, "reset-latency-"+sh.name, e)
		var client, shim []time.Duration
		for range resetLatencyRounds {
			c, s := timeReset(t, podID, ctrID)
			client, shim = append(client, c), append(shim, s)
		}
		if e != nil {
			checkDevices(t, ctrID, "1")
		}
		lines = append(lines, fmt.Sprintf("%s: ResetPod median %s (p90 %s), shim median %s (p90 %s)",
			sh.name, median(client), p90(client), median(shim), p90(shim)))
	}
	t.Logf("reset latency over %d resets per pod, one container each:\n  %s", resetLatencyRounds, strings.Join(lines, "\n  "))
}

// BenchmarkResetPodDevices times ResetPod of a bare pod and of pods with
// devices, CDI edits and an emptyDir; the wait for the pre-created
// generation before each reset is not timed.
func BenchmarkResetPodDevices(b *testing.B) {
	envs := startResetDaemon(b, "reset-bench")
	for i, sh := range resetShapes {
		b.Run(sh.name, func(b *testing.B) {
			e := envs[i]
			podID, ctrID := resetTarget(b, "reset-bench-"+sh.name, e)
			var shim time.Duration
			for b.Loop() {
				b.StopTimer()
				waitWarm(b, podID, ctrID)
				b.StartTimer()
				shim += nativeReset(b, podID)
			}
			b.ReportMetric(float64(shim.Nanoseconds())/float64(b.N), "shim-ns/op")
		})
	}
}
