package container

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/oci"
)

var probeBuild struct {
	once sync.Once
	path string
	err  error
}

// buildProbe builds integration/cmd/probe, statically, once per test run.
func buildProbe(t *testing.T) string {
	t.Helper()
	probeBuild.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			probeBuild.err = err
			return
		}
		dir, err := os.MkdirTemp("", "warmpod-probe-")
		if err != nil {
			probeBuild.err = err
			return
		}
		probeBuild.path = filepath.Join(dir, "probe")
		cmd := exec.Command(goBin, "build", "-o", probeBuild.path, "github.com/warmpod/warmpod/integration/cmd/probe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		// In the module, wherever the test binary runs.
		if _, file, _, ok := runtime.Caller(0); ok {
			cmd.Dir = filepath.Dir(file)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			probeBuild.err = fmt.Errorf("build probe: %w\n%s", err, out)
		}
	})
	if probeBuild.err != nil {
		t.Skipf("no probe binary: %v", probeBuild.err)
	}
	return probeBuild.path
}

// probeLayer is an image layer holding the probe at /probe.
func probeLayer(t *testing.T) string {
	t.Helper()
	bin, err := os.ReadFile(buildProbe(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "probe"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// probed is one generation's report, with what the shim sees of it.
type probed struct {
	report  map[string]any
	seccomp *seccompFilter
	fast    bool
	stderr  string
	code    int
}

// probe creates generation id of spec s with engine e, reads its seccomp
// program from outside while it waits to be released, runs it and returns
// what it reported.
func (p *testPod) probe(t *testing.T, e *Engine, id string, s *specs.Spec) *probed {
	t.Helper()
	r := p.mount(t, id, s)
	defer func() {
		if err := r.Remove(); err != nil {
			t.Error(err)
		}
	}()
	g, err := e.Create(Config{ID: id, Spec: s, Template: t.Name()})
	if err != nil {
		t.Fatalf("create with the %s spawner: %v", e.spawner, err)
	}
	out := &probed{fast: g.fast != nil}
	if s.Linux.Seccomp != nil {
		server, err := p.engines[SpawnerFast].forkServer()
		if err != nil {
			t.Fatal(err)
		}
		if out.seccomp, err = server.readFilter(g.Init.Pid()); err != nil {
			t.Errorf("read seccomp program: %v", err)
		}
	}
	if err := g.Release(); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr []byte
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { stderr, _ = io.ReadAll(g.Init.IO.Stderr); wg.Done() }()
	stdout, _ = io.ReadAll(g.Init.IO.Stdout)
	wg.Wait()
	<-g.Init.Done()
	out.code, _ = g.Init.Exit()
	out.stderr = string(stderr)
	if err := g.Destroy(); err != nil {
		t.Error(err)
	}
	g.Init.IO.Close()
	if out.code != 0 {
		t.Fatalf("%s: probe exited %d: %s", e.spawner, out.code, stderr)
	}
	if err := json.Unmarshal(stdout, &out.report); err != nil {
		t.Fatalf("%s: probe report: %v\n%s", e.spawner, err, stdout)
	}
	return out
}

// TestSpawnersMakeTheSameContainer makes the same container with
// libcontainer and with the fast spawner, each running the probe, and
// compares what the probe finds from the inside: namespaces (relative to the
// pod's and the host's), mounts (modulo mount ids, anonymous device numbers
// and the generation's own names), cgroups and their limits, credentials,
// all five capability sets, no_new_privs, seccomp mode and program (read
// from outside), rlimits, environment, working directory, hostname, session,
// keyring, devices, descriptors and what masked and read-only paths allow.
func TestSpawnersMakeTheSameContainer(t *testing.T) {
	probeDir := probeLayer(t)
	p := newTestPod(t, SpawnerFast, probeDir)
	pidNS := pinPIDNamespace(t, filepath.Join(p.dir, "ns", "pid"))
	masked := []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/acpi", "/sys/firmware", "/proc/sys/kernel/hostname", "/proc/sysrq-trigger"}
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An image's symlink to a host directory: a mount below it must land
	// inside the container's root, never in the host's directory.
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(probeDir, "escape")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		adjust func(c *oci.Container, pod *oci.Pod)
		spec   func(s *specs.Spec)
		// libcontainer: the fast spawner hands this config to libcontainer.
		libcontainer bool
	}{
		{name: "default"},
		{
			name: "image user, groups, no_new_privs, read-only rootfs, cwd to create",
			adjust: func(c *oci.Container, _ *oci.Pod) {
				c.Security.RunAsUsername = "app"
				c.Security.SupplementalGroups = []int64{2000}
				c.Security.NoNewPrivs = true
				c.Security.ReadonlyRootfs = true
				c.WorkingDir = "/work/dir"
				c.Env = []string{"A=1", "A=2", "HOME="}
			},
		},
		{
			name: "seccomp runtime default with no_new_privs",
			adjust: func(c *oci.Container, _ *oci.Pod) {
				c.Security.Seccomp = &oci.SecurityProfile{Type: oci.ProfileRuntimeDefault}
				c.Security.NoNewPrivs = true
			},
		},
		{
			name: "seccomp runtime default as root without no_new_privs",
			adjust: func(c *oci.Container, _ *oci.Pod) {
				c.Security.Seccomp = &oci.SecurityProfile{Type: oci.ProfileRuntimeDefault}
				c.Security.RunAsUser = ptr[int64](1000)
			},
		},
		{
			name: "privileged",
			adjust: func(c *oci.Container, pod *oci.Pod) {
				c.Security.Privileged, pod.Privileged = true, true
			},
		},
		{
			name: "volumes, device, limits, oom score, ambient capabilities, sysctls, rlimits, umask",
			adjust: func(c *oci.Container, _ *oci.Pod) {
				c.Mounts = []oci.Mount{
					{ContainerPath: "/mnt/rw", HostPath: vol},
					{ContainerPath: "/mnt/ro", HostPath: vol, Readonly: true},
					{ContainerPath: "/mnt/file", HostPath: filepath.Join(vol, "f"), Options: []string{"noexec"}},
				}
				c.Devices = []oci.Device{{ContainerPath: "/dev/mynull", HostPath: "/dev/null", Permissions: "rw"}}
				c.Resources = &oci.Resources{MemoryLimitInBytes: 64 << 20, CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, OOMScoreAdj: 500, PidsLimit: 100}
				c.Security.RunAsUser = ptr[int64](1000)
				c.Security.CapAddAmbient = []string{"NET_BIND_SERVICE"}
				c.Security.CapDrop = []string{"CHOWN"}
				c.Sysctls = map[string]string{"kernel.shm_rmid_forced": "1", "net.ipv4.ip_unprivileged_port_start": "80"}
			},
			spec: func(s *specs.Spec) {
				s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1000, Hard: 1024}, {Type: "RLIMIT_CORE", Soft: 0, Hard: 0}}
				umask := uint32(0o077)
				s.Process.User.Umask = &umask
			},
		},
		{
			name: "pod pid namespace",
			adjust: func(c *oci.Container, pod *oci.Pod) {
				c.Security.Namespaces.PID = oci.NamespacePod
				pod.PIDNS = pidNS
			},
		},
		{
			name: "host namespaces",
			adjust: func(c *oci.Container, pod *oci.Pod) {
				c.Security.Namespaces = oci.NamespaceOptions{Network: oci.NamespaceNode, PID: oci.NamespaceNode, IPC: oci.NamespaceNode}
				pod.Hostname = ""
			},
		},
		{
			name: "unmasked proc",
			adjust: func(c *oci.Container, _ *oci.Pod) {
				c.Security.MaskedPaths = []string{}
				c.Security.ReadonlyPaths = []string{}
			},
		},
		{
			name: "volume below an image symlink that points out of the root",
			adjust: func(c *oci.Container, _ *oci.Pod) {
				c.Mounts = []oci.Mount{{ContainerPath: "/escape/vol", HostPath: vol}}
			},
		},
		{
			name:         "terminal",
			adjust:       func(c *oci.Container, _ *oci.Pod) { c.Tty = true },
			libcontainer: true,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := *p.pod
			c := &oci.Container{ID: fmt.Sprintf("c%d", i), Command: append([]string{"/probe"}, masked...)}
			c.Security.Namespaces.PID = oci.NamespaceContainer
			if tt.adjust != nil {
				tt.adjust(c, &pod)
			}
			saved := p.pod
			p.pod = &pod
			s := p.spec(t, c)
			p.pod = saved
			if tt.spec != nil {
				tt.spec(s)
			}
			if c.Tty {
				// The probe writes to its terminal; nobody reads it here.
				s.Process.Args = []string{"/bin/true"}
			}
			if s.Linux.Seccomp != nil {
				// The fast spawner leaves a template's first generation to
				// libcontainer and takes its seccomp program.
				p.createOnly(t, p.engines[SpawnerFast], fmt.Sprintf("t%d-first", i), cloneSpec(t, s))
			}
			var results [2]*probed
			for j, sp := range []string{SpawnerLibcontainer, SpawnerFast} {
				id := fmt.Sprintf("t%d-%s", i, sp[:4])
				s := cloneSpec(t, s)
				if c.Tty {
					g := p.createOnly(t, p.engines[sp], id, s)
					results[j] = &probed{fast: g}
					continue
				}
				results[j] = p.probe(t, p.engines[sp], id, s)
			}
			lc, fast := results[0], results[1]
			if fast.fast == tt.libcontainer {
				t.Fatalf("fast spawner made it itself: %v, want %v", fast.fast, !tt.libcontainer)
			}
			if c.Tty {
				return
			}
			if lc.fast {
				t.Fatal("the libcontainer spawner used the fast one")
			}
			ids := [2]string{fmt.Sprintf("t%d-libc", i), fmt.Sprintf("t%d-fast", i)}
			want, got := normalize(t, p, lc.report, ids[0]), normalize(t, p, fast.report, ids[1])
			for _, k := range sortedKeys(want, got) {
				if !reflect.DeepEqual(want[k], got[k]) {
					t.Errorf("%s differs:\nlibcontainer: %s\nfast:         %s", k, pretty(want[k]), pretty(got[k]))
				}
			}
			if diff := sameFilter(lc.seccomp, fast.seccomp); diff != "" {
				t.Errorf("seccomp programs differ: %s", diff)
			}
			if lc.stderr != fast.stderr {
				t.Errorf("stderr differs:\nlibcontainer: %q\nfast:         %q", lc.stderr, fast.stderr)
			}
			if entries, err := os.ReadDir(outside); err != nil || len(entries) > 0 {
				t.Errorf("a container wrote through the image's symlink to %s: %v %v", outside, entries, err)
			}
		})
	}
}

