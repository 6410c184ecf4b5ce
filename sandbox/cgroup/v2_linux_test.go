package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// fakeV2 lays out a unified tree whose root offers the usual controllers
// and has a /kubepods parent, as the kubelet makes it.
func fakeV2(t *testing.T) *v2Manager {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"cgroup.controllers":              "cpuset cpu io memory pids\n",
		"cgroup.subtree_control":          "",
		"kubepods/cgroup.controllers":     "cpuset cpu io memory pids\n",
		"kubepods/cgroup.subtree_control": "",
	})
	return &v2Manager{mountpoint: root}
}

func TestV2CreateUpdateOnFakeTree(t *testing.T) {
	requireRootForFakeTree(t)
	m := fakeV2(t)
	path, err := create(m, "/kubepods/pod1", &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: ptr(int64(64 << 20))},
		// Quota without a period: the kernel's default period applies.
		CPU:  &specs.LinuxCPU{Shares: ptr(uint64(1024)), Quota: ptr(int64(50000))},
		Pids: &specs.LinuxPids{Limit: ptr(int64(100))},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(m.mountpoint, path)
	for file, want := range map[string]string{
		"memory.max": "67108864",
		"cpu.max":    "50000 100000",
		"pids.max":   "100",
	} {
		if got := readTrim(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if w := readTrim(t, filepath.Join(dir, "cpu.weight")); w == "" || w == "0" {
		t.Errorf("cpu.weight = %q", w)
	}
	// Every controller is enabled in the parent so the pod cgroup has its
	// usage files even where no limit asks for them.
	sub := readTrim(t, filepath.Join(m.mountpoint, "kubepods/cgroup.subtree_control"))
	for _, c := range []string{"cpuset", "cpu", "io", "memory", "pids"} {
		if !strings.Contains(sub, "+"+c) {
			t.Errorf("parent subtree_control %q lacks +%s", sub, c)
		}
	}

	if err := update(m, path, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(32 << 20))}}); err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, filepath.Join(dir, "memory.max")); got != "33554432" {
		t.Errorf("memory.max after update = %q", got)
	}
	// memory.swap.max counts swap alone, the OCI value memory plus swap;
	// unified files are written last and win.
	for _, tt := range []struct {
		name string
		res  *specs.LinuxResources
		want map[string]string
	}{
		{"swap above the limit", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(32 << 20)), Swap: ptr(int64(48 << 20))}},
			map[string]string{"memory.swap.max": "16777216"}},
		{"unlimited swap", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(32 << 20)), Swap: ptr(int64(-1))}},
			map[string]string{"memory.max": "33554432", "memory.swap.max": "max"}},
		{"unified wins", &specs.LinuxResources{
			Memory:  &specs.LinuxMemory{Limit: ptr(int64(32 << 20)), Swap: ptr(int64(32 << 20))},
			Unified: map[string]string{"memory.swap.max": "4096", "memory.high": "1000000"},
		}, map[string]string{"memory.swap.max": "4096", "memory.high": "1000000"}},
	} {
		if err := update(m, path, tt.res); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		for file, want := range tt.want {
			if got := readTrim(t, filepath.Join(dir, file)); got != want {
				t.Errorf("%s: %s = %q, want %q", tt.name, file, got, want)
			}
		}
	}
	if err := update(m, "/kubepods/missing", &specs.LinuxResources{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("update of a missing cgroup = %v, want ErrNotFound", err)
	}

	writeFiles(t, dir, map[string]string{"ctr/cgroup.procs": "77\n"})
	if err := remove(m, path); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("remove of a busy cgroup = %v, want ErrNotEmpty", err)
	}
	if err := os.Remove(filepath.Join(dir, "ctr/cgroup.procs")); err != nil {
		t.Fatal(err)
	}
	if err := remove(m, path); err != nil {
		t.Fatal(err)
	}
	if ok, _ := m.exists(path); ok {
		t.Fatal("cgroup left after remove")
	}
	if ok, _ := m.exists("/kubepods"); !ok {
		t.Fatal("shared parent removed")
	}
}

