package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/warmpod/warmpod/runtime/shim"
	"github.com/warmpod/warmpod/sandbox/cgroup"
)

// fakeSource answers from maps and counts layer measurements. Paths with
// no entry are missing (cgroup.ErrNotFound, os.ErrNotExist).
type fakeSource struct {
	mu       sync.Mutex
	cgroups  map[string]*cgroup.Metrics
	pids     map[string][]int
	files    map[int][2]uint64
	memory   MemoryDetail
	ifaces   map[string][]InterfaceStats
	layers   map[string][2]uint64
	measured map[string]int
	// block, when set, holds diskUsage until it is closed.
	block chan struct{}
}

func newFakeSource() *fakeSource {
	return &fakeSource{
		cgroups: map[string]*cgroup.Metrics{}, pids: map[string][]int{}, files: map[int][2]uint64{},
		ifaces: map[string][]InterfaceStats{}, layers: map[string][2]uint64{}, measured: map[string]int{},
	}
}

func (f *fakeSource) cgroupStats(path string) (*cgroup.Metrics, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.cgroups[path]
	if !ok {
		return nil, fmt.Errorf("read stats of cgroup %s: %w", path, cgroup.ErrNotFound)
	}
	c := *m
	return &c, nil
}

func (f *fakeSource) memoryDetail(string) (MemoryDetail, error) { return f.memory, nil }

func (f *fakeSource) procs(path string) ([]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pids[path], nil
}

func (f *fakeSource) openFiles(pid int) (uint64, uint64, error) {
	v, ok := f.files[pid]
	if !ok {
		return 0, 0, os.ErrNotExist
	}
	return v[0], v[1], nil
}

func (f *fakeSource) links(nsPath string) ([]InterfaceStats, error) {
	l, ok := f.ifaces[nsPath]
	if !ok {
		return nil, os.ErrNotExist
	}
	return l, nil
}

func (f *fakeSource) diskUsage(dir string) (uint64, uint64, error) {
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.measured[dir]++
	v, ok := f.layers[dir]
	if !ok {
		return 0, 0, os.ErrNotExist
	}
	return v[0], v[1], nil
}

func (f *fakeSource) fsInfo(dir string) (FsInfo, error) {
	return FsInfo{Mountpoint: "/var", Device: "/dev/vdb", CapacityBytes: 1 << 30, InodesTotal: 1000, InodesFree: 900}, nil
}

// fakeClock is a settable time.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func statsFixture(t *testing.T) (*Stats, *fakeSource, *fakeClock) {
	t.Helper()
	m := testManager()
	src := newFakeSource()
	s := newStats(m, src)
	clock := &fakeClock{now: time.Unix(1000, 0)}
	s.now = clock.Now
	return s, src, clock
}

func TestRate(t *testing.T) {
	type sample struct {
		path  string
		usage uint64
		after time.Duration
	}
	tests := []struct {
		name    string
		samples []sample
		want    []int64 // -1: no rate
	}{
		{"first sample has none", []sample{{"/a", 100, 0}}, []int64{-1}},
		{"half a core", []sample{{"/a", 0, 0}, {"/a", 1e9, 2 * time.Second}}, []int64{-1, 5e8}},
		{"close samples measure from the older one", []sample{
			{"/a", 0, 0}, {"/a", 5e8, 500 * time.Millisecond}, {"/a", 1.5e9, 500 * time.Millisecond},
		}, []int64{-1, 1e9, 1.5e9}},
		{"new cgroup starts over", []sample{{"/a", 5e9, 0}, {"/b", 1e9, time.Second}, {"/b", 2e9, time.Second}}, []int64{-1, -1, 1e9}},
		{"counter going back starts over", []sample{{"/a", 5e9, 0}, {"/a", 1e9, time.Second}}, []int64{-1, -1}},
		{"same instant", []sample{{"/a", 0, 0}, {"/a", 1e9, 0}}, []int64{-1, -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, clock := statsFixture(t)
			for i, smp := range tt.samples {
				clock.Advance(smp.after)
				got := s.rate("container/c", smp.path, smp.usage, clock.Now())
				switch {
				case tt.want[i] < 0 && got != nil:
					t.Errorf("sample %d: rate %d, want none", i, *got)
				case tt.want[i] >= 0 && got == nil:
					t.Errorf("sample %d: no rate, want %d", i, tt.want[i])
				case tt.want[i] >= 0 && int64(*got) != tt.want[i]:
					t.Errorf("sample %d: rate %d, want %d", i, *got, tt.want[i])
				}
			}
		})
	}
}

func runningInfo(id, cg, upper string) ContainerInfo {
	return ContainerInfo{ID: id, PodID: "pod1", Status: shim.Record{ID: id, State: shim.StateRunning, CgroupPath: cg, UpperDir: upper}}
}

