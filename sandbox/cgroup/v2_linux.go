package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup2"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// v2Manager drives the unified hierarchy mounted at mountpoint.
type v2Manager struct {
	mountpoint string
}

func (m *v2Manager) load(path string) (*cgroup2.Manager, error) {
	return cgroup2.Load(path, cgroup2.WithMountpoint(m.mountpoint))
}

func (m *v2Manager) exists(path string) (bool, error) {
	_, err := os.Stat(filepath.Join(m.mountpoint, path))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}

func (m *v2Manager) create(path string, res *specs.LinuxResources) error {
	r, raw := toV2(res)
	mgr, err := cgroup2.NewManager(m.mountpoint, path, r)
	if err != nil {
		return err
	}
	if err := m.writeRaw(path, raw); err != nil {
		return err
	}
	// Usage files (memory.current, io.stat, pids.current) only exist where
	// the parent enabled the controller, and the pod cgroup must show them
	// even without limits. A controller that cannot be enabled only costs
	// its stats, so a failure here is not fatal; the limits asked for were
	// enabled, or refused, by NewManager above.
	if all, err := mgr.RootControllers(); err == nil {
		_ = mgr.ToggleControllers(all, cgroup2.Enable)
	}
	return nil
}

func (m *v2Manager) update(path string, res *specs.LinuxResources) error {
	mgr, err := m.load(path)
	if err != nil {
		return err
	}
	r, raw := toV2(res)
	if err := mgr.ToggleControllers(r.EnabledControllers(), cgroup2.Enable); err != nil {
		return err
	}
	if err := mgr.Update(r); err != nil {
		return err
	}
	return m.writeRaw(path, raw)
}

// rawFile is a cgroup file and the value to write to it.
type rawFile struct{ name, value string }

// writeRaw writes files into the cgroup at path, in order.
func (m *v2Manager) writeRaw(path string, files []rawFile) error {
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(m.mountpoint, path, f.name), []byte(f.value), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}

// toV2 converts OCI resources into the library's, and the files the library
// cannot express, to be written after it:
//   - A CPU quota without a period gets the kernel's default period: the
//     library's conversion would drop the quota.
//   - Unlimited swap (-1) becomes memory.swap.max "max": the library
//     subtracts the memory limit from the OCI memory+swap value, which for
//     -1 gives a number the kernel refuses.
//   - The library has no unified files; they are written last, so that
//     they win over the translated values, as libcontainer does for
//     containers.
func toV2(res *specs.LinuxResources) (*cgroup2.Resources, []rawFile) {
	if res.CPU != nil && res.CPU.Quota != nil && res.CPU.Period == nil {
		cpu := *res.CPU
		period := uint64(100000)
		cpu.Period = &period
		withPeriod := *res
		withPeriod.CPU = &cpu
		res = &withPeriod
	}
	var raw []rawFile
	if m := res.Memory; m != nil && m.Swap != nil && *m.Swap == -1 {
		mem := *m
		mem.Swap = nil
		noSwap := *res
		noSwap.Memory = &mem
		res = &noSwap
		raw = append(raw, rawFile{"memory.swap.max", "max"})
	}
	for _, k := range slices.Sorted(maps.Keys(res.Unified)) {
		raw = append(raw, rawFile{k, res.Unified[k]})
	}
	return cgroup2.ToResources(res), raw
}

func (m *v2Manager) delete(path string) error {
	mgr, err := m.load(path)
	if err != nil {
		return err
	}
	return mgr.Delete()
}

func (m *v2Manager) procs(path string) ([]int, error) {
	mgr, err := m.load(path)
	if err != nil {
		return nil, err
	}
	pids, err := mgr.Procs(true)
	if err != nil {
		return nil, err
	}
	return dedupe(pids), nil
}

// killAll writes cgroup.kill (Linux 5.14), which kills the whole subtree at
// once; older kernels get the freeze, kill and thaw that runc does.
func (m *v2Manager) killAll(path string) error {
	dir := filepath.Join(m.mountpoint, path)
	err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	thaw := freezeV2(dir)
	defer thaw()
	pids, err := m.procs(path)
	if err != nil {
		return err
	}
	signalAll(pids)
	return nil
}

// freezeV2 freezes the cgroup at dir (and so its subtree), waiting at most
// freezeTimeout for it, and returns the function that thaws it.
func freezeV2(dir string) func() {
	if err := os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("1"), 0); err != nil {
		return func() {}
	}
	waitFor(freezeTimeout, func() bool {
		data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		return err != nil || strings.Contains(string(data), "frozen 1")
	})
	return func() { _ = os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("0"), 0) }
}

func (m *v2Manager) addProc(path string, pid int) error {
	mgr, err := m.load(path)
	if err != nil {
		return err
	}
	return mgr.AddProc(uint64(pid))
}

func (m *v2Manager) stats(path string) (*Metrics, error) {
	mgr, err := m.load(path)
	if err != nil {
		return nil, err
	}
	metrics, err := mgr.Stat()
	if err != nil {
		return nil, err
	}
	return fromV2(metrics), nil
}

func fromV2(in *v2stats.Metrics) *Metrics {
	var s Metrics
	if c := in.GetCPU(); c != nil {
		s.CPU = CPUStats{
			UsageNanos:       c.GetUsageUsec() * 1000,
			UserNanos:        c.GetUserUsec() * 1000,
			SystemNanos:      c.GetSystemUsec() * 1000,
			Periods:          c.GetNrPeriods(),
			ThrottledPeriods: c.GetNrThrottled(),
			ThrottledNanos:   c.GetThrottledUsec() * 1000,
		}
	}
	if mem := in.GetMemory(); mem != nil {
		// v2 memory.stat is hierarchical already.
		s.Memory.UsageBytes = mem.GetUsage()
		s.Memory.RSSBytes = mem.GetAnon()
		s.Memory.PageFaults = mem.GetPgfault()
		s.Memory.MajorPageFaults = mem.GetPgmajfault()
		memoryFromUsage(&s.Memory, mem.GetInactiveFile(), mem.GetUsageLimit())
	}
	if ev := in.GetMemoryEvents(); ev != nil {
		s.Memory.OOMEvents = ev.GetOom()
		s.Memory.OOMKills = ev.GetOomKill()
	}
	if p := in.GetPids(); p != nil {
		s.Pids.Current = p.GetCurrent()
		if !unlimited(p.GetLimit()) {
			s.Pids.Limit = p.GetLimit()
		}
	}
	for _, e := range in.GetIo().GetUsage() {
		s.IO.ReadBytes += e.GetRbytes()
		s.IO.WriteBytes += e.GetWbytes()
	}
	return &s
}