func TestV2StatsOnFakeTree(t *testing.T) {
	m := fakeV2(t)
	path, err := create(m, "/kubepods/pod1", nil)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, filepath.Join(m.mountpoint, path), map[string]string{
		"cpu.stat": "usage_usec 5000\nuser_usec 3000\nsystem_usec 2000\n" +
			"nr_periods 10\nnr_throttled 4\nthrottled_usec 9\n",
		"memory.current": "10000\n",
		"memory.max":     "max\n",
		"memory.stat":    "anon 3000\nfile 7000\ninactive_file 2500\npgfault 40\npgmajfault 4\n",
		"memory.events":  "low 0\nhigh 0\nmax 6\noom 2\noom_kill 1\n",
		"pids.current":   "5\n",
		"pids.max":       "1000\n",
		"io.stat":        "8:0 rbytes=100 wbytes=200 rios=1 wios=2\n8:16 rbytes=1 wbytes=2 rios=1 wios=1\n",
	})
	st, err := stats(m, path)
	if err != nil {
		t.Fatal(err)
	}
	want := Metrics{
		CPU: CPUStats{UsageNanos: 5000000, UserNanos: 3000000, SystemNanos: 2000000,
			Periods: 10, ThrottledPeriods: 4, ThrottledNanos: 9000},
		Memory: MemoryStats{UsageBytes: 10000, WorkingSetBytes: 7500, RSSBytes: 3000,
			PageFaults: 40, MajorPageFaults: 4, OOMEvents: 2, OOMKills: 1},
		Pids: PidsStats{Current: 5, Limit: 1000},
		IO:   IOStats{ReadBytes: 101, WriteBytes: 202},
	}
	if *st != want {
		t.Errorf("stats = %+v\nwant    %+v", *st, want)
	}

	writeFiles(t, filepath.Join(m.mountpoint, path), map[string]string{"memory.max": "20000\n", "pids.max": "max\n"})
	st, err = stats(m, path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Memory.LimitBytes != 20000 || st.Memory.AvailableBytes != 12500 || st.Pids.Limit != 0 {
		t.Errorf("limits = %+v %+v", st.Memory, st.Pids)
	}
}

// hostV2 returns a manager for a real, writable cgroup2 mount: the whole
// hierarchy on a unified host, /sys/fs/cgroup/unified on a hybrid one.
func hostV2(t *testing.T) *v2Manager {
	requireRoot(t)
	mp := hostRoot
	if cgroups.Mode() == cgroups.Hybrid {
		mp = filepath.Join(hostRoot, "unified")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mp, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Skipf("no cgroup2 mount at %s", mp)
	}
	if unix.Access(filepath.Join(mp, "cgroup.procs"), unix.W_OK) != nil {
		t.Skipf("cgroup2 at %s is read-only", mp)
	}
	return &v2Manager{mountpoint: mp}
}

// restoreSubtreeControl puts the root's enabled controllers back as they
// were, since Create enables every controller in the ancestors.
func restoreSubtreeControl(t *testing.T, mp string) {
	file := filepath.Join(mp, "cgroup.subtree_control")
	before := strings.Fields(readTrim(t, file))
	t.Cleanup(func() {
		for _, c := range strings.Fields(readTrim(t, file)) {
			if !slices.Contains(before, c) {
				if err := os.WriteFile(file, []byte("-"+c), 0); err != nil {
					t.Errorf("disable %s again in %s: %v", c, file, err)
				}
			}
		}
	})
}

// Exercised on the real unified hierarchy: on this hybrid host it has no
// resource controllers, but processes, CPU time (cpu.stat is always there)
// and deletion work the same as on a v2 node.
func TestV2Host(t *testing.T) {
	m := hostV2(t)
	restoreSubtreeControl(t, m.mountpoint)
	parent := uniqueParent(t)
	t.Cleanup(func() {
		if err := remove(m, parent); err != nil {
			t.Errorf("cleanup parent: %v", err)
		}
	})
	exercise(t, m, parent)
}

// Kill, on the unified hierarchy (cgroup.kill, where the kernel has it).
func TestV2HostKill(t *testing.T) {
	m := hostV2(t)
	restoreSubtreeControl(t, m.mountpoint)
	parent := uniqueParent(t)
	t.Cleanup(func() {
		if err := remove(m, parent); err != nil {
			t.Errorf("cleanup parent: %v", err)
		}
	})
	exerciseKill(t, m, parent)
}
