package cgroup

import (
	"fmt"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// FavorDynMods turns the cgroup mount option favordynmods on where it is off
// and tells whether it did; on a host without a cgroup2 mount (pure v1) it
// does nothing.
//
// Why a container runtime wants it: moving a process into a cgroup (a write
// to cgroup.procs, which every new container makes for each hierarchy)
// takes the kernel's cgroup_threadgroup_rwsem for writing. That lock is built
// for cheap forks and exits, not moves: the first move after a quiet spell
// waits for an RCU grace period, 10-40 ms measured on a 2-core VM, cgroup v1
// and hybrid alike (the lock is global). A cold container start pays it on
// its critical path, and pre-creation pays it for every generation made
// after a pause. favordynmods keeps the lock ready for moves (and, from Linux
// 6.18, gives each process its own), at the price of an atomic operation on
// every fork and exit, which is what the kernel documentation means by
// making "hot path operations such as forks and exits more expensive".
//
// The option belongs to the cgroup2 superblock but the lock is the whole
// kernel's, so remounting the cgroup2 mount (/sys/fs/cgroup on v2,
// /sys/fs/cgroup/unified on hybrid) is enough. The remount keeps the mount's
// other options and flags.
func FavorDynMods() (bool, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup2"))
	if err != nil {
		return false, fmt.Errorf("list cgroup2 mounts: %w", err)
	}
	var m *mountinfo.Info
	for _, c := range mounts {
		if c.Mountpoint == hostRoot || c.Mountpoint == hostRoot+"/unified" {
			m = c
			break
		}
	}
	if m == nil {
		return false, nil
	}
	super := strings.Split(m.VFSOptions, ",")
	if slices.Contains(super, "favordynmods") {
		return false, nil
	}
	// A remount sets every flag and option anew: pass the current ones.
	var flags uintptr = unix.MS_REMOUNT
	for _, o := range strings.Split(m.Options, ",") {
		if f, ok := mountFlags[o]; ok {
			flags |= f
		}
	}
	data := []string{"favordynmods"}
	for _, o := range super {
		if o != "rw" && o != "ro" && o != "" {
			data = append(data, o)
		}
	}
	if err := unix.Mount("", m.Mountpoint, "", flags, strings.Join(data, ",")); err != nil {
		return false, fmt.Errorf("remount %s with favordynmods: %w", m.Mountpoint, err)
	}
	return true, nil
}

// mountFlags are the per-mount options of mountinfo and their mount flags.
var mountFlags = map[string]uintptr{
	"ro":          unix.MS_RDONLY,
	"nosuid":      unix.MS_NOSUID,
	"nodev":       unix.MS_NODEV,
	"noexec":      unix.MS_NOEXEC,
	"noatime":     unix.MS_NOATIME,
	"nodiratime":  unix.MS_NODIRATIME,
	"relatime":    unix.MS_RELATIME,
	"strictatime": unix.MS_STRICTATIME,
	"nosymfollow": unix.MS_NOSYMFOLLOW,
}