func TestContainerStats(t *testing.T) {
	s, src, _ := statsFixture(t)
	src.cgroups["/pod/c1"] = &cgroup.Metrics{CPU: cgroup.CPUStats{UsageNanos: 42}, Memory: cgroup.MemoryStats{UsageBytes: 7}}
	src.pids["/pod/c1"] = []int{10, 11, 12}
	src.files[10] = [2]uint64{5, 1}
	src.files[11] = [2]uint64{3, 0}
	src.memory = MemoryDetail{CacheBytes: 9}
	src.layers["/upper/c1"] = [2]uint64{4096, 2}

	cs := s.Container(context.Background(), runningInfo("c1", "/pod/c1", "/upper/c1"), false)
	if cs.Usage == nil || cs.Usage.CPU.UsageNanos != 42 || cs.Usage.Memory.UsageBytes != 7 || cs.Usage.Processes != 3 {
		t.Fatalf("usage = %+v", cs.Usage)
	}
	if cs.Usage.Detail != nil {
		t.Error("a plain sample has detail")
	}
	if l := cs.WritableLayer; l == nil || l.UsedBytes != 4096 || l.InodesUsed != 2 || l.Mountpoint != "/var" {
		t.Errorf("writable layer = %+v", l)
	}

	d := s.Container(context.Background(), runningInfo("c1", "/pod/c1", "/upper/c1"), true).Usage.Detail
	// Process 12 exited meanwhile: it is left out, not an error.
	if d == nil || d.FileDescriptors != 8 || d.Sockets != 1 || d.Memory.CacheBytes != 9 {
		t.Errorf("detail = %+v", d)
	}
}

func TestContainerStatsWithoutCgroupOrLayer(t *testing.T) {
	s, _, _ := statsFixture(t)
	tests := []struct {
		name string
		info ContainerInfo
	}{
		{"cgroup gone", runningInfo("c1", "/gone", "")},
		{"never had one", runningInfo("c1", "", "")},
		{"layer unreadable", runningInfo("c1", "", "/gone")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := s.Container(context.Background(), tt.info, true)
			if cs.Usage != nil || cs.WritableLayer != nil {
				t.Errorf("stats = %+v, want neither usage nor layer", cs)
			}
			if cs.Container.ID != "c1" {
				t.Errorf("container = %+v", cs.Container)
			}
		})
	}
}

func TestLayerCache(t *testing.T) {
	s, src, clock := statsFixture(t)
	src.layers["/upper/c1"] = [2]uint64{100, 1}
	info := runningInfo("c1", "", "/upper/c1")

	if got := s.Container(context.Background(), info, false).WritableLayer.UsedBytes; got != 100 {
		t.Fatalf("first sample = %d, want 100", got)
	}
	src.layers["/upper/c1"] = [2]uint64{200, 1}
	clock.Advance(layerTTL / 2)
	if got := s.Container(context.Background(), info, false).WritableLayer.UsedBytes; got != 100 {
		t.Errorf("fresh cached sample = %d, want 100", got)
	}
	if n := src.measured["/upper/c1"]; n != 1 {
		t.Errorf("measured %d times within the TTL, want 1", n)
	}

	// Past the TTL the stale value is served while a new one is taken.
	src.block = make(chan struct{})
	clock.Advance(layerTTL)
	if got := s.Container(context.Background(), info, false).WritableLayer.UsedBytes; got != 100 {
		t.Errorf("stale sample = %d, want 100 while refreshing", got)
	}
	// A second caller does not start a second measurement.
	_ = s.Container(context.Background(), info, false)
	close(src.block)
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.layers["c1"].refreshing
	})
	if got := s.Container(context.Background(), info, false).WritableLayer.UsedBytes; got != 200 {
		t.Errorf("refreshed sample = %d, want 200", got)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if n := src.measured["/upper/c1"]; n != 2 {
		t.Errorf("measured %d times, want 2", n)
	}
}

func TestLayerOfNewGeneration(t *testing.T) {
	s, src, _ := statsFixture(t)
	src.layers["/upper/gen1"] = [2]uint64{100, 1}
	src.layers["/upper/gen2"] = [2]uint64{8, 1}
	_ = s.Container(context.Background(), runningInfo("c1", "", "/upper/gen1"), false)
	// An in-place restart gives the container a new layer: measured now.
	if got := s.Container(context.Background(), runningInfo("c1", "", "/upper/gen2"), false).WritableLayer.UsedBytes; got != 8 {
		t.Errorf("layer of the new generation = %d, want 8", got)
	}
}

// waitFor blocks until cond holds; the test's own deadline bounds it.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}

