package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/cgroups/v3"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func ptr[T any](v T) *T { return &v }

var v1Controllers = []string{"systemd", "freezer", "pids", "cpuset", "cpu", "cpuacct", "memory", "blkio", "devices"}

// fakeV1 lays out a v1 tree with the controllers this host mounts.
func fakeV1(t *testing.T) *v1Manager {
	root := t.TempDir()
	for _, c := range v1Controllers {
		if err := os.Mkdir(filepath.Join(root, c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFiles(t, root, map[string]string{
		"cpuset/cpuset.cpus": "0-1\n",
		"cpuset/cpuset.mems": "0\n",
	})
	return &v1Manager{root: root, procRoot: "/proc"}
}

func TestV1CreateUpdateOnFakeTree(t *testing.T) {
	requireRootForFakeTree(t)
	m := fakeV1(t)
	res := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: ptr(int64(64 << 20))},
		CPU:    &specs.LinuxCPU{Shares: ptr(uint64(512)), Quota: ptr(int64(50000)), Period: ptr(uint64(100000))},
		Pids:   &specs.LinuxPids{Limit: ptr(int64(100))},
	}
	path, err := create(m, "/kubepods/pod1", res)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range v1Controllers {
		if _, err := os.Stat(filepath.Join(m.root, c, path)); err != nil {
			t.Errorf("no %s cgroup: %v", c, err)
		}
	}
	for file, want := range map[string]string{
		"memory/kubepods/pod1/memory.limit_in_bytes": "67108864",
		"cpu/kubepods/pod1/cpu.shares":               "512",
		"cpu/kubepods/pod1/cpu.cfs_quota_us":         "50000",
		"pids/kubepods/pod1/pids.max":                "100",
		// cpuset must inherit cpus and mems or no task could join it.
		"cpuset/kubepods/pod1/cpuset.cpus": "0-1",
		"cpuset/kubepods/pod1/cpuset.mems": "0",
	} {
		if got := readTrim(t, filepath.Join(m.root, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}

	if err := update(m, path, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(128 << 20))}}); err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, filepath.Join(m.root, "memory", path, "memory.limit_in_bytes")); got != "134217728" {
		t.Errorf("memory limit after update = %q", got)
	}
	if err := update(m, "/kubepods/missing", &specs.LinuxResources{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("update of a missing cgroup = %v, want ErrNotFound", err)
	}

	if err := remove(m, path); err != nil {
		t.Fatal(err)
	}
	for _, c := range v1Controllers {
		if _, err := os.Stat(filepath.Join(m.root, c, path)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s cgroup left after remove: %v", c, err)
		}
	}
	if _, err := os.Stat(filepath.Join(m.root, "memory/kubepods")); err != nil {
		t.Errorf("shared parent removed: %v", err)
	}
}

func TestV1BusyOnFakeTree(t *testing.T) {
	requireRootForFakeTree(t)
	m := fakeV1(t)
	path, err := create(m, "/warmpod/p", nil)
	if err != nil {
		t.Fatal(err)
	}
	// A container cgroup below the pod still holding a process.
	writeFiles(t, filepath.Join(m.root, "pids", path), map[string]string{"ctr/cgroup.procs": "4242\n"})
	if err := remove(m, path); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("remove = %v, want ErrNotEmpty", err)
	}
	if ok, _ := m.exists(path); !ok {
		t.Fatal("busy cgroup removed from some controller")
	}
	got, err := procs(m, path)
	if err != nil || len(got) != 1 || got[0] != 4242 {
		t.Fatalf("procs = %v, %v", got, err)
	}
}

