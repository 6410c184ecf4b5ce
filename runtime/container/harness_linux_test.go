package container

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/runtime/rootfs"
)

func TestMain(m *testing.M) {
	Init()
	if os.Geteuid() == 0 && os.Getenv(sealedEnv) == "" {
		// Run from a sealed copy, as the daemon starts shims: libcontainer
		// would otherwise copy the binary for every container it creates.
		self, err := SealedSelf()
		if err == nil {
			os.Setenv(sealedEnv, "1")
			err = unix.Exec(fmt.Sprintf("/proc/self/fd/%d", self.Fd()), os.Args, os.Environ())
		}
		fmt.Fprintf(os.Stderr, "run from a sealed copy: %v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

const sealedEnv = "WARMPOD_TEST_SEALED"

// testPod is what a pod's shim holds for its containers, made for one test:
// pinned network, IPC and UTS namespaces, pod files, a cgroup parent, an
// image layer and an engine.
type testPod struct {
	dir    string
	pod    *oci.Pod
	layers []string
	engine *Engine
	root   string
	// engines has an engine of each spawner, engine among them.
	engines map[string]*Engine
}

// needRoot skips tests that create containers where they cannot run.
func needRoot(tb testing.TB) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("creating containers needs root")
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		tb.Skip("busybox (Debian's busybox-static) is not installed")
	}
	return busybox
}

func newTestPod(tb testing.TB, spawner string, layers ...string) *testPod {
	tb.Helper()
	busybox := needRoot(tb)
	dir := tb.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	p := &testPod{dir: dir, root: filepath.Join(dir, "gens")}
	layer := filepath.Join(dir, "layer")
	files := map[string]string{
		"etc/passwd":     "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
		"etc/group":      "root:x:0:\napp:x:1000:\naudio:x:29:app\n",
		"home/app/.keep": "",
	}
	for p, content := range files {
		full := filepath.Join(layer, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	bin, err := os.ReadFile(busybox)
	if err != nil {
		tb.Fatal(err)
	}
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(layer, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(layer, "bin", "busybox"), bin, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, name := range []string{"sh", "true", "sleep", "cat"} {
		if err := os.Symlink("busybox", filepath.Join(layer, "bin", name)); err != nil {
			tb.Fatal(err)
		}
	}
	p.layers = append([]string{layer}, layers...)

	ns := pinNamespaces(tb, filepath.Join(dir, "ns"), "web-0")
	podFiles := map[string]string{"hosts": "127.0.0.1 localhost\n", "resolv.conf": "nameserver 10.0.0.10\n", "hostname": "web-0\n"}
	for name, content := range podFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	shm := filepath.Join(dir, "shm")
	if err := os.Mkdir(shm, 0o755); err != nil {
		tb.Fatal(err)
	}
	cgParent := fmt.Sprintf("/warmpod-test-%d-%s", os.Getpid(), filepath.Base(dir))
	p.pod = &oci.Pod{
		ID: "pod-" + filepath.Base(dir), Name: "web", Namespace: "default", UID: "uid-1", Hostname: "web-0",
		NetNS: ns["net"], IPCNS: ns["ipc"], UTSNS: ns["uts"], CgroupParent: cgParent,
		Hosts: filepath.Join(dir, "hosts"), ResolvConf: filepath.Join(dir, "resolv.conf"),
		HostnameFile: filepath.Join(dir, "hostname"), Shm: shm,
	}
	p.pod.OOMScoreAdjMin, p.pod.OOMScoreAdjMax = oci.HostOOMScoreAdjRange()
	tb.Cleanup(func() { removeCgroupTree(cgParent) })
	p.engines = map[string]*Engine{}
	for _, sp := range []string{SpawnerLibcontainer, SpawnerFast} {
		e, err := NewEngine(filepath.Join(dir, "lc-"+sp), Options{Spawner: sp})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(e.Close)
		p.engines[sp] = e
	}
	p.engine = p.engines[spawner]
	return p
}

// spec builds the OCI spec of container c of the pod, the way the daemon
// does for a CRI CreateContainer with an image whose layers are the pod's.
func (p *testPod) spec(tb testing.TB, c *oci.Container) *specs.Spec {
	tb.Helper()
	if c.Name == "" {
		c.Name = "app"
	}
	if c.ID == "" {
		c.ID = "ctr"
	}
	s, err := oci.Build(c, &oci.Image{Name: "busybox", Layers: p.layers, Env: []string{"PATH=/bin"}}, p.pod)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// mount mounts a fresh rootfs for generation id and fills s in for it.
func (p *testPod) mount(tb testing.TB, id string, s *specs.Spec) rootfs.Rootfs {
	tb.Helper()
	r, err := rootfs.Mount(p.layers, filepath.Join(p.root, id), nil)
	if err != nil {
		tb.Fatal(err)
	}
	s.Root.Path = r.Merged
	s.Linux.CgroupsPath = filepath.Join(p.pod.CgroupParent, id)
	return r
}

// pinNamespaces creates network, IPC and UTS namespaces with hostname and
// pins them under dir, as a pod sandbox does; they are unpinned at cleanup.
func pinNamespaces(tb testing.TB, dir, hostname string) map[string]string {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	paths := map[string]string{}
	errc := make(chan error, 1)
	var pin func()
	pin = func() {
		// The thread ends in the new namespaces: never unlocked. Not the
		// main thread: it would stay on (/proc/self/ns shows it).
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			go pin()
			runtime.UnlockOSThread()
			return
		}
		if err := unix.Unshare(unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS); err != nil {
			errc <- err
			return
		}
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			errc <- err
			return
		}
		for _, ns := range []string{"net", "ipc", "uts"} {
			pin := filepath.Join(dir, ns)
			if err := os.WriteFile(pin, nil, 0o444); err != nil {
				errc <- err
				return
			}
			if err := unix.Mount(fmt.Sprintf("/proc/thread-self/ns/%s", ns), pin, "", unix.MS_BIND, ""); err != nil {
				errc <- err
				return
			}
			paths[ns] = pin
		}
		errc <- nil
	}
	go pin()
	err := <-errc
	tb.Cleanup(func() {
		for _, pin := range paths {
			_ = unix.Unmount(pin, unix.MNT_DETACH)
		}
	})
	if err != nil {
		tb.Fatalf("pin namespaces: %v", err)
	}
	return paths
}

// removeCgroupTree removes the cgroup dirs of path, leaves first, in every
// hierarchy.
func removeCgroupTree(path string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		top := filepath.Join(root, path)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = unix.Rmdir(dirs[i])
		}
	}
}
