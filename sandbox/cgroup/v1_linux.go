package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/moby/sys/userns"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// v1Manager drives the v1 hierarchies mounted under root (one directory
// per controller, as /sys/fs/cgroup/memory). procRoot is where blkio stats
// look up block device names.
type v1Manager struct {
	root, procRoot string
	// mountedOnly keeps only the controllers with a cgroup hierarchy
	// mounted at their directory. Under a systemd that runs in a cgroup
	// namespace, the directories of controllers it could not mount (a new
	// hierarchy can only be made in the initial cgroup namespace) are left
	// empty on a read-only tmpfs; runc, which finds hierarchies by their
	// mounts, does not use them either.
	mountedOnly bool
}

// pather is what every cgroup1 controller implements to place a cgroup
// path in its own hierarchy.
type pather interface {
	cgroup1.Subsystem
	Path(path string) string
}

// subsystems lists the controllers mounted under root. It is the library's
// default set, built here so that root can be a test tree and so memory
// tolerates hosts without swap accounting.
func (m *v1Manager) subsystems() ([]cgroup1.Subsystem, error) {
	all := []pather{
		cgroup1.NewNamed(m.root, "systemd"),
		cgroup1.NewFreezer(m.root),
		cgroup1.NewPids(m.root),
		cgroup1.NewNetCls(m.root),
		cgroup1.NewNetPrio(m.root),
		cgroup1.NewPerfEvent(m.root),
		cgroup1.NewCpuset(m.root),
		cgroup1.NewCpu(m.root),
		cgroup1.NewCpuacct(m.root),
		cgroup1.NewMemory(m.root, cgroup1.OptionalSwap()),
		cgroup1.NewBlkio(m.root, cgroup1.ProcRoot(m.procRoot)),
		cgroup1.NewRdma(m.root),
	}
	// A user namespace may not change device rules.
	if !userns.RunningInUserNS() {
		all = append(all, cgroup1.NewDevices(m.root))
	}
	if h, err := cgroup1.NewHugetlb(m.root); err == nil {
		all = append(all, h)
	}
	var mounted []cgroup1.Subsystem
	for _, s := range all {
		if _, err := os.Lstat(s.Path("/")); err != nil {
			continue
		}
		if m.mountedOnly {
			var st unix.Statfs_t
			if err := unix.Statfs(s.Path("/"), &st); err != nil || st.Type != unix.CGROUP_SUPER_MAGIC {
				continue
			}
		}
		mounted = append(mounted, s)
	}
	if len(mounted) == 0 {
		return nil, fmt.Errorf("no cgroup v1 controller mounted under %s", m.root)
	}
	return mounted, nil
}

func (m *v1Manager) opts() cgroup1.InitOpts {
	return cgroup1.WithHierarchy(m.subsystems)
}

func (m *v1Manager) load(path string) (cgroup1.Cgroup, error) {
	cg, err := cgroup1.Load(cgroup1.StaticPath(path), m.opts())
	if errors.Is(err, cgroup1.ErrCgroupDeleted) {
		return nil, ErrNotFound
	}
	return cg, err
}

func (m *v1Manager) exists(path string) (bool, error) {
	subs, err := m.subsystems()
	if err != nil {
		return false, err
	}
	for _, s := range subs {
		if _, err := os.Lstat(s.(pather).Path(path)); err == nil {
			return true, nil
		}
	}
	return false, nil
}

func (m *v1Manager) create(path string, res *specs.LinuxResources) error {
	_, err := cgroup1.New(cgroup1.StaticPath(path), res, m.opts())
	return err
}

func (m *v1Manager) update(path string, res *specs.LinuxResources) error {
	cg, err := m.load(path)
	if err != nil {
		return err
	}
	return cg.Update(res)
}

func (m *v1Manager) delete(path string) error {
	cg, err := m.load(path)
	if errors.Is(err, ErrNotFound) {
		return m.deleteUnified(path)
	}
	if err != nil {
		return err
	}
	if err := cg.Delete(); err != nil {
		return err
	}
	return m.deleteUnified(path)
}

// deleteUnified removes the pod's directories in the v2 hierarchy that a
// hybrid host mounts beside the v1 controllers: libcontainer creates each
// container's cgroup there too, and the pod's directory with it.
func (m *v1Manager) deleteUnified(path string) error {
	dir := filepath.Join(m.root, "unified", path)
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	// Children first.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", dirs[i], err)
		}
	}
	return nil
}

// procs reads one hierarchy: on v1 a process could in theory sit in
// different cgroups per controller, but every writer here (libcontainer and
// AddProc) places it in all of them. pids is preferred as it is the one
// controller every container runtime enables.
func (m *v1Manager) procs(path string) ([]int, error) {
	cg, err := m.load(path)
	if err != nil {
		return nil, err
	}
	subs := cg.Subsystems()
	name := subs[0].Name()
	for _, s := range subs {
		if s.Name() == cgroup1.Pids {
			name = cgroup1.Pids
		}
	}
	ps, err := cg.Processes(name, true)
	if err != nil {
		return nil, err
	}
	pids := make([]int, len(ps))
	for i, p := range ps {
		pids[i] = p.Pid
	}
	return dedupe(pids), nil
}

