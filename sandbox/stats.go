package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/log"
	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/fsusage"
	"github.com/warmpod/warmpod/sandbox/cgroup"
)

// Usage is one sample of a cgroup's resource usage. The counters in
// Metrics are cumulative and cover the cgroup's whole subtree.
type Usage struct {
	Timestamp time.Time
	cgroup.Metrics
	// NanoCores is the average CPU use, in billionths of a core, since an
	// earlier sample of the same cgroup; nil for a cgroup's first sample.
	NanoCores *uint64
	// Processes counts processes; Metrics.Pids counts tasks (threads).
	Processes uint64
	// Detail is filled by detailed samples only (see Stats).
	Detail *UsageDetail
}

// UsageDetail is what a detailed sample adds: figures that cost more to
// read, which metrics report and the stats RPCs do not.
type UsageDetail struct {
	Memory MemoryDetail
	// FileDescriptors and Sockets count the open files and sockets of the
	// cgroup's processes.
	FileDescriptors, Sockets uint64
}

// MemoryDetail holds the memory counters beyond cgroup.MemoryStats, with
// cAdvisor's meanings. A counter the kernel lacks in the host's cgroup mode
// is zero.
type MemoryDetail struct {
	// CacheBytes is page cache; MappedFileBytes the part mapped by processes.
	CacheBytes, MappedFileBytes uint64
	SwapBytes                   uint64
	KernelBytes                 uint64
	// MaxUsageBytes is the peak of usage; FailCount counts the times the
	// limit was hit.
	MaxUsageBytes, FailCount uint64
}

// LayerUsage is the space a container's writable layer takes, and the
// capacity of the filesystem holding it.
type LayerUsage struct {
	// Timestamp is when the layer was measured; it can be a few seconds
	// older than the sample, see Stats.
	Timestamp time.Time
	FsInfo
	UsedBytes, InodesUsed uint64
}

// FsInfo describes the filesystem holding a directory.
type FsInfo struct {
	Mountpoint string
	// Device is the mount's source ("/dev/sda1").
	Device                                 string
	CapacityBytes, InodesTotal, InodesFree uint64
}

// InterfaceStats are the counters of one network interface of a pod.
type InterfaceStats struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// NetworkUsage is a sample of a pod's interfaces, the default one (eth0)
// first.
type NetworkUsage struct {
	Timestamp  time.Time
	Interfaces []InterfaceStats
}

// ContainerStats is a sample of one container.
type ContainerStats struct {
	Container ContainerInfo
	// Usage is nil when the container has no cgroup (any more).
	Usage *Usage
	// WritableLayer is nil when the container has no writable layer.
	WritableLayer *LayerUsage
}

// PodStats is a sample of one pod and its containers.
type PodStats struct {
	Pod PodInfo
	// Usage covers the pod cgroup, its containers included; nil once the
	// pod is stopped.
	Usage *Usage
	// Network is nil for stopped and host-network pods.
	Network    *NetworkUsage
	Containers []ContainerStats
}

// statsSource is the seam between sampling and the host: cgroup files,
// /proc, netlink and the filesystem.
type statsSource interface {
	cgroupStats(path string) (*cgroup.Metrics, error)
	memoryDetail(path string) (MemoryDetail, error)
	procs(path string) ([]int, error)
	// openFiles counts the open files of pid, and how many are sockets.
	openFiles(pid int) (files, sockets uint64, err error)
	// links reads the interfaces, loopback excepted, of the network
	// namespace pinned at nsPath.
	links(nsPath string) ([]InterfaceStats, error)
	// diskUsage measures the tree at dir like du: allocated bytes, inodes.
	diskUsage(dir string) (bytes, inodes uint64, err error)
	fsInfo(dir string) (FsInfo, error)
}

const (
	// layerTTL is how long a writable layer's measurement is served before
	// it is taken again. Walking a layer can take long, so a stale value
	// is served while a fresh one is taken in the background.
	layerTTL = 5 * time.Second
	// rateWindow is the shortest interval a CPU rate is measured over:
	// closer samples are compared with an older one instead.
	rateWindow = time.Second
	// pruneEvery is how often samples of objects that are gone are dropped.
	pruneEvery = time.Minute
)