// createOnly creates a generation and destroys it without releasing it,
// and tells whether the fast spawner made it.
func (p *testPod) createOnly(t *testing.T, e *Engine, id string, s *specs.Spec) bool {
	t.Helper()
	r := p.mount(t, id, s)
	defer r.Remove()
	g, err := e.Create(Config{ID: id, Spec: s, Tty: s.Process.Terminal, Template: t.Name()})
	if err != nil {
		t.Fatalf("create with the %s spawner: %v", e.spawner, err)
	}
	fast := g.fast != nil
	if err := g.Destroy(); err != nil {
		t.Error(err)
	}
	g.Init.IO.Close()
	return fast
}

func cloneSpec(t *testing.T, s *specs.Spec) *specs.Spec {
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var c specs.Spec
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

var (
	anonDev   = regexp.MustCompile(`^0:\d+$`)
	peerGroup = regexp.MustCompile(`^(shared|master|propagate_from):\d+$`)
)

// normalize makes a report comparable across generations: namespaces named
// by whose they are, the generation's id replaced, mount ids and anonymous
// device numbers replaced by their order of appearance.
func normalize(t *testing.T, p *testPod, r map[string]any, id string) map[string]any {
	t.Helper()
	out := map[string]any{}
	for k, v := range r {
		out[k] = v
	}
	data, _ := json.Marshal(out)
	data = []byte(strings.ReplaceAll(string(data), id, "<ID>"))
	out = map[string]any{}
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}

	// The host's namespaces are this thread's. Not /proc/self's (the main
	// thread's): libcontainer joins each container's mount namespace on a
	// thread of its own that it leaves locked to end it, and when that is
	// the main thread, the Go runtime parks it for good, in there.
	owners := map[string]string{}
	host, _ := os.ReadDir("/proc/thread-self/ns")
	for _, e := range host {
		if l, err := os.Readlink("/proc/thread-self/ns/" + e.Name()); err == nil {
			owners[l] = "host"
		}
	}
	pins, _ := filepath.Glob(filepath.Join(p.dir, "ns", "*"))
	for _, pin := range pins {
		var st unix.Stat_t
		if unix.Stat(pin, &st) == nil {
			owners[fmt.Sprintf("%s:[%d]", filepath.Base(pin), st.Ino)] = "pod"
		}
	}
	nss := map[string]any{}
	for k, v := range out["namespaces"].(map[string]any) {
		l := v.(string)
		owner, ok := owners[l]
		if !ok {
			owner = "own"
		}
		nss[k] = owner
	}
	out["namespaces"] = nss

	var mounts []any
	mountpoints := map[string]string{}
	devs := map[string]string{}
	for _, l := range out["mountinfo"].([]any) {
		f := strings.Fields(l.(string))
		mountpoints[f[0]] = f[4]
	}
	for _, l := range out["mountinfo"].([]any) {
		f := strings.Fields(l.(string))
		parent := mountpoints[f[1]]
		if parent == "" {
			parent = "(outside)"
		}
		dev := f[2]
		if anonDev.MatchString(dev) {
			if _, ok := devs[dev]; !ok {
				devs[dev] = fmt.Sprintf("anon%d", len(devs))
			}
			dev = devs[dev]
		}
		rest := f[3:]
		for i, x := range rest {
			if peerGroup.MatchString(x) {
				rest[i] = strings.SplitN(x, ":", 2)[0] + ":#"
			}
		}
		mounts = append(mounts, fmt.Sprintf("in %s: %s %s", parent, dev, strings.Join(rest, " ")))
	}
	out["mountinfo"] = mounts
	return out
}

