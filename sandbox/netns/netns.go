// Package netns creates and pins the namespaces a pod sandbox keeps for its
// whole life: network, IPC and UTS, and for pods with a user namespace
// (Kubernetes hostUsers: false) that user namespace too.
//
// A pinned namespace is an nsfs bind mount on a plain file (dir/net, dir/ipc,
// dir/uts). The mount keeps the namespace alive with no process in it, so the
// pod keeps its IP, SysV IPC objects and hostname across every in-place reset
// of its containers; containers join it by path.
//
// Create runs in-process on a dedicated OS thread instead of forking a helper:
// that is the difference between a few hundred microseconds and several
// milliseconds, and RunPodSandbox has a budget of about 20 ms in total.
//
// A user namespace is the exception: the kernel refuses setns and unshare of
// a user namespace to a multi-threaded process, and every Go process is one.
// The pod's namespaces are then all made by one short-lived child, cloned
// with the new user namespace and the others inside it, so that they belong
// to it: only then may the pod's containers, root in that user namespace
// but nobody on the host, mount sysfs, proc and mqueue. See userns_linux.go.
package netns

import (
	"fmt"
	"path/filepath"

	"github.com/containerd/errdefs"
)

// Options selects the namespaces Create makes. A namespace left false is the
// host's (the pod uses host networking, host IPC or the host's hostname).
type Options struct {
	Net, IPC, UTS bool
	// User, when set, creates a user namespace with these mappings and
	// creates the other namespaces inside it.
	User *UserNS
	// Hostname is set inside the new UTS namespace. It must be empty unless
	// UTS is true: setting it otherwise would rename the node.
	Hostname string
}

// Paths names the pinned namespace files. An empty field means the host's
// namespace of that kind is used.
type Paths struct {
	Net, IPC, UTS string
	// User is the pod's user namespace; "" means the host's.
	User string `json:",omitempty"`
}

// UserNS is the id mapping of a new user namespace.
type UserNS struct {
	UIDs, GIDs []IDMap
}

// IDMap maps Size ids from ContainerID on inside the user namespace to
// HostID on outside it (one line of /proc/PID/uid_map).
type IDMap struct {
	ContainerID, HostID, Size uint32
}

// RootUID and RootGID return the host ids of root (id 0) in the user
// namespace, and whether root is mapped at all.
func (u *UserNS) RootUID() (uint32, bool) { return hostID(u.UIDs, 0) }

// RootGID is RootUID for groups.
func (u *UserNS) RootGID() (uint32, bool) { return hostID(u.GIDs, 0) }

func hostID(ms []IDMap, id uint32) (uint32, bool) {
	for _, m := range ms {
		if id >= m.ContainerID && uint64(id) < uint64(m.ContainerID)+uint64(m.Size) {
			return m.HostID + (id - m.ContainerID), true
		}
	}
	return 0, false
}

// File names inside the directory passed to Create.
const (
	netFile  = "net"
	ipcFile  = "ipc"
	utsFile  = "uts"
	userFile = "user"
)

// maxIDMapLines is the kernel's limit on lines in uid_map and gid_map.
const maxIDMapLines = 340

// maxHostname is the kernel's limit (HOST_NAME_MAX) for sethostname(2).
const maxHostname = 64

// ErrInvalidOptions is wrapped by every error caused by bad input to Create; it is of class
// errdefs.ErrInvalidArgument.
var ErrInvalidOptions = errdefs.ErrInvalidArgument.WithMessage("invalid namespace options")

func validate(dir string, opts Options) error {
	if dir == "" || !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return fmt.Errorf("%w: directory %q must be a clean absolute path", ErrInvalidOptions, dir)
	}
	if opts.Hostname != "" && !opts.UTS {
		return fmt.Errorf("%w: hostname %q given without a new UTS namespace", ErrInvalidOptions, opts.Hostname)
	}
	if len(opts.Hostname) > maxHostname {
		return fmt.Errorf("%w: hostname %q is longer than %d bytes", ErrInvalidOptions, opts.Hostname, maxHostname)
	}
	for _, c := range []byte(opts.Hostname) {
		if c == 0 || c == '/' {
			return fmt.Errorf("%w: hostname %q contains a NUL or '/'", ErrInvalidOptions, opts.Hostname)
		}
	}
	if u := opts.User; u != nil {
		if err := validateIDMaps("uid", u.UIDs); err != nil {
			return err
		}
		if err := validateIDMaps("gid", u.GIDs); err != nil {
			return err
		}
	}
	return nil
}

// validateIDMaps checks what the kernel would refuse with a bare EINVAL.
// Overlapping ranges are left to the kernel, which reports them that way too.
func validateIDMaps(kind string, ms []IDMap) error {
	if len(ms) == 0 {
		return fmt.Errorf("%w: user namespace without %s mappings", ErrInvalidOptions, kind)
	}
	if len(ms) > maxIDMapLines {
		return fmt.Errorf("%w: %d %s mappings, the kernel takes at most %d", ErrInvalidOptions, len(ms), kind, maxIDMapLines)
	}
	for i, m := range ms {
		switch {
		case m.Size == 0:
			return fmt.Errorf("%w: %s mapping %d (%d->%d) has length 0", ErrInvalidOptions, kind, i, m.ContainerID, m.HostID)
		case uint64(m.ContainerID)+uint64(m.Size) > 1<<32-1, uint64(m.HostID)+uint64(m.Size) > 1<<32-1:
			return fmt.Errorf("%w: %s mapping %d (%d->%d, length %d) goes past the largest id", ErrInvalidOptions, kind, i, m.ContainerID, m.HostID, m.Size)
		}
	}
	return nil
}