// Stats samples the resource usage of the Manager's pods and containers.
// It remembers each cgroup's last CPU sample, to report a rate, and each
// writable layer's last measurement (see layerTTL). A detailed sample also
// reads per-process files and more cgroup files, for metrics.
type Stats struct {
	m   *Manager
	src statsSource
	now func() time.Time
	// log is for background measurements; a request's samples log through
	// the request's logger.
	log *log.Entry

	mu        sync.Mutex
	cpu       map[string]cpuSample
	layers    map[string]*layerEntry
	lastPrune time.Time
}

type cpuSample struct {
	path  string
	usage uint64
	at    time.Time
}

type layerEntry struct {
	dir        string
	usage      *LayerUsage
	refreshing bool
}

// NewStats returns a Stats for m's pods and containers.
func NewStats(m *Manager) *Stats {
	return newStats(m, hostStats{})
}

func newStats(m *Manager, src statsSource) *Stats {
	return &Stats{
		m:      m,
		src:    src,
		now:    time.Now,
		log:    m.log,
		cpu:    make(map[string]cpuSample),
		layers: make(map[string]*layerEntry),
	}
}

// Container samples one container; ctx's logger gets what goes wrong.
func (s *Stats) Container(ctx context.Context, info ContainerInfo, detail bool) ContainerStats {
	s.prune()
	cs := ContainerStats{Container: info}
	rec := &info.Status
	if rec.CgroupPath != "" {
		cs.Usage = s.usage(log.G(ctx), "container/"+info.ID, rec.CgroupPath, detail)
	}
	if rec.UpperDir != "" {
		cs.WritableLayer = s.layer(log.G(ctx), info.ID, rec.UpperDir)
	}
	return cs
}

// Pod samples one pod and its containers; ctx's logger gets what goes wrong.
func (s *Stats) Pod(ctx context.Context, info PodInfo, detail bool) PodStats {
	ps := PodStats{Pod: info}
	if info.State == PodReady {
		if info.CgroupPath != "" {
			ps.Usage = s.usage(log.G(ctx), "pod/"+info.ID, info.CgroupPath, detail)
		}
		if info.NetNSPath != "" && !info.Config.HostNetwork() {
			at := s.now()
			links, err := s.src.links(info.NetNSPath)
			if err != nil {
				log.G(ctx).WithError(err).WithField("pod", info.ID).Debug("read pod network stats")
			} else {
				ps.Network = &NetworkUsage{Timestamp: at, Interfaces: defaultFirst(links)}
			}
		}
	}
	for _, c := range s.m.PodContainers(info.ID) {
		ps.Containers = append(ps.Containers, s.Container(ctx, c, detail))
	}
	return ps
}

// defaultFirst moves eth0, the interface a pod's address is on, to the front.
func defaultFirst(links []InterfaceStats) []InterfaceStats {
	for i, l := range links {
		if l.Name == "eth0" && i > 0 {
			out := append([]InterfaceStats{l}, links[:i]...)
			return append(out, links[i+1:]...)
		}
	}
	return links
}

// usage samples the cgroup at path; key names the pod or container it
// belongs to. A cgroup that is gone, or unreadable, gives nil: one object's
// failure must not fail a listing.
func (s *Stats) usage(l *log.Entry, key, path string, detail bool) *Usage {
	l = l.WithField("cgroup", path)
	m, err := s.src.cgroupStats(path)
	at := s.now()
	if err != nil {
		if !errors.Is(err, cgroup.ErrNotFound) {
			l.WithError(err).Debug("read cgroup stats")
		}
		return nil
	}
	u := &Usage{Timestamp: at, Metrics: *m}
	u.NanoCores = s.rate(key, path, m.CPU.UsageNanos, at)
	pids, err := s.src.procs(path)
	if err != nil {
		l.WithError(err).Debug("list cgroup processes")
	}
	u.Processes = uint64(len(pids))
	if !detail {
		return u
	}
	d := &UsageDetail{}
	if d.Memory, err = s.src.memoryDetail(path); err != nil {
		l.WithError(err).Debug("read cgroup memory detail")
	}
	for _, pid := range pids {
		// A process may exit between the listing and this; that is fine.
		files, sockets, err := s.src.openFiles(pid)
		if err == nil {
			d.FileDescriptors += files
			d.Sockets += sockets
		}
	}
	u.Detail = d
	return u
}

