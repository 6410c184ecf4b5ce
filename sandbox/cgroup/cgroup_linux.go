package cgroup

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/cgroups/v3"
	sdcgroups "github.com/opencontainers/cgroups/systemd"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// hostRoot is where the kernel's cgroup hierarchies are mounted.
const hostRoot = "/sys/fs/cgroup"

// manager is one cgroup mode on one root. Paths are already validated.
type manager interface {
	exists(path string) (bool, error)
	create(path string, res *specs.LinuxResources) error
	update(path string, res *specs.LinuxResources) error
	delete(path string) error
	stats(path string) (*Metrics, error)
	procs(path string) ([]int, error)
	addProc(path string, pid int) error
	// killAll sends SIGKILL to every process in the cgroup and below it,
	// in a way none of them can escape by forking meanwhile (cgroup.kill,
	// or freezing the subtree while the signals go out).
	killAll(path string) error
}

var (
	hostOnce sync.Once
	hostMgr  manager
	hostErr  error
)

// host returns the manager for this host's cgroup mode. Hybrid hosts keep
// every controller on v1 (the v2 mount there only tracks processes), so they
// are driven as v1.
func host() (manager, error) {
	hostOnce.Do(func() {
		switch cgroups.Mode() {
		case cgroups.Unified:
			hostMgr = &v2Manager{mountpoint: hostRoot}
		case cgroups.Legacy, cgroups.Hybrid:
			hostMgr = &v1Manager{root: hostRoot, procRoot: "/proc", mountedOnly: true}
		default:
			hostErr = fmt.Errorf("no cgroup hierarchy mounted at %s: %w", hostRoot, errors.ErrUnsupported)
		}
	})
	return hostMgr, hostErr
}

// Create makes the pod cgroup parent/name ("" parent: DefaultParent),
// creating missing ancestors, applies res (nil: no limits) and returns its
// path. On cgroup v2 it also enables every available controller in the
// ancestors, so the pod cgroup has usage files for Stats even without
// limits. Creating an existing cgroup applies res and succeeds, so a retried
// RunPodSandbox works. On error a cgroup this call made is removed again;
// ancestors are kept, as other pods share them.
//
// Under the systemd driver the pod cgroup is a slice below parent ("" parent:
// DefaultSlice), started through systemd, and its name is returned.
func Create(parent, name string, res *specs.LinuxResources) (string, error) {
	m, err := host()
	if err != nil {
		return "", err
	}
	if Driver() == DriverSystemd {
		slice, err := podSlice(parent, name)
		if err != nil {
			return "", err
		}
		return hostSlices(m).create(slice, res)
	}
	path, err := podPath(parent, name)
	if err != nil {
		return "", err
	}
	return create(m, path, res)
}

// hostSlices drives systemd slices on the host's cgroup mode.
func hostSlices(m manager) sliceDriver {
	_, v2 := m.(*v2Manager)
	return sliceDriver{u: hostUnits, m: m, v2: v2}
}