func sortedKeys(ms ...map[string]any) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

func pretty(v any) string {
	data, _ := json.MarshalIndent(v, "", "  ")
	return string(data)
}

// sameFilter tells how two seccomp programs decide differently, or "" when
// they decide every system call of x86-64, x32 and i386 (numbers 0-1023 and
// a few beyond, with a few argument patterns) the same way. Programs
// libcontainer builds from the same config differ from one build to the
// next (its ENOSYS stub comes from a map), so they are compared by what they
// decide: run in golang.org/x/net/bpf's interpreter, as runc's own tests do.
func sameFilter(a, b *seccompFilter) string {
	switch {
	case a == nil && b == nil:
		return ""
	case a == nil || b == nil:
		return fmt.Sprintf("one container has a seccomp program, the other not (%v, %v)", a != nil, b != nil)
	case a.flags != b.flags:
		return fmt.Sprintf("flags %#x and %#x", a.flags, b.flags)
	}
	vms := make([]*bpf.VM, 2)
	for i, f := range []*seccompFilter{a, b} {
		prog := make([]bpf.Instruction, len(f.prog))
		for j, ins := range f.prog {
			prog[j] = bpf.RawInstruction{Op: ins.Code, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}.Disassemble()
		}
		vm, err := bpf.NewVM(prog)
		if err != nil {
			return fmt.Sprintf("program %d does not load: %v", i, err)
		}
		vms[i] = vm
	}
	const (
		archX8664 = 0xc000003e
		archI386  = 0x40000003
		x32Bit    = 0x40000000
	)
	argSets := [][6]uint64{{}, {1, 2, 3, 4, 5, 6}, {0x7e020000, 0, 0, 0, 0, 0}, {40, 0, 0, 0, 0, 0}, {^uint64(0), 0, 0, 0, 0, 0}}
	var nrs []uint32
	for nr := uint32(0); nr < 1024; nr++ {
		nrs = append(nrs, nr, nr|x32Bit)
	}
	nrs = append(nrs, 0xffff, 0x7fffffff)
	for _, arch := range []uint32{archX8664, archI386} {
		for _, nr := range nrs {
			for _, args := range argSets {
				in := seccompData(nr, arch, args)
				ra, erra := vms[0].Run(in)
				rb, errb := vms[1].Run(in)
				if ra != rb || (erra == nil) != (errb == nil) {
					return fmt.Sprintf("arch %#x syscall %#x args %#x: %#x (%v) and %#x (%v)", arch, nr, args, ra, erra, rb, errb)
				}
			}
		}
	}
	return ""
}

// seccompData is the kernel's struct seccomp_data for the interpreter, which
// loads 32-bit words big-endian where the kernel loads them in the host's
// (little-endian) order: each word is written with the value the kernel
// would load from its offset.
func seccompData(nr, arch uint32, args [6]uint64) []byte {
	b := make([]byte, 0, 64)
	word := func(v uint32) { b = binary.BigEndian.AppendUint32(b, v) }
	word(nr)
	word(arch)
	word(0xcafe) // instruction pointer, low word
	word(0)
	for _, a := range args {
		word(uint32(a))
		word(uint32(a >> 32))
	}
	return b
}

func ptr[T any](v T) *T { return &v }

// pinPIDNamespace starts a process as pid 1 of a new pid namespace, as a
// pod's pause process, and pins the namespace at pin; both go at cleanup.
func pinPIDNamespace(t *testing.T, pin string) string {
	t.Helper()
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("no busybox")
	}
	cmd := exec.Command(busybox, "sleep", "3600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if err := os.WriteFile(pin, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(fmt.Sprintf("/proc/%d/ns/pid", cmd.Process.Pid), pin, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(pin, unix.MNT_DETACH) })
	return pin
}
