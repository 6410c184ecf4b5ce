package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

// usernsHostID is where root of the test pods' user namespace lives on the
// host, as the kubelet picks it: a multiple of 65536, far from real users.
const usernsHostID = 65536 * 20

func usernsOptions(mode runtimeapi.NamespaceMode, mapping ...*runtimeapi.IDMapping) *runtimeapi.NamespaceOption {
	return &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: mode, Uids: mapping, Gids: mapping}}
}

// podMapping is what the kubelet sends for a pod with hostUsers: false.
func podMapping() *runtimeapi.IDMapping {
	return &runtimeapi.IDMapping{ContainerId: 0, HostId: usernsHostID, Length: 65536}
}

// userNamespacesDeclared reports the runtime handler feature.
func userNamespacesDeclared(t *testing.T) bool {
	t.Helper()
	resp, err := d.Runtime.Status(testCtx(t), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	for _, h := range resp.RuntimeHandlers {
		if h.Name == "" {
			return h.Features.GetUserNamespaces()
		}
	}
	t.Fatalf("no default runtime handler in %v", resp.RuntimeHandlers)
	return false
}

// A pod with a user namespace, as the kubelet runs one for hostUsers:
// false: its containers are root inside and an unprivileged id outside,
// they write to their rootfs and to a volume the kubelet id-maps, and all
// of that survives an in-place reset.
func TestUserNamespacePod(t *testing.T) {
	ctx := begin(t)
	// The run's directory is searchable by others (setUp makes it 0711, as
	// a production root dir is): close it for a moment, and the runtime
	// must stop declaring user namespaces, whose containers are nobody on
	// the host and could not reach their root filesystems.
	fi, err := os.Stat(d.base)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d.base, 0o700); err != nil {
		t.Fatal(err)
	}
	declaredClosed := func() bool {
		defer func() {
			if err := os.Chmod(d.base, fi.Mode().Perm()); err != nil {
				t.Fatal(err)
			}
		}()
		return userNamespacesDeclared(t)
	}()
	if declaredClosed {
		t.Fatal("user namespaces declared while the root dir is closed to other users")
	}
	if !userNamespacesDeclared(t) {
		t.Fatal("runtime handler does not declare user namespaces on a kernel that has them")
	}

	cfg := newPodConfig("userns")
	// The kubelet's options for a pod without shareProcessNamespace.
	nsOpts := usernsOptions(runtimeapi.NamespaceMode_POD, podMapping())
	nsOpts.Pid = runtimeapi.NamespaceMode_CONTAINER
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: nsOpts}
	podID := runPod(t, cfg)
	vol := t.TempDir()
	ctr := newContainerConfig("main", "sh", "-c", strings.Join([]string{
		"cat /proc/self/uid_map",
		"echo uid=$(id -u)",
		"if [ -e /marker ]; then echo stale-layer; fi",
		"touch /marker && echo rootfs-ok",
		"echo run >> /etc/runs && echo etc-ok",
		"echo run >> /data/runs && echo volume-ok",
		"exec sleep 3600",
	}, "; "))
	ctr.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: cfg.Linux.SecurityContext.NamespaceOptions,
	}
	ctr.Mounts = []*runtimeapi.Mount{{
		ContainerPath: "/data", HostPath: vol,
		UidMappings: []*runtimeapi.IDMapping{podMapping()}, GidMappings: []*runtimeapi.IDMapping{podMapping()},
	}}
	id := runContainer(t, podID, cfg, ctr)

	logPath := filepath.Join(cfg.LogDirectory, "main.log")
	started := func(n int) []string {
		var lines []string
		waitFor(t, fmt.Sprintf("start %d of main in its log", n), func() (bool, string) {
			lines = logContents(readCRILog(t, logPath), "stdout")
			return strings.Count(strings.Join(lines, "\n"), "volume-ok") >= n, strings.Join(lines, "|")
		})
		return lines
	}
	lines := started(1)
	wantMap := fmt.Sprintf("0 %d 65536", usernsHostID)
	if len(lines) == 0 || strings.Join(strings.Fields(lines[0]), " ") != wantMap {
		t.Errorf("uid_map in the container = %q, want %q", lines, wantMap)
	}
	for _, want := range []string{"uid=0", "rootfs-ok", "etc-ok", "volume-ok"} {
		if !strings.Contains(strings.Join(lines, "\n"), want) {
			t.Errorf("container log %q lacks %q", lines, want)
		}
	}
	// On the host the container's process is the unprivileged id.
	pid := containerPid(t, id)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("Uid:\t%d\t", usernsHostID); !strings.Contains(string(status), want) {
		t.Errorf("container process on the host: %q lacks %q", status, want)
	}
	// The volume is id-mapped: root's file in it is host root's.
	if owner := statOwner(t, filepath.Join(vol, "runs")); owner != "0:0" {
		t.Errorf("file written to the volume is owned by %s on the host, want 0:0", owner)
	}
	if out, _, code := execSync(t, id, "sh", "-c", "id -u; ls -ln /etc/runs"); code != 0 || !strings.HasPrefix(out, "0\n") || !strings.Contains(out, " 0 ") {
		t.Errorf("exec in the container: %q (exit %d), want root owning /etc/runs", out, code)
	}

	// In place: the pre-created generation is made for the user namespace
	// too, and the next start gets a fresh writable layer.
	p := &resetPod{id: podID, cfg: cfg, configs: []*runtimeapi.ContainerConfig{ctr}, ids: []string{id}}
	p.waitWarm(t)
	resp, err := wp().ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatalf("ResetPod: %v", err)
	}
	if len(resp.Containers) != 1 || !resp.Containers[0].FromWarm || resp.Containers[0].State != "CONTAINER_RUNNING" {
		t.Errorf("after reset: %+v", resp.Containers)
	}
	lines = started(2)
	all := strings.Join(lines, "\n")
	if strings.Contains(all, "stale-layer") || strings.Count(all, "rootfs-ok") != 2 || strings.Count(all, "etc-ok") != 2 {
		t.Errorf("second run did not get a fresh, writable rootfs: %q", lines)
	}
	if data, _ := os.ReadFile(filepath.Join(vol, "runs")); string(data) != "run\nrun\n" {
		t.Errorf("volume after reset holds %q, want both runs", data)
	}

	// Nothing of the pod is left once it is removed: no pinned namespace,
	// no rootfs or id-mapped layer view.
	removePod(t, podID, cfg)
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return !strings.Contains(m.Mountpoint, podID), false
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		t.Errorf("mount left after the pod was removed: %s (%s)", m.Mountpoint, m.FSType)
	}
}

