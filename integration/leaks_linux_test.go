package integration

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"

	"github.com/warmpod/warmpod/integration/launch"
)

// snapshot is what a daemon has made on the host, by kind, each list
// sorted. Only things that carry this run's names are included (its
// directories, binary, bridge and cgroup parent), so other work on the same
// machine does not show up.
type snapshot map[string][]string

// Snapshot kinds.
const (
	kindMounts    = "mounts"
	kindNetNS     = "pinned namespaces"
	kindLinks     = "links on the bridge"
	kindCgroups   = "cgroups under the parent"
	kindProcesses = "processes"
	kindPodDirs   = "pod state dirs"
	kindFDs       = "daemon fds"
)

// takeSnapshot records the host state the daemon is responsible for. The
// daemon's TCP connections to the test registry are left out: idle
// keep-alive connections come and go with the HTTP client's pool.
func (d *daemon) takeSnapshot() (snapshot, error) {
	s := snapshot{}
	var err error
	if s[kindMounts], s[kindNetNS], err = d.mounts(); err != nil {
		return nil, err
	}
	if s[kindLinks], err = d.bridgeLinks(); err != nil {
		return nil, err
	}
	if s[kindCgroups], err = d.cgroups(); err != nil {
		return nil, err
	}
	if s[kindProcesses], err = d.processes(); err != nil {
		return nil, err
	}
	if s[kindPodDirs], err = dirNames(filepath.Join(d.State, "pods")); err != nil {
		return nil, err
	}
	if pid := d.PID(); pid > 0 {
		if s[kindFDs], err = fds(pid, registryPort()); err != nil {
			return nil, err
		}
	}
	for k := range s {
		sort.Strings(s[k])
	}
	return s, nil
}

// diff lists what after has that before lacks. Only additions count, for
// every kind: a leak only ever adds, and an entry of before that is gone
// (an fd the daemon opened lazily and closed since, a short-lived helper
// process caught by the baseline) is no leak, whatever the machine.
func (before snapshot) diff(after snapshot) []string {
	var out []string
	kinds := map[string]bool{}
	for k := range before {
		kinds[k] = true
	}
	for k := range after {
		kinds[k] = true
	}
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, e := range multisetAdded(before[k], after[k]) {
			out = append(out, fmt.Sprintf("%s: + %s", k, e))
		}
	}
	return out
}

// multisetAdded lists the entries of b that a lacks, duplicates counted.
func multisetAdded(a, b []string) []string {
	count := map[string]int{}
	for _, e := range a {
		count[e]++
	}
	var added []string
	for _, e := range b {
		if count[e] > 0 {
			count[e]--
			continue
		}
		added = append(added, e)
	}
	return added
}