// rate returns the CPU use in nanocores between the stored sample of key
// and this one, and stores this one when the stored one is at least
// rateWindow old (so that close samples still measure a useful interval).
// A different cgroup path (an in-place restart moves a container to a new
// cgroup) or a counter that went back starts over.
func (s *Stats) rate(key, path string, usage uint64, at time.Time) *uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, ok := s.cpu[key]
	if !ok || prev.path != path || usage < prev.usage || !at.After(prev.at) {
		s.cpu[key] = cpuSample{path: path, usage: usage, at: at}
		return nil
	}
	elapsed := at.Sub(prev.at)
	nano := uint64(float64(usage-prev.usage) / elapsed.Seconds())
	if elapsed >= rateWindow {
		s.cpu[key] = cpuSample{path: path, usage: usage, at: at}
	}
	return &nano
}

// layer returns the usage of the writable layer at dir of container id:
// measured now the first time, afterwards the last measurement, refreshed
// in the background once older than layerTTL.
func (s *Stats) layer(l *log.Entry, id, dir string) *LayerUsage {
	s.mu.Lock()
	e, ok := s.layers[id]
	if !ok || e.dir != dir {
		// A new generation after an in-place restart has a new layer.
		e = &layerEntry{dir: dir}
		s.layers[id] = e
	}
	cached := e.usage
	stale := cached == nil || s.now().Sub(cached.Timestamp) >= layerTTL
	refresh := stale && !e.refreshing
	if refresh {
		e.refreshing = true
	}
	s.mu.Unlock()

	switch {
	case cached == nil && refresh:
		return s.measureLayer(l, e)
	case refresh:
		go s.measureLayer(s.log, e)
	}
	return cached
}

// measureLayer measures e's layer, stores and returns the result (nil when
// the layer cannot be read, which keeps the last good measurement).
func (s *Stats) measureLayer(l *log.Entry, e *layerEntry) *LayerUsage {
	at := s.now()
	bytes, inodes, err := s.src.diskUsage(e.dir)
	var fs FsInfo
	if err == nil {
		fs, err = s.src.fsInfo(e.dir)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e.refreshing = false
	if err != nil {
		l.WithError(err).WithField("dir", e.dir).Debug("measure writable layer")
		return e.usage
	}
	e.usage = &LayerUsage{Timestamp: at, FsInfo: fs, UsedBytes: bytes, InodesUsed: inodes}
	return e.usage
}

// prune drops the samples of pods and containers the Manager no longer
// knows, at most every pruneEvery.
func (s *Stats) prune() {
	s.mu.Lock()
	now := s.now()
	if now.Sub(s.lastPrune) < pruneEvery {
		s.mu.Unlock()
		return
	}
	s.lastPrune = now
	s.mu.Unlock()

	s.m.mu.RLock()
	live := make(map[string]bool, len(s.m.pods)+len(s.m.ctrs))
	for id := range s.m.pods {
		live["pod/"+id] = true
	}
	for id := range s.m.ctrs {
		live["container/"+id] = true
		live[id] = true
	}
	s.m.mu.RUnlock()

	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.cpu {
		if !live[k] {
			delete(s.cpu, k)
		}
	}
	for id := range s.layers {
		if !live[id] {
			delete(s.layers, id)
		}
	}
}

// hostStats reads the host's cgroup files, /proc, netlink and filesystems.
type hostStats struct{}

func (hostStats) cgroupStats(path string) (*cgroup.Metrics, error) { return cgroup.Stats(path) }

func (hostStats) procs(path string) ([]int, error) { return cgroup.Procs(path) }

// memoryDetail reads the memory files sandbox/cgroup's Metrics leaves out.
// Hybrid hosts keep the memory controller on v1.
func (hostStats) memoryDetail(path string) (MemoryDetail, error) {
	var d MemoryDetail
	if cgroups.Mode() == cgroups.Unified {
		dir := filepath.Join("/sys/fs/cgroup", path)
		st, err := readKeyed(filepath.Join(dir, "memory.stat"))
		if err != nil {
			return d, err
		}
		d.CacheBytes, d.MappedFileBytes = st["file"], st["file_mapped"]
		d.KernelBytes = st["kernel"]
		if _, ok := st["kernel"]; !ok { // before Linux 5.18
			d.KernelBytes = st["kernel_stack"] + st["pagetables"] + st["percpu"] + st["sock"] + st["slab"]
		}
		d.SwapBytes, _ = readUint(filepath.Join(dir, "memory.swap.current"))
		d.MaxUsageBytes, _ = readUint(filepath.Join(dir, "memory.peak"))
		if ev, err := readKeyed(filepath.Join(dir, "memory.events")); err == nil {
			d.FailCount = ev["max"]
		}
		return d, nil
	}
	dir := filepath.Join("/sys/fs/cgroup/memory", path)
	st, err := readKeyed(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return d, err
	}
	d.CacheBytes, d.MappedFileBytes, d.SwapBytes = st["total_cache"], st["total_mapped_file"], st["total_swap"]
	d.KernelBytes, _ = readUint(filepath.Join(dir, "memory.kmem.usage_in_bytes"))
	d.MaxUsageBytes, _ = readUint(filepath.Join(dir, "memory.max_usage_in_bytes"))
	d.FailCount, _ = readUint(filepath.Join(dir, "memory.failcnt"))
	return d, nil
}

// readKeyed reads a "key value" per line cgroup file.
func readKeyed(path string) (map[string]uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64)
	for line := range strings.Lines(string(data)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			out[k] = n
		}
	}
	return out, nil
}