func statOwner(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}

// critest's shape of a user namespace pod: only the user namespace options
// are set, so the pod shares one pid namespace, whose pid 1 (the pause
// process) must live in the pod's user namespace for the containers to
// mount /proc.
func TestUserNamespaceSharedPID(t *testing.T) {
	begin(t)
	cfg := newPodConfig("userns-sharedpid")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: usernsOptions(runtimeapi.NamespaceMode_POD, podMapping()),
	}
	podID := runPod(t, cfg)
	ctr := newContainerConfig("map", "sh", "-c", "cat /proc/self/uid_map; echo init=$(tr '\\0' ' ' < /proc/1/cmdline)")
	ctr.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: cfg.Linux.SecurityContext.NamespaceOptions}
	id := runContainer(t, podID, cfg, ctr)
	if st := waitExited(t, id); st.ExitCode != 0 {
		t.Errorf("container exited with %d: %s", st.ExitCode, st.Message)
	}
	lines := logContents(readCRILog(t, filepath.Join(cfg.LogDirectory, "map.log")), "stdout")
	out := strings.Join(lines, "\n")
	if want := fmt.Sprintf("0 %d 65536", usernsHostID); len(lines) == 0 || strings.Join(strings.Fields(lines[0]), " ") != want {
		t.Errorf("uid_map in the container = %q, want %q", lines, want)
	}
	if !strings.Contains(out, "init=") || !strings.Contains(out, " pause") {
		t.Errorf("pid 1 of the pod is not its pause process: %q", lines)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", podPause(t, podID)))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("Uid:\t%d\t", usernsHostID); !strings.Contains(string(status), want) {
		t.Errorf("pause process on the host: %q lacks %q", status, want)
	}
}