func TestPodStats(t *testing.T) {
	s, src, _ := statsFixture(t)
	s.m.ctrs["c1"] = &container{meta: containerMeta{ID: "c1", PodID: "pod1"}, status: containerStatus{Record: shim.Record{CgroupPath: "/pod/c1"}}}
	s.m.ctrs["other"] = &container{meta: containerMeta{ID: "other", PodID: "pod2"}}
	src.cgroups["/pod"] = &cgroup.Metrics{Pids: cgroup.PidsStats{Current: 4}}
	src.cgroups["/pod/c1"] = &cgroup.Metrics{}
	src.pids["/pod"] = []int{1, 2}
	src.ifaces["/ns/net"] = []InterfaceStats{{Name: "dummy0", RxBytes: 1}, {Name: "eth0", RxBytes: 2}}

	info := PodInfo{ID: "pod1", State: PodReady, CgroupPath: "/pod", NetNSPath: "/ns/net"}
	ps := s.Pod(context.Background(), info, false)
	if ps.Usage == nil || ps.Usage.Processes != 2 || ps.Usage.Pids.Current != 4 {
		t.Errorf("usage = %+v", ps.Usage)
	}
	if ps.Network == nil || len(ps.Network.Interfaces) != 2 || ps.Network.Interfaces[0].Name != "eth0" {
		t.Errorf("network = %+v, want eth0 first", ps.Network)
	}
	if len(ps.Containers) != 1 || ps.Containers[0].Container.ID != "c1" || ps.Containers[0].Usage == nil {
		t.Errorf("containers = %+v", ps.Containers)
	}

	info.State = PodNotReady
	if ps := s.Pod(context.Background(), info, false); ps.Usage != nil || ps.Network != nil || len(ps.Containers) != 1 {
		t.Errorf("stopped pod = %+v, want containers only", ps)
	}
}

func TestPrune(t *testing.T) {
	s, src, clock := statsFixture(t)
	s.m.ctrs["kept"] = &container{meta: containerMeta{ID: "kept"}}
	src.cgroups["/a"] = &cgroup.Metrics{}
	src.layers["/upper"] = [2]uint64{1, 1}
	for _, id := range []string{"kept", "gone"} {
		_ = s.Container(context.Background(), runningInfo(id, "/a", "/upper"), false)
	}
	clock.Advance(pruneEvery)
	_ = s.Container(context.Background(), runningInfo("kept", "/a", "/upper"), false)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cpu["container/gone"]; ok {
		t.Error("CPU sample of a removed container kept")
	}
	if _, ok := s.layers["gone"]; ok {
		t.Error("layer of a removed container kept")
	}
	if _, ok := s.cpu["container/kept"]; !ok {
		t.Error("CPU sample of a live container dropped")
	}
}

func TestReadKeyed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memory.stat")
	if err := os.WriteFile(path, []byte("file 10\nanon 20\nbogus\nneg -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readKeyed(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["file"] != 10 || got["anon"] != 20 {
		t.Errorf("readKeyed = %v", got)
	}
	for content, want := range map[string]uint64{"max\n": 0, "123\n": 123} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if v, err := readUint(path); err != nil || v != want {
			t.Errorf("readUint(%q) = %d, %v; want %d", content, v, err, want)
		}
	}
}

func TestHostDiskUsage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte(strings.Repeat("x", 10000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a", filepath.Join(dir, "c")); err != nil {
		t.Fatal(err)
	}
	bytes, inodes, err := hostStats{}.diskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	// dir, a (= b), c.
	if inodes != 3 {
		t.Errorf("inodes = %d, want 3 (hard links count once)", inodes)
	}
	if bytes < 10000 {
		t.Errorf("bytes = %d, want at least the file's 10000", bytes)
	}
	if _, _, err := (hostStats{}).diskUsage(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("diskUsage of a missing dir = %v, want ErrNotExist", err)
	}
}

func TestHostFsInfo(t *testing.T) {
	info, err := hostStats{}.fsInfo(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if info.Mountpoint == "" || info.CapacityBytes == 0 {
		t.Errorf("fsInfo = %+v", info)
	}
}

func TestHostOpenFiles(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	files, sockets, err := hostStats{}.openFiles(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 || sockets == 0 || sockets > files {
		t.Errorf("openFiles = %d files, %d sockets; want some of each, sockets among the files", files, sockets)
	}
}

func TestHostMemoryDetail(t *testing.T) {
	path := ownMemoryCgroup(t)
	d, err := hostStats{}.memoryDetail(path)
	if err != nil {
		t.Fatal(err)
	}
	// This test binary has mapped and cached files.
	if d.CacheBytes == 0 && d.MaxUsageBytes == 0 {
		t.Errorf("memoryDetail(%s) = %+v, want some cache or a peak", path, d)
	}
}

// ownMemoryCgroup returns this process's cgroup on the memory controller
// (v1) or the unified hierarchy (v2).
func ownMemoryCgroup(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("no /proc/self/cgroup: %v", err)
	}
	var unified string
	for line := range strings.Lines(string(data)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				return parts[2]
			}
		}
		if parts[0] == "0" {
			unified = parts[2]
		}
	}
	if unified == "" {
		t.Skip("this process is in no memory cgroup")
	}
	return unified
}

func TestHostLinks(t *testing.T) {
	nsPath := podNetNS(t)
	ns, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// Both ends stay in the namespace, which takes them along when removed.
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"}); err != nil {
		t.Fatal(err)
	}
	links, err := hostStats{}.links(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Name)
	}
	slices.Sort(names)
	if strings.Join(names, ",") != "eth0,peer0" {
		t.Errorf("links = %v, want eth0 and peer0 (no loopback)", names)
	}
}
