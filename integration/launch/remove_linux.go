package launch

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	goiptables "github.com/coreos/go-iptables/iptables"
	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"

	"github.com/warmpod/warmpod/sandbox/network"
)

// FreeSubnet picks a /24 in 10.200.0.0-10.249.255.0 that no route of the
// host overlaps.
func FreeSubnet() (string, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("list routes: %w", err)
	}
	var used []netip.Prefix
	for _, r := range routes {
		if r.Dst == nil {
			continue // the default route overlaps everything and nothing
		}
		if p, err := netip.ParsePrefix(r.Dst.String()); err == nil && p.Bits() > 0 {
			used = append(used, p)
		}
	}
	b := make([]byte, 2)
	for range 100 {
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		cand := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 200+int(b[0])%50, b[1]))
		free := true
		for _, u := range used {
			free = free && !u.Overlaps(cand)
		}
		if free {
			return cand.String(), nil
		}
	}
	return "", errors.New("no free /24 in 10.200.0.0-10.249.255.0 for the pod network")
}

// Owns tells whether process pid is the daemon's by where it lives: its
// command line names the state directory, as each shim's does ("warmpod
// shim --state <state>/pods/<id>"; shims run from a sealed in-memory copy
// of the binary, so their executable does not name it), or it is in a
// cgroup under the cgroup parent (containers, pre-created generations).
func (c *Config) Owns(pid int) bool {
	return c.namesState(pid) || c.inCgroup(pid)
}

func (c *Config) namesState(pid int) bool {
	if len(c.State) < 2 {
		return false // "" or "/" would match every process
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	for _, arg := range strings.Split(string(cmdline), "\x00") {
		if under(arg, c.State) {
			return true
		}
	}
	return false
}

func (c *Config) inCgroup(pid int) bool {
	if len(c.CgroupParent) < 2 {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && under(parts[2], c.CgroupParent) {
			return true
		}
	}
	return false
}

// under tells whether path is dir or below it.
func under(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

// private tells whether the daemon has places of its own, which Remove
// may delete; a daemon on the defaults (the node's) is never removed.
func (c *Config) private() bool {
	return c.Root != "" && c.State != "" && c.Bridge != "" && c.ChainPrefix != "" && len(c.CgroupParent) > 1
}

// Remove cleans up after a daemon of its own: it kills the daemon if it
// still runs, kills (by PID) the processes it owns that outlived their
// pods, unmounts what is left under its directories, removes its bridge
// and iptables chains with the network package's own uninstaller, its
// cgroup parent with whatever is left below, and its root, state
// directory and configuration file. Its log stays. Each process, mount
// and cgroup found is reported in the error: it is a leak. Call it after
// the daemon's pods are removed and the daemon is stopped.
func (d *Daemon) Remove() error {
	if !d.private() {
		return errors.New("remove: the daemon runs on shared places (root, state, bridge, chains or cgroup parent left to the defaults); not removing them")
	}
	d.Kill()
	errs := d.killLeftovers()
	errs = append(errs, d.unmountLeftovers()...)
	if err := d.uninstallNetwork(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, d.removeCgroups()...)
	for _, p := range []string{d.State, d.Root, d.ConfigPath} {
		if p == "" {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killLeftovers kills the processes the daemon owns and waits, briefly,
// for them to go: their cgroups can only be removed then. A process that
// has exited and waits for its parent to reap it is not a leftover: it
// holds nothing but its pid, and a pod process whose shim died is reaped
// by init, in init's own time.
func (d *Daemon) killLeftovers() []error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []error{err}
	}
	var errs []error
	var killed []int
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 || pid == self || !d.Owns(pid) || exited(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		errs = append(errs, fmt.Errorf("killed leftover process %d: %s", pid, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))))
		_ = syscall.Kill(pid, syscall.SIGKILL)
		killed = append(killed, pid)
	}
	for deadline := time.Now().Add(5 * time.Second); len(killed) > 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		killed = removeGone(killed)
	}
	return errs
}

// exited tells whether process pid has exited (a zombie, or gone).
func exited(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	switch stat[i+2] {
	case 'Z', 'X':
		return true
	}
	return false
}

// removeGone keeps the pids that still have a /proc entry (zombies
// included: their parent, or init, has yet to reap them).
func removeGone(pids []int) []int {
	var alive []int
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			alive = append(alive, pid)
		}
	}
	return alive
}

// unmountLeftovers detaches every mount under Dir, Root and State,
// deepest first.
func (d *Daemon) unmountLeftovers() []error {
	infos, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		for _, dir := range []string{d.Dir, d.Root, d.State} {
			if len(dir) > 1 && under(m.Mountpoint, dir) {
				return false, false
			}
		}
		return true, false
	})
	if err != nil {
		return []error{fmt.Errorf("read mountinfo: %w", err)}
	}
	var mounts []string
	for _, m := range infos {
		mounts = append(mounts, m.Mountpoint)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	var errs []error
	for _, m := range mounts {
		errs = append(errs, fmt.Errorf("unmounted leftover mount %s", m))
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	return errs
}

// uninstallNetwork removes the bridge and iptables chains with the
// network package's own uninstaller, and checks they are gone.
func (d *Daemon) uninstallNetwork() error {
	return UninstallNetwork(network.EmbeddedConfig{
		Bridge: d.Bridge, Subnet: d.Subnet, ChainPrefix: d.ChainPrefix,
		StateDir: filepath.Join(d.State, "network"),
	})
}

// UninstallNetwork removes the embedded network of cfg (its bridge and
// iptables chains) with the network package's own uninstaller, and checks
// they are gone.
func UninstallNetwork(cfg network.EmbeddedConfig) error {
	n, err := network.NewEmbedded(cfg)
	if err != nil {
		return fmt.Errorf("uninstall network: %w", err)
	}
	if err := n.Uninstall(); err != nil {
		return fmt.Errorf("uninstall network: %w", err)
	}
	if _, err := netlink.LinkByName(cfg.Bridge); err == nil {
		return fmt.Errorf("bridge %s still exists after uninstall", cfg.Bridge)
	}
	ipt, err := goiptables.New()
	if err != nil {
		return nil // no iptables, no chains
	}
	for _, table := range []string{"nat", "filter"} {
		chains, err := ipt.ListChains(table)
		if err != nil {
			return fmt.Errorf("list %s chains: %w", table, err)
		}
		for _, c := range chains {
			if strings.HasPrefix(c, cfg.ChainPrefix+"-") {
				return fmt.Errorf("iptables chain %s/%s still exists after uninstall", table, c)
			}
		}
	}
	return nil
}

// removeCgroups removes the cgroup parent in every mounted hierarchy
// (cgroup v1 controllers and the v2 tree alike), and whatever is left
// below it, deepest first; each cgroup left below is reported.
func (d *Daemon) removeCgroups() []error {
	roots, err := CgroupRoots()
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, r := range roots {
		top := filepath.Join(r, d.CgroupParent)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, dir := range dirs {
			if dir != top {
				errs = append(errs, fmt.Errorf("removing leftover cgroup %s", dir))
			}
			if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))
			}
		}
	}
	return errs
}

// CgroupRoots lists the mount points of the cgroup hierarchies.
func CgroupRoots() ([]string, error) {
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var roots []string
	for _, m := range infos {
		roots = append(roots, m.Mountpoint)
	}
	return roots, nil
}