// podPause returns the host pid of pid 1 of the pod's pinned pid
// namespace: its pause process.
func podPause(t *testing.T, podID string) int {
	t.Helper()
	var pin syscall.Stat_t
	if err := syscall.Stat(filepath.Join(d.State, "pods", podID, "pidns"), &pin); err != nil {
		t.Fatalf("pod's pinned pid namespace: %v", err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		var ns syscall.Stat_t
		if syscall.Stat(p+"/ns/pid", &ns) != nil || ns.Ino != pin.Ino || ns.Dev != pin.Dev {
			continue
		}
		status, _ := os.ReadFile(p + "/status")
		for _, l := range strings.Split(string(status), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "NSpid:" && f[len(f)-1] == "1" {
				pid, _ := strconv.Atoi(filepath.Base(p))
				return pid
			}
		}
	}
	t.Fatal("no pid 1 in the pod's pid namespace")
	return 0
}

// Mode NODE is the host's user namespace, as if no option were given.
func TestUserNamespaceNode(t *testing.T) {
	begin(t)
	cfg := newPodConfig("userns-node")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: usernsOptions(runtimeapi.NamespaceMode_NODE),
	}
	podID := runPod(t, cfg)
	ctr := newContainerConfig("map", "cat", "/proc/self/uid_map")
	ctr.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: cfg.Linux.SecurityContext.NamespaceOptions}
	id := runContainer(t, podID, cfg, ctr)
	waitExited(t, id)
	host, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		t.Fatal(err)
	}
	got := logContents(readCRILog(t, filepath.Join(cfg.LogDirectory, "map.log")), "stdout")
	if strings.Join(strings.Fields(strings.Join(got, "\n")), " ") != strings.Join(strings.Fields(string(host)), " ") {
		t.Errorf("uid_map in the container = %q, want the host's %q", got, host)
	}
}

// Options the runtime cannot serve are refused before anything is made.
func TestUserNamespaceBadInput(t *testing.T) {
	ctx := begin(t)
	kubelet := podMapping()
	tests := []struct {
		name     string
		ns       *runtimeapi.NamespaceOption
		code     codes.Code
		mentions []string
	}{
		{"two mappings", usernsOptions(runtimeapi.NamespaceMode_POD, kubelet, &runtimeapi.IDMapping{ContainerId: 0, HostId: 2 * usernsHostID, Length: 65536}),
			codes.InvalidArgument, []string{"userns_options", "exactly one uids mapping, got 2"}},
		{"root not mapped", usernsOptions(runtimeapi.NamespaceMode_POD, &runtimeapi.IDMapping{ContainerId: 1, HostId: usernsHostID, Length: 65536}),
			codes.InvalidArgument, []string{"userns_options", "container id 0"}},
		{"container mode", usernsOptions(runtimeapi.NamespaceMode_CONTAINER), codes.InvalidArgument, []string{"userns_options", "CONTAINER"}},
		{"target mode", usernsOptions(runtimeapi.NamespaceMode_TARGET), codes.InvalidArgument, []string{"userns_options", "TARGET"}},
	}
	podDirs := func() int {
		entries, err := os.ReadDir(filepath.Join(d.State, "pods"))
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	before := podDirs()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := newPodConfig("userns-bad")
			cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: tt.ns}
			resp, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if err == nil {
				removePod(t, resp.PodSandboxId, cfg)
			}
			wantCode(t, err, tt.code, tt.mentions...)
			if n := podDirs(); n != before {
				t.Errorf("%d pod state dirs after the refusal, %d before", n, before)
			}
		})
	}
	list, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{"io.kubernetes.pod.name": "userns-bad"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("refused pods listed: %v", podIDs(list.Items))
	}
}