// resolve checks a pod cgroup as Create returned it and gives its cgroupfs
// path, and whether it is a systemd slice.
func resolve(p string) (path string, slice bool, err error) {
	if isSlice(p) {
		if err := checkSlice(p); err != nil {
			return "", false, err
		}
		path, err := sdcgroups.ExpandSlice(p)
		if err != nil {
			return "", false, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return path, true, nil
	}
	if err := checkPath(p); err != nil {
		return "", false, err
	}
	return p, false, nil
}

func create(m manager, path string, res *specs.LinuxResources) (string, error) {
	existed, err := m.exists(path)
	if err != nil {
		return "", fmt.Errorf("create pod cgroup %s: %w", path, err)
	}
	if res == nil {
		res = &specs.LinuxResources{}
	}
	if err := m.create(path, res); err != nil {
		if !existed {
			_ = m.delete(path)
		}
		return "", fmt.Errorf("create pod cgroup %s: %w", path, err)
	}
	return path, nil
}

// Update applies res to the existing cgroup at path.
func Update(path string, res *specs.LinuxResources) error {
	fsPath, slice, err := resolve(path)
	if err != nil {
		return err
	}
	m, err := host()
	if err != nil {
		return err
	}
	if slice {
		if res == nil {
			return nil
		}
		return hostSlices(m).update(path, res)
	}
	return update(m, fsPath, res)
}

func update(m manager, path string, res *specs.LinuxResources) error {
	if res == nil {
		return nil
	}
	ok, err := m.exists(path)
	if err != nil {
		return fmt.Errorf("update cgroup %s: %w", path, err)
	}
	if !ok {
		return fmt.Errorf("update cgroup %s: %w", path, ErrNotFound)
	}
	if err := m.update(path, res); err != nil {
		return fmt.Errorf("update cgroup %s: %w", path, err)
	}
	return nil
}

// Delete removes the cgroup at path and any empty cgroups below it. It
// kills nothing: if a process is still inside it fails with ErrNotEmpty.
// Deleting a missing cgroup succeeds. The kernel can answer EBUSY for a
// moment after the last process left; that is retried for up to about
// 150 ms.
func Delete(path string) error {
	fsPath, slice, err := resolve(path)
	if err != nil {
		return err
	}
	m, err := host()
	if err != nil {
		return err
	}
	if slice {
		return hostSlices(m).remove(path)
	}
	return remove(m, fsPath)
}

func remove(m manager, path string) error {
	ok, err := m.exists(path)
	if err != nil {
		return fmt.Errorf("delete cgroup %s: %w", path, err)
	}
	if !ok {
		return nil
	}
	pids, err := m.procs(path)
	if err != nil {
		return fmt.Errorf("delete cgroup %s: %w", path, err)
	}
	if len(pids) > 0 {
		return fmt.Errorf("delete cgroup %s: %w (pids %v)", path, ErrNotEmpty, pids)
	}
	if err := m.delete(path); err != nil {
		return fmt.Errorf("delete cgroup %s: %w", path, err)
	}
	return nil
}

// Kill kills every process in the cgroup at path and below it, and waits
// until none is left (zombies do not count: they hold no cgroup). It is for
// a pod whose shim is gone: nothing else will end what the shim left
// running. Killing in a missing cgroup succeeds. When processes remain
// after killTimeout (a process stuck in the kernel, in uninterruptible
// sleep, dies only once it wakes) it fails with ErrNotEmpty. A systemd
// slice is killed through its cgroupfs path: its scopes end with their
// processes.
func Kill(path string) error {
	fsPath, _, err := resolve(path)
	if err != nil {
		return err
	}
	m, err := host()
	if err != nil {
		return err
	}
	return kill(m, fsPath, killTimeout)
}

// killTimeout bounds how long Kill waits for the processes to be gone.
const killTimeout = 10 * time.Second

func kill(m manager, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := m.exists(path)
		if err != nil {
			return fmt.Errorf("kill processes of cgroup %s: %w", path, err)
		}
		if !ok {
			return nil
		}
		pids, err := m.procs(path)
		if err != nil {
			return fmt.Errorf("kill processes of cgroup %s: %w", path, err)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill processes of cgroup %s: %w (pids %v)", path, ErrNotEmpty, pids)
		}
		if err := m.killAll(path); err != nil {
			return fmt.Errorf("kill processes of cgroup %s: %w", path, err)
		}
		// A killed process leaves its cgroup once it has exited, which
		// takes a moment (longer for one that must first be thawed).
		time.Sleep(5 * time.Millisecond)
	}
}

// Stats reads the usage of the cgroup at path, its subtree included.
func Stats(path string) (*Metrics, error) {
	fsPath, _, err := resolve(path)
	if err != nil {
		return nil, err
	}
	m, err := host()
	if err != nil {
		return nil, err
	}
	return stats(m, fsPath)
}

func stats(m manager, path string) (*Metrics, error) {
	ok, err := m.exists(path)
	if err != nil {
		return nil, fmt.Errorf("read stats of cgroup %s: %w", path, err)
	}
	if !ok {
		return nil, fmt.Errorf("read stats of cgroup %s: %w", path, ErrNotFound)
	}
	s, err := m.stats(path)
	if err != nil {
		return nil, fmt.Errorf("read stats of cgroup %s: %w", path, err)
	}
	return s, nil
}

