//go:build cgo

package oci

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/opencontainers/cgroups/devices" // registers the device cgroup manager, as runc's main does
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // the C half of "runc init"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/warmpod/warmpod/internal/testutil"
)

// TestMain lets libcontainer re-execute this test binary as a container's init.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // does not return
	}
	os.Exit(m.Run())
}

// TestBuiltSpecsRunUnderLibcontainer starts real containers from built specs and checks from inside that
// the process got what the spec promised. It is the end of the road specconv's validation only begins.
func TestBuiltSpecsRunUnderLibcontainer(t *testing.T) {
	testutil.RequireRoot(t, "it starts containers")
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox (Debian's busybox-static) is not installed")
	}
	host, err := DetectHost()
	if err != nil {
		t.Fatal(err)
	}
	b := NewBuilder(host)

	rootfs := t.TempDir()
	if err := os.Chmod(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	for p, content := range map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup, "data/file": "data"} {
		full := filepath.Join(rootfs, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	podFiles := t.TempDir()
	if err := os.WriteFile(filepath.Join(podFiles, "hosts"), []byte("10.0.0.1 warmpod-marker\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(rootfs, "data")
	hostNet, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	img := &Image{Name: "busybox", Layers: []string{rootfs}}

	tests := []struct {
		name   string
		adjust func(c *Container, p *Pod)
		script string
		skip   string
	}{
		{
			name: "plain user from the image, pod files",
			adjust: func(c *Container, _ *Pod) {
				c.Security.RunAsUsername = "app"
				c.Security.SupplementalGroups = []int64{2000}
			},
			script: `test "$(busybox id -u):$(busybox id -g)" = 1000:1000 &&
				test "$(busybox id -G)" = "1000 44 50 2000" &&
				busybox grep -q warmpod-marker /etc/hosts &&
				test "$HOSTNAME" = web-0 && test "$(busybox hostname)" = web-0 &&
				! busybox cat /proc/kcore 2>/dev/null | busybox head -c1 | busybox grep -q .`,
		},
		{
			name: "read-only rootfs, writable /dev/shm, read-only sysfs",
			adjust: func(c *Container, _ *Pod) {
				c.Security.ReadonlyRootfs = true
			},
			script: `! busybox touch /newfile 2>/dev/null && busybox touch /dev/shm/ok &&
				! busybox touch /sys/kernel/warmpod 2>/dev/null && busybox grep -q ' /sys sysfs ro,' /proc/self/mounts`,
		},
		{
			name: "privileged",
			adjust: func(c *Container, p *Pod) {
				c.Security.Privileged, p.Privileged = true, true
			},
			script: fmt.Sprintf(`busybox grep -q '^CapEff:[[:space:]]*%s$' /proc/self/status && busybox grep -q ' /sys sysfs rw,' /proc/self/mounts && busybox test -c /dev/full`, capMask(host.Capabilities)),
		},
		{
			name: "host namespaces",
			adjust: func(c *Container, p *Pod) {
				c.Security.Namespaces = NamespaceOptions{Network: NamespaceNode, PID: NamespaceNode, IPC: NamespaceNode}
				p.Hostname = ""
			},
			script: fmt.Sprintf(`test "$(busybox readlink /proc/self/ns/net)" = %q && test -d /proc/1`, hostNet),
		},
		{
			name: "seccomp runtime default",
			adjust: func(c *Container, _ *Pod) {
				c.Security.Seccomp = &SecurityProfile{Type: ProfileRuntimeDefault}
				c.Security.NoNewPrivs = true
			},
			script: `busybox grep -q '^Seccomp:[[:space:]]*2$' /proc/self/status && busybox grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/self/status`,
			skip:   map[bool]string{false: "this test binary was built without the seccomp tag"}[seccomp.Enabled],
		},
		{
			name: "mounts, devices, resources, ambient capabilities",
			adjust: func(c *Container, _ *Pod) {
				c.Mounts = []Mount{
					{ContainerPath: "/mnt/rw", HostPath: dataDir},
					{ContainerPath: "/mnt/ro", HostPath: dataDir, Readonly: true},
				}
				c.Devices = []Device{{ContainerPath: "/dev/mynull", HostPath: "/dev/null", Permissions: "rw"}}
				c.Resources = &Resources{MemoryLimitInBytes: 64 << 20, OOMScoreAdj: 500}
				c.Security.RunAsUser = ptr[int64](1000)
				c.Security.CapAddAmbient = []string{"NET_BIND_SERVICE"}
			},
			script: `busybox grep -q data /mnt/ro/file && ! busybox touch /mnt/ro/x 2>/dev/null &&
				busybox test -c /dev/mynull && echo hi > /dev/mynull &&
				test "$(busybox cat /proc/self/oom_score_adj)" = 500 &&
				busybox grep -q '^CapAmb:[[:space:]]*0000000000000400$' /proc/self/status &&
				l=$(busybox cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || busybox cat /sys/fs/cgroup/memory.max) &&
				test "$l" = 67108864`,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip != "" {
				t.Skip(tt.skip)
			}
			c := &Container{
				ID: fmt.Sprintf("warmpod-oci-test-%d-%d", os.Getpid(), i), Name: "app", Rootfs: rootfs,
				Command:  []string{"/bin/busybox", "sh", "-c", tt.script},
				Security: Security{Namespaces: NamespaceOptions{PID: NamespaceContainer, Network: NamespaceContainer, IPC: NamespaceContainer}},
			}
			p := &Pod{ID: "sandbox-1", Hostname: "web-0", Hosts: filepath.Join(podFiles, "hosts")}
			p.OOMScoreAdjMin, p.OOMScoreAdjMax = HostOOMScoreAdjRange()
			tt.adjust(c, p)
			s, err := b.Build(c, img, p)
			if err != nil {
				t.Fatal(err)
			}
			if out, code := runSpec(t, c.ID, s); code != 0 {
				t.Fatalf("container exited %d:\n%s", code, out)
			}
		})
	}
}

// runSpec runs the spec's process to completion in a libcontainer container and removes the container.
func runSpec(t *testing.T, id string, s *specs.Spec) (string, int) {
	t.Helper()
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: s})
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := libcontainer.Create(t.TempDir(), id, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := ctr.Destroy(); err != nil {
			t.Errorf("destroy container: %v", err)
		}
	}()
	var out bytes.Buffer
	groups := make([]int, len(s.Process.User.AdditionalGids))
	for i, g := range s.Process.User.AdditionalGids {
		groups[i] = int(g)
	}
	proc := &libcontainer.Process{
		Args: s.Process.Args, Env: s.Process.Env, Cwd: s.Process.Cwd,
		UID: int(s.Process.User.UID), GID: int(s.Process.User.GID), AdditionalGroups: groups,
		Stdout: &out, Stderr: &out, Init: true,
	}
	if err := ctr.Run(proc); err != nil {
		t.Fatalf("run: %v", err)
	}
	state, err := proc.Wait()
	if state == nil {
		t.Fatalf("wait: %v", err)
	}
	return out.String(), state.ExitCode()
}

// capMask renders capabilities as /proc/<pid>/status shows them.
func capMask(caps []string) string {
	var mask uint64
	for _, c := range caps {
		mask |= 1 << capOrder[c]
	}
	return strings.ToLower(fmt.Sprintf("%016x", mask))
}
