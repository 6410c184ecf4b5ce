// Package netns creates and pins the namespaces a pod sandbox keeps for its
// whole life: network, IPC and UTS.
//
// A pinned namespace is an nsfs bind mount on a plain file (dir/net, dir/ipc,
// dir/uts). The mount keeps the namespace alive with no process in it, so the
// pod keeps its IP, SysV IPC objects and hostname across every in-place reset
// of its containers; containers join it by path.
//
// Create runs in-process on a dedicated OS thread instead of forking a helper:
// that is the difference between a few hundred microseconds and several
// milliseconds, and RunPodSandbox has a budget of about 20 ms in total.
package netns

import (
	"errors"
	"fmt"
	"path/filepath"
)

// Options selects the namespaces Create makes. A namespace left false is the
// host's (the pod uses host networking, host IPC or the host's hostname).
type Options struct {
	Net, IPC, UTS bool
	// Hostname is set inside the new UTS namespace. It must be empty unless
	// UTS is true: setting it otherwise would rename the node.
	Hostname string
}

// Paths names the pinned namespace files. An empty field means the host's
// namespace of that kind is used.
type Paths struct {
	Net, IPC, UTS string
}

// File names inside the directory passed to Create.
const (
	netFile = "net"
	ipcFile = "ipc"
	utsFile = "uts"
)

// maxHostname is the kernel's limit (HOST_NAME_MAX) for sethostname(2).
const maxHostname = 64

// ErrInvalidOptions is wrapped by every error caused by bad input to Create.
var ErrInvalidOptions = errors.New("invalid namespace options")

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
	return nil
}