// Procs lists the processes in the cgroup at path and below it, each once.
func Procs(path string) ([]int, error) {
	fsPath, _, err := resolve(path)
	if err != nil {
		return nil, err
	}
	m, err := host()
	if err != nil {
		return nil, err
	}
	return procs(m, fsPath)
}

func procs(m manager, path string) ([]int, error) {
	ok, err := m.exists(path)
	if err != nil {
		return nil, fmt.Errorf("list processes of cgroup %s: %w", path, err)
	}
	if !ok {
		return nil, fmt.Errorf("list processes of cgroup %s: %w", path, ErrNotFound)
	}
	pids, err := m.procs(path)
	if err != nil {
		return nil, fmt.Errorf("list processes of cgroup %s: %w", path, err)
	}
	return pids, nil
}

// AddProc moves process pid into the cgroup at path. See the package doc
// for why this must stay off hot paths. On cgroup v2 a cgroup whose
// controllers are enabled for children (one libcontainer has put containers
// under) cannot hold processes itself.
func AddProc(path string, pid int) error {
	fsPath, _, err := resolve(path)
	if err != nil {
		return err
	}
	path = fsPath
	if pid <= 0 {
		return fmt.Errorf("%w: pid %d", ErrInvalid, pid)
	}
	m, err := host()
	if err != nil {
		return err
	}
	return addProc(m, path, pid)
}

func addProc(m manager, path string, pid int) error {
	ok, err := m.exists(path)
	if err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, path, err)
	}
	if !ok {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, path, ErrNotFound)
	}
	if err := m.addProc(path, pid); err != nil {
		return fmt.Errorf("add pid %d to cgroup %s: %w", pid, path, err)
	}
	return nil
}

// freezeTimeout bounds the wait for a cgroup to freeze: a task in
// uninterruptible sleep holds the freeze back. The kill goes out frozen or
// not, and Kill repeats it.
const freezeTimeout = time.Second

// waitFor polls cond until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) {
	for deadline := time.Now().Add(timeout); !cond() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// signalAll sends SIGKILL to every pid; one already gone is no error. A pid
// of 0 or 1 (a process of another pid namespace, or init) is never one to
// kill: kill(2) would take 0 for the caller's process group.
func signalAll(pids []int) {
	for _, pid := range pids {
		if pid > 1 {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}

// dedupe drops repeated pids, keeping first-seen order.
func dedupe[T ~int | ~uint64](in []T) []int {
	seen := make(map[T]bool, len(in))
	out := make([]int, 0, len(in))
	for _, p := range in {
		if !seen[p] {
			seen[p] = true
			out = append(out, int(p))
		}
	}
	return out
}

// ShimCgroup names the shim's cgroup below the pod cgroup under the
// cgroupfs driver.
const ShimCgroup = "shim"

// PlaceShim moves pid, the shim of pod podID, into a cgroup of its own below
// the pod cgroup podCgroup, and returns that cgroup: podCgroup/shim under the
// cgroupfs driver, the scope warmpod-shim-<podID>.scope in the pod's slice
// under systemd. Out of the daemon's cgroup, the shim (and every process it
// starts) outlives the daemon's: a systemd unit stopped, restarted or killed
// never takes the pods with it. Below the pod cgroup, its memory counts as
// the pod's, as the pod overhead a RuntimeClass declares is meant to; the
// kubelet's limit on the pod cgroup covers it, and Delete of the pod cgroup
// removes it.
func PlaceShim(podCgroup, podID string, pid int) (string, error) {
	fsPath, slice, err := resolve(podCgroup)
	if err != nil {
		return "", err
	}
	if pid <= 0 {
		return "", fmt.Errorf("%w: pid %d", ErrInvalid, pid)
	}
	m, err := host()
	if err != nil {
		return "", err
	}
	if slice {
		return hostSlices(m).placeShim(podCgroup, fsPath, podID, pid)
	}
	path, err := podPath(fsPath, ShimCgroup)
	if err != nil {
		return "", err
	}
	if _, err := create(m, path, nil); err != nil {
		return "", err
	}
	if err := addProc(m, path, pid); err != nil {
		_ = remove(m, path)
		return "", err
	}
	return path, nil
}