func TestV1StatsOnFakeTree(t *testing.T) {
	requireRootForFakeTree(t)
	m := fakeV1(t)
	path, err := create(m, "/warmpod/p", nil)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"cpuacct/warmpod/p/cpuacct.usage":        "5000000\n",
		"cpuacct/warmpod/p/cpuacct.usage_percpu": "2000000 3000000\n",
		"cpuacct/warmpod/p/cpuacct.stat":         "user 1\nsystem 2\n",
		"cpu/warmpod/p/cpu.stat":                 "nr_periods 10\nnr_throttled 3\nthrottled_time 777\n",
		"memory/warmpod/p/memory.stat": "cache 0\nrss 0\ntotal_rss 3000\ntotal_inactive_file 1000\n" +
			"total_pgfault 50\ntotal_pgmajfault 5\n",
		"memory/warmpod/p/memory.oom_control":                       "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
		"pids/warmpod/p/pids.current":                               "3\n",
		"pids/warmpod/p/pids.max":                                   "max\n",
		"blkio/warmpod/p/blkio.throttle.io_serviced":                "",
		"blkio/warmpod/p/blkio.throttle.io_service_bytes":           "",
		"blkio/warmpod/p/blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\n8:16 Read 1\nTotal 12289\n",
	}
	for prefix, usage := range map[string]string{"": "10000", "kmem.": "0", "kmem.tcp.": "0"} {
		files["memory/warmpod/p/memory."+prefix+"usage_in_bytes"] = usage
		files["memory/warmpod/p/memory."+prefix+"max_usage_in_bytes"] = usage
		files["memory/warmpod/p/memory."+prefix+"failcnt"] = "0"
		files["memory/warmpod/p/memory."+prefix+"limit_in_bytes"] = "9223372036854771712"
	}
	files["memory/warmpod/p/memory.limit_in_bytes"] = "20000"
	writeFiles(t, m.root, files)

	st, err := stats(m, path)
	if err != nil {
		t.Fatal(err)
	}
	if st.CPU.UsageNanos != 5000000 || st.CPU.UserNanos == 0 || st.CPU.SystemNanos <= st.CPU.UserNanos {
		t.Errorf("cpu = %+v", st.CPU)
	}
	if st.CPU.Periods != 10 || st.CPU.ThrottledPeriods != 3 || st.CPU.ThrottledNanos != 777 {
		t.Errorf("throttling = %+v", st.CPU)
	}
	wantMem := MemoryStats{
		UsageBytes: 10000, WorkingSetBytes: 9000, RSSBytes: 3000, PageFaults: 50, MajorPageFaults: 5,
		LimitBytes: 20000, AvailableBytes: 11000, OOMKills: 2,
	}
	if st.Memory != wantMem {
		t.Errorf("memory = %+v\nwant %+v", st.Memory, wantMem)
	}
	if st.Pids != (PidsStats{Current: 3}) {
		t.Errorf("pids = %+v", st.Pids)
	}
	if st.IO != (IOStats{ReadBytes: 4097, WriteBytes: 8192}) {
		t.Errorf("io = %+v", st.IO)
	}
}

func hostV1(t *testing.T) *v1Manager {
	requireRoot(t)
	if mode := cgroups.Mode(); mode != cgroups.Legacy && mode != cgroups.Hybrid {
		t.Skipf("host cgroup mode is %v, not v1", mode)
	}
	m, err := host()
	if err != nil {
		t.Fatal(err)
	}
	return m.(*v1Manager)
}

func TestV1Host(t *testing.T) {
	m := hostV1(t)
	parent := uniqueParent(t)
	t.Cleanup(func() {
		if err := remove(m, parent); err != nil {
			t.Errorf("cleanup parent: %v", err)
		}
	})
	exercise(t, m, parent)
}

// Kill ends every process of a pod cgroup, those of its children too, and
// one that keeps forking.
func TestV1HostKill(t *testing.T) {
	m := hostV1(t)
	parent := uniqueParent(t)
	t.Cleanup(func() {
		if err := remove(m, parent); err != nil {
			t.Errorf("cleanup parent: %v", err)
		}
	})
	exerciseKill(t, m, parent)
}

func TestV1HostLimitsAndStats(t *testing.T) {
	hostV1(t)
	parent := uniqueParent(t)
	t.Cleanup(func() {
		if err := Delete(parent); err != nil {
			t.Errorf("cleanup parent: %v", err)
		}
	})
	path, err := Create(parent, "pod", &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: ptr(int64(256 << 20))},
		Pids:   &specs.LinuxPids{Limit: ptr(int64(64))},
		CPU:    &specs.LinuxCPU{Shares: ptr(uint64(256))},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Delete(path); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	w := startWorker(t)
	if err := AddProc(path, w.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	w.run(t)
	st, err := Stats(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pids.Current == 0 || st.Pids.Limit != 64 {
		t.Errorf("pids = %+v", st.Pids)
	}
	if st.Memory.LimitBytes != 256<<20 || st.Memory.UsageBytes == 0 || st.Memory.AvailableBytes == 0 {
		t.Errorf("memory = %+v", st.Memory)
	}
	if st.CPU.UsageNanos == 0 {
		t.Errorf("cpu = %+v", st.CPU)
	}

	if err := Update(path, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(512 << 20))}}); err != nil {
		t.Fatal(err)
	}
	if st, err := Stats(path); err != nil || st.Memory.LimitBytes != 512<<20 {
		t.Errorf("limit after Update = %+v, %v", st.Memory, err)
	}
	w.stop()
}

// A limit the kernel refuses must not leave a half-made cgroup behind.
func TestV1HostCreateRollsBack(t *testing.T) {
	m := hostV1(t)
	parent := uniqueParent(t)
	t.Cleanup(func() {
		if err := remove(m, parent); err != nil {
			t.Errorf("cleanup parent: %v", err)
		}
	})
	_, err := Create(parent, "pod", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "4096"}})
	if err == nil {
		t.Fatal("Create with an impossible cpuset succeeded")
	}
	if ok, err := m.exists(parent + "/pod"); ok || err != nil {
		t.Fatalf("cgroup left behind after a failed Create (%v)", err)
	}
}