// awaitNoLeaks compares snapshots until after adds nothing to before, or 20 s
// pass: processes exit and connections close a moment after the RPC that
// ends them returns. Kinds named in ignore are not compared. It returns
// the last difference.
func (d *daemon) awaitNoLeaks(before snapshot, ignore ...string) ([]string, error) {
	before = maps.Clone(before)
	for _, k := range ignore {
		delete(before, k)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		after, err := d.takeSnapshot()
		if err != nil {
			return nil, err
		}
		for _, k := range ignore {
			delete(after, k)
		}
		diff := before.diff(after)
		if len(diff) == 0 || time.Now().After(deadline) {
			return diff, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mounts lists the mounts below the run's directories, and separately the
// pinned namespaces (nsfs mounts) there.
func (d *daemon) mounts() (mounts, netns []string, err error) {
	infos, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) {
		return !under(m.Mountpoint, d.base) && !under(m.Mountpoint, d.State), false
	})
	if err != nil {
		return nil, nil, err
	}
	for _, m := range infos {
		entry := m.Mountpoint + " (" + m.FSType + ")"
		if m.FSType == "nsfs" {
			netns = append(netns, entry)
		} else {
			mounts = append(mounts, entry)
		}
	}
	return mounts, netns, nil
}

func under(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

// bridgeLinks lists the host interfaces enslaved to the run's bridge: one
// veth per pod with a network of its own.
func (d *daemon) bridgeLinks() ([]string, error) {
	br, err := netlink.LinkByName(d.Bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, fmt.Errorf("find bridge %s: %w", d.Bridge, err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, l.Attrs().Name+" ("+l.Type()+")")
		}
	}
	return out, nil
}

// cgroups lists every cgroup below the run's cgroup parent, in every
// hierarchy, as "hierarchy:path". The parent itself is shared by all pods
// and is removed at the end of the run.
func (d *daemon) cgroups() ([]string, error) {
	hs, err := launch.CgroupRoots()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, h := range hs {
		top := filepath.Join(h, d.CgroupParent)
		err := filepath.WalkDir(top, func(p string, e os.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			if e.IsDir() && p != top {
				out = append(out, filepath.Base(h)+":"+strings.TrimPrefix(p, h))
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("walk %s: %w", top, err)
		}
	}
	return out, nil
}

// processes lists the live processes that belong to the run other than the
// daemon itself: those running the run's warmpod binary, those the
// launcher counts as the daemon's (launch.Config.Owns: shims naming the
// run's state directory, containers and pause processes in a cgroup under
// the run's parent) and the daemon's children. Zombies of other parents
// are left out: reaping orphans is the init process's job.
func (d *daemon) processes() ([]string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	daemonPid := d.PID()
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == daemonPid || pid == os.Getpid() {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone meanwhile
		}
		comm, state, ppid := parseStat(string(stat))
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if pid <= 1 || ppid == 2 {
			continue // init and kernel threads are never the run's
		}
		ours := ppid == daemonPid && daemonPid > 0
		if !ours && state == "Z" {
			continue
		}
		ours = ours || (d.Bin != "" && exe == d.Bin) || d.Owns(pid)
		if ours {
			// Not its state: a process that ran at one look and sleeps at
			// the next is the same process.
			out = append(out, fmt.Sprintf("pid %d ppid %d comm %s exe %s", pid, ppid, comm, exe))
		}
	}
	return out, nil
}

// parseStat reads comm, state and ppid from /proc/<pid>/stat; comm may
// hold spaces and parentheses, so it ends at the last ')'.
func parseStat(s string) (comm, state string, ppid int) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", "", 0
	}
	comm = s[open+1 : end]
	rest := strings.Fields(s[end+1:])
	if len(rest) >= 2 {
		state = rest[0]
		ppid, _ = strconv.Atoi(rest[1])
	}
	return comm, state, ppid
}

func dirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out, nil
}

// fds lists what a process has open, with kernel object numbers replaced
// by what they are (a socket's peer or path), so two snapshots compare.
func fds(pid int, registryPort string) ([]string, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	sockets := socketNames(pid)
	var out []string
	procRoot := false
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		switch {
		case target == "/" && !procRoot:
			// The root of a detached mount: the private procfs that
			// filepath-securejoin (libcontainer's path resolution)
			// opens on first use and keeps for the process's life. One
			// is not a leak; a second would be.
			procRoot = true
			continue
		case strings.HasPrefix(target, "socket:["):
			name, ok := sockets[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")]
			if !ok {
				name = "socket (not unix or tcp)"
			}
			if registryPort != "" && name == "tcp to port "+registryPort {
				continue
			}
			target = name
		case strings.HasPrefix(target, "pipe:["):
			target = "pipe"
		}
		out = append(out, target)
	}
	return out, nil
}

// socketNames maps socket inodes of pid's network namespace to "unix PATH"
// or "tcp to port N".
func socketNames(pid int) map[string]string {
	names := map[string]string{}
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/unix", pid)); err == nil {
		for _, line := range strings.Split(string(data), "\n")[1:] {
			// Num RefCount Protocol Flags Type St Inode [Path]
			f := strings.Fields(line)
			if len(f) < 7 {
				continue
			}
			path := "(unnamed)"
			if len(f) >= 8 {
				path = f[7]
			}
			names[f[6]] = "unix " + path
		}
	}
	for _, file := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, file))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			// sl local rem st queues tr retrnsmt uid timeout inode
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			port := ""
			if _, hexPort, ok := strings.Cut(f[2], ":"); ok {
				if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil {
					port = strconv.FormatUint(p, 10)
				}
			}
			names[f[9]] = "tcp to port " + port
		}
	}
	return names
}