// killAll freezes the subtree (freezing a v1 cgroup freezes every cgroup
// below it), kills every process in it and thaws it, so that the signals
// take effect. Without a freezer controller the processes are killed as
// they are; Kill repeats the round for any forked meanwhile.
func (m *v1Manager) killAll(path string) error {
	thaw := freezeV1(filepath.Join(m.root, string(cgroup1.Freezer), path, "freezer.state"))
	defer thaw()
	pids, err := m.procs(path)
	if err != nil {
		return err
	}
	signalAll(pids)
	return nil
}

// freezeV1 freezes the cgroup whose freezer.state file is state, waiting
// at most freezeTimeout for it, and returns the function that thaws it.
func freezeV1(state string) func() {
	if err := os.WriteFile(state, []byte("FROZEN"), 0); err != nil {
		return func() {}
	}
	waitFor(freezeTimeout, func() bool {
		data, err := os.ReadFile(state)
		return err != nil || strings.TrimSpace(string(data)) == "FROZEN"
	})
	return func() { _ = os.WriteFile(state, []byte("THAWED"), 0) }
}

func (m *v1Manager) addProc(path string, pid int) error {
	cg, err := m.load(path)
	if err != nil {
		return err
	}
	if err := cg.AddProc(uint64(pid)); err != nil {
		return err
	}
	return m.addProcUnified(path, pid)
}

// addProcUnified moves pid in the v2 hierarchy a hybrid host mounts beside
// the v1 controllers, where systemd tracks which unit a process belongs to
// (libcontainer places containers there too).
func (m *v1Manager) addProcUnified(path string, pid int) error {
	root := filepath.Join(m.root, "unified")
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil
	}
	dir := filepath.Join(root, path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

func (m *v1Manager) stats(path string) (*Metrics, error) {
	cg, err := m.load(path)
	if err != nil {
		return nil, err
	}
	// A controller file the kernel lacks (no swap or kmem accounting, no
	// CFQ/BFQ) only leaves its counters at zero.
	metrics, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return nil, err
	}
	out := fromV1(metrics)
	if r, w, ok := m.blkioRecursive(path); ok {
		out.IO = IOStats{ReadBytes: r, WriteBytes: w}
	}
	return out, nil
}

// blkioRecursive sums blkio.throttle.io_service_bytes_recursive. Without
// CFQ/BFQ the library falls back to the non-recursive throttle file, which
// for a pod cgroup misses all I/O done by its containers (they live in child
// cgroups); this file counts them and exists with any I/O scheduler.
func (m *v1Manager) blkioRecursive(path string) (read, write uint64, ok bool) {
	raw, err := os.ReadFile(filepath.Join(m.root, string(cgroup1.Blkio), path, "blkio.throttle.io_service_bytes_recursive"))
	if err != nil {
		return 0, 0, false
	}
	for line := range strings.Lines(string(raw)) {
		// "MAJ:MIN Op Bytes", closed by a "Total N" line.
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		v, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return 0, 0, false
		}
		switch f[1] {
		case "Read":
			read += v
		case "Write":
			write += v
		}
	}
	return read, write, true
}

func fromV1(in *v1stats.Metrics) *Metrics {
	var s Metrics
	if c := in.GetCPU(); c != nil {
		if u := c.GetUsage(); u != nil {
			s.CPU.UsageNanos, s.CPU.UserNanos, s.CPU.SystemNanos = u.GetTotal(), u.GetUser(), u.GetKernel()
		}
		if t := c.GetThrottling(); t != nil {
			s.CPU.Periods, s.CPU.ThrottledPeriods, s.CPU.ThrottledNanos = t.GetPeriods(), t.GetThrottledPeriods(), t.GetThrottledTime()
		}
	}
	if mem := in.GetMemory(); mem != nil {
		// The total_* counters include the cgroups below (the containers).
		s.Memory.UsageBytes = mem.GetUsage().GetUsage()
		s.Memory.RSSBytes = mem.GetTotalRSS()
		s.Memory.PageFaults = mem.GetTotalPgFault()
		s.Memory.MajorPageFaults = mem.GetTotalPgMajFault()
		memoryFromUsage(&s.Memory, mem.GetTotalInactiveFile(), mem.GetUsage().GetLimit())
	}
	if oom := in.GetMemoryOomControl(); oom != nil {
		s.Memory.OOMKills = oom.GetOomKill()
	}
	if p := in.GetPids(); p != nil {
		s.Pids.Current = p.GetCurrent()
		if !unlimited(p.GetLimit()) {
			s.Pids.Limit = p.GetLimit()
		}
	}
	if b := in.GetBlkio(); b != nil {
		for _, e := range b.GetIoServiceBytesRecursive() {
			switch e.GetOp() {
			case "Read":
				s.IO.ReadBytes += e.GetValue()
			case "Write":
				s.IO.WriteBytes += e.GetValue()
			}
		}
	}
	return &s
}