// readUint reads a single-number cgroup file; "max" reads as 0.
func readUint(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

func (hostStats) openFiles(pid int) (files, sockets uint64, _ error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		files++
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(target, "socket:") {
			sockets++
		}
	}
	return files, sockets, nil
}

// links reads interface counters through a netlink socket opened in the
// pod's namespace, which moves no thread.
func (hostStats) links(nsPath string) ([]InterfaceStats, error) {
	ns, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", nsPath, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links in %s: %w", nsPath, err)
	}
	var out []InterfaceStats
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || a.Statistics == nil {
			continue
		}
		st := a.Statistics
		out = append(out, InterfaceStats{
			Name:    a.Name,
			RxBytes: st.RxBytes, RxPackets: st.RxPackets, RxErrors: st.RxErrors, RxDropped: st.RxDropped,
			TxBytes: st.TxBytes, TxPackets: st.TxPackets, TxErrors: st.TxErrors, TxDropped: st.TxDropped,
		})
	}
	return out, nil
}

// layerWalk bounds the measurement of a writable layer: a container may
// create millions of files, and walking them all every layerTTL would cost
// the daemon without end. Past the bound the layer's usage is what the
// walk counted, a lower bound (which then already holds a million inodes).
var layerWalk = fsusage.Limits{Entries: 1 << 20, Duration: 5 * time.Second}

// diskUsage measures dir like du, within layerWalk. Entries that vanish
// during the walk are skipped: the container is writing.
func (hostStats) diskUsage(dir string) (bytes, inodes uint64, _ error) {
	u, err := fsusage.Measure(dir, layerWalk)
	return u.Bytes, u.Inodes, err
}

// fsInfo finds the mount holding dir (the deepest mount above it) and its
// capacity.
func (hostStats) fsInfo(dir string) (FsInfo, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return FsInfo{}, &fs.PathError{Op: "statfs", Path: dir, Err: err}
	}
	info := FsInfo{
		Mountpoint:    dir,
		CapacityBytes: sfs.Blocks * uint64(sfs.Bsize),
		InodesTotal:   sfs.Files,
		InodesFree:    sfs.Ffree,
	}
	mounts, err := mountinfo.GetMounts(mountinfo.ParentsFilter(dir))
	if err != nil {
		return info, fmt.Errorf("read mount table: %w", err)
	}
	var best *mountinfo.Info
	for _, m := range mounts {
		if best == nil || len(m.Mountpoint) > len(best.Mountpoint) {
			best = m
		}
	}
	if best != nil {
		info.Mountpoint, info.Device = best.Mountpoint, best.Source
	}
	return info, nil
}
