package sandbox

import (
	"context"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/shim"
	shimclient "github.com/warmpod/warmpod/runtime/shim/client"
	"github.com/warmpod/warmpod/sandbox/cgroup"
	"github.com/warmpod/warmpod/sandbox/netns"
)

// The seams between the pod manager and what it drives: a pod's shim, and
// what a pod keeps on the host. The daemon's are below; the package's tests
// use recording fakes, so pod and container logic (rollback, retries,
// recovery) is tested without root.

// shimConn is what the pod manager needs of a connection to a pod's shim:
// the shim API and the connection's life. The daemon's is
// runtime/shim/client's Client.
type shimConn interface {
	shimv1.ShimClient
	// Pid is the shim process's pid, 0 when it is not known.
	Pid() int
	// Exited tells whether the shim process has exited: a shim that does
	// not answer may only be busy.
	Exited() bool
	// Stop makes sure the shim process is gone: it waits up to grace for
	// it to exit, then kills it.
	Stop(ctx context.Context, grace time.Duration) error
	// Close closes the connection; the shim keeps running.
	Close() error
}

// shimLauncher starts pod shims and connects to running ones.
type shimLauncher interface {
	// start writes cfg to its state dir, starts the pod's shim and
	// connects to it once it is ready. place runs on the shim's pid before
	// the shim does anything (see shimclient.Start).
	start(ctx context.Context, cfg *shim.Config, place func(pid int) error) (shimConn, error)
	// connect connects to the shim an earlier daemon started for stateDir;
	// it fails with shimclient.ErrGone when that shim runs no more.
	connect(ctx context.Context, stateDir string) (shimConn, error)
}

// clientLauncher starts shims from the warmpod binary with
// runtime/shim/client.
type clientLauncher struct{ binary string }

func (l clientLauncher) start(ctx context.Context, cfg *shim.Config, place func(pid int) error) (shimConn, error) {
	c, err := shimclient.Start(ctx, l.binary, cfg, place)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (clientLauncher) connect(ctx context.Context, stateDir string) (shimConn, error) {
	c, err := shimclient.Reconnect(ctx, stateDir)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// podHost makes, changes and removes what a pod keeps on the host for its
// whole life besides its network: pinned namespaces, the pod cgroup,
// /dev/shm.
type podHost interface {
	createNamespaces(dir string, opts netns.Options) (netns.Paths, error)
	removeNamespaces(dir string) error
	createCgroup(parent, name string) (string, error)
	updateCgroup(path string, res *specs.LinuxResources) error
	deleteCgroup(path string) error
	// placeShim puts a starting shim in its cgroup below the pod cgroup
	// and gives it its OOM score (placeShim in shim_place.go).
	placeShim(podCgroup, podID string, pid int) error
	// killCgroup kills every process in the cgroup and below it.
	killCgroup(path string) error
	mountShm(path string) error
	unmountShm(path string)
	// unmountBelow detaches every mount below the dirs.
	unmountBelow(dirs ...string) ([]string, error)
}

// hostPod is the node's: sandbox/netns, sandbox/cgroup and a tmpfs mount.
type hostPod struct{}

func (hostPod) createNamespaces(dir string, opts netns.Options) (netns.Paths, error) {
	return netns.Create(dir, opts)
}

func (hostPod) removeNamespaces(dir string) error { return netns.Remove(dir) }

func (hostPod) createCgroup(parent, name string) (string, error) {
	return cgroup.Create(parent, name, nil)
}

func (hostPod) updateCgroup(path string, res *specs.LinuxResources) error {
	return cgroup.Update(path, res)
}

func (hostPod) deleteCgroup(path string) error { return cgroup.Delete(path) }

func (hostPod) placeShim(podCgroup, podID string, pid int) error {
	return placeShim(podCgroup, podID, pid)
}
func (hostPod) killCgroup(path string) error { return cgroup.Kill(path) }

func (hostPod) unmountBelow(dirs ...string) ([]string, error) { return unmountBelow(dirs...) }

func (hostPod) mountShm(path string) error { return mountShm(path) }

func (hostPod) unmountShm(path string) { unmountShm(path) }
