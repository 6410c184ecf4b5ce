// Package cgroup owns a pod's own cgroup (the parent of its containers'
// cgroups) and reads cgroup statistics for pods and containers.
//
// libcontainer creates, limits and deletes each container's cgroup below the
// pod cgroup; this package only creates, updates and deletes the pod cgroup
// itself. Both cgroup v1 (legacy, and hybrid, whose controllers are all on
// v1) and v2 (unified) are supported; the host's mode is detected once.
//
// Two drivers name and create pod cgroups, as the kubelet's do (SetDriver).
// With cgroupfs a pod cgroup is a path relative to the hierarchy root, such
// as "/kubepods/burstable/pod<uid>/<sandbox id>", created in the cgroup
// filesystem. With systemd it is a slice, such as
// "kubepods-burstable-pod<uid>-<sandbox id>.slice", created, limited and
// removed through systemd's D-Bus API; its usage is read from the cgroup
// filesystem where systemd put it. Every function takes either form, so a
// pod made under one driver is still handled after a restart with the
// other.
//
// None of these calls belong on a pod reset's hot path. On cgroup v1 in
// particular, moving a process into a cgroup (AddProc) right after a quiet
// period can block for 10-40 ms waiting for an RCU grace period, and Stats
// reads a dozen files.
package cgroup

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// DefaultParent is the parent of pod cgroups when the caller names none.
const DefaultParent = "/warmpod"

// Errors callers check with errors.Is; each has its errdefs class.
var (
	// ErrInvalid wraps errors caused by a bad path or name (errdefs.ErrInvalidArgument).
	ErrInvalid = errdefs.ErrInvalidArgument.WithMessage("invalid cgroup path")
	// ErrNotFound means the cgroup does not exist (errdefs.ErrNotFound).
	ErrNotFound = errdefs.ErrNotFound.WithMessage("cgroup not found")
	// ErrNotEmpty means Delete found processes in the cgroup or below it (errdefs.ErrFailedPrecondition).
	ErrNotEmpty = errdefs.ErrFailedPrecondition.WithMessage("cgroup still has processes")
)

// Metrics is a snapshot of a cgroup's usage, covering its whole subtree.
// A counter the kernel does not provide in the host's cgroup mode is zero.
// (The type is not called Stats because that is the function reading it.)
type Metrics struct {
	CPU    CPUStats
	Memory MemoryStats
	Pids   PidsStats
	IO     IOStats
}

// CPUStats is cumulative CPU time, in nanoseconds of one core.
type CPUStats struct {
	UsageNanos, UserNanos, SystemNanos uint64
	// CFS bandwidth throttling, when a quota is set.
	Periods, ThrottledPeriods, ThrottledNanos uint64
}

// MemoryStats follows the kubelet's definitions.
type MemoryStats struct {
	UsageBytes uint64
	// WorkingSetBytes is usage minus inactive file pages: memory that
	// cannot be reclaimed without swapping. The kubelet evicts on it.
	WorkingSetBytes uint64
	// RSSBytes is anonymous memory (v1 total_rss, v2 anon).
	RSSBytes                    uint64
	PageFaults, MajorPageFaults uint64
	// LimitBytes is 0 when there is no limit.
	LimitBytes uint64
	// AvailableBytes is LimitBytes - WorkingSetBytes; 0 without a limit.
	AvailableBytes uint64
	// OOMEvents counts times the limit was hit and the OOM killer ran
	// (v2 only); OOMKills counts processes it killed.
	OOMEvents, OOMKills uint64
}

// PidsStats counts tasks. Limit is 0 when there is no limit.
type PidsStats struct {
	Current, Limit uint64
}

// IOStats is bytes read and written on block devices.
type IOStats struct {
	ReadBytes, WriteBytes uint64
}

// podPath joins parent and name after checking both.
func podPath(parent, name string) (string, error) {
	if parent == "" {
		parent = DefaultParent
	}
	if isSlice(parent) {
		return "", fmt.Errorf("%w: parent %q is a systemd slice; the cgroup driver is cgroupfs, configure the kubelet with --cgroup-driver=cgroupfs", ErrInvalid, parent)
	}
	if err := checkPath(parent); err != nil {
		return "", fmt.Errorf("parent: %w", err)
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 255 {
		return "", fmt.Errorf("%w: name %q must be a single path element", ErrInvalid, name)
	}
	return filepath.Join(parent, name), nil
}

// checkPath accepts clean absolute cgroup paths other than the root.
func checkPath(p string) error {
	if p == "" || p[0] != '/' || filepath.Clean(p) != p || strings.ContainsRune(p, 0) {
		return fmt.Errorf("%w: %q must be a clean absolute cgroup path", ErrInvalid, p)
	}
	if p == "/" {
		return fmt.Errorf("%w: the root cgroup is not a pod cgroup", ErrInvalid)
	}
	return nil
}

// unlimited reports whether a limit read from the kernel means "none": v2
// writes "max" (read as MaxUint64, or 0 by some readers) and v1 reports the
// largest page-aligned int64.
func unlimited(v uint64) bool {
	return v == 0 || v >= 1<<62
}

// memoryFromUsage fills the derived memory fields the same way for v1 and v2.
func memoryFromUsage(m *MemoryStats, inactiveFile, limit uint64) {
	m.WorkingSetBytes = m.UsageBytes - min(m.UsageBytes, inactiveFile)
	if !unlimited(limit) {
		m.LimitBytes = limit
		m.AvailableBytes = limit - min(limit, m.WorkingSetBytes)
	}
}
