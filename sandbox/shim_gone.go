package sandbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/sandbox/cgroup"
)

// A pod's containers are children of its shim, which records their exits.
// A shim that dies without shutting down (killed, OOM-killed, crashed)
// leaves them running with nobody to watch them: reported as exited they
// would be started again beside themselves, and the pod cgroup they fill
// could never be removed. So whenever the daemon finds a shim gone (its
// event stream ends and its process has exited, at recovery, or at
// StopPodSandbox) it kills every process in the pod cgroup before it reports
// a container exited, and StopPodSandbox and RemovePodSandbox release what
// the shim held (its mounts) themselves.

// ShimDiedMessage is the message of a container that was running (or
// created) when its pod's shim died: the daemon killed it, and its exit code
// is unknown.
const ShimDiedMessage = "shim died: the pod's shim exited without recording the container's exit; warmpod killed the container"

// Bounds of a shim's stop.
const (
	// shutdownTimeout bounds the Shutdown call, in which the shim kills
	// its containers and releases their root filesystems.
	shutdownTimeout = time.Minute
	// shimExitGrace is how long a shim that shut down has to exit.
	shimExitGrace = 10 * time.Second
	// shimKillTimeout bounds the wait for a killed shim to exit.
	shimKillTimeout = 10 * time.Second
)

// stopShim asks a pod's shim to kill its containers and exit, and makes sure
// its process is gone: a shim that fails the request or does not answer is
// killed. It fails only when the shim outlives its SIGKILL.
func (m *Manager) stopShim(ctx context.Context, c shimConn) error {
	m.retireShim(ctx, c)
	sctx, cancel := context.WithTimeout(ctx, shutdownTimeout)
	_, err := c.Shutdown(sctx, &shimv1.ShutdownRequest{})
	cancel()
	grace := shimExitGrace
	if err != nil {
		if !errdefs.IsUnavailable(err) {
			log.G(ctx).WithError(err).WithField("shim", c.Pid()).Warn("shut down shim; killing it")
		}
		grace = 0
	}
	// A fresh context: the caller's may have run out in Shutdown.
	kctx, cancel := context.WithTimeout(context.Background(), grace+shimKillTimeout)
	defer cancel()
	return c.Stop(kctx, grace)
}

// reapPod ends what the pod's shim, which is gone, left in the pod cgroup
// (containers, pre-created generations, execs), then updates the
// containers from the shim's records. The shim's mounts are released when
// the pod stops (podHost.unmountBelow).
// Preconditions: the pod's shim process has exited.
func (m *Manager) reapPod(ctx context.Context, p *pod) error {
	if err := m.host.killCgroup(p.meta.CgroupPath); err != nil && !errors.Is(err, cgroup.ErrNotFound) {
		return fmt.Errorf("kill what the shim of pod %s left: %w", p.meta.ID, err)
	}
	m.syncFromRecords(ctx, p)
	return nil
}

// shimDied handles a shim found gone while its pod was ready: the pod is not
// ready any more, and what the shim left running is killed.
func (m *Manager) shimDied(p *pod, client shimConn) {
	p.mu.Lock()
	if p.shim != client {
		p.mu.Unlock()
		return
	}
	p.shim = nil
	p.status.State = PodNotReady
	p.mu.Unlock()
	client.Close()
	ctx := m.background()
	l := log.G(ctx).WithField("pod", p.meta.ID)
	l.Warn("shim of pod died; killing the processes it left and marking the pod not ready")
	if err := m.reapPod(ctx, p); err != nil {
		l.WithError(err).Error("kill what the dead shim left")
	}
}

// unmountBelow detaches every mount below dirs (a pod's state and root
// dirs): a shim that died leaves its containers' root filesystems and the
// pod's pinned pid namespace mounted. It runs once the pod's namespaces and
// /dev/shm are released, so anything still mounted there is a leftover.
// It returns the mount points it detached.
// Preconditions: the pod's shim process has exited.
func unmountBelow(dirs ...string) ([]string, error) {
	var mps []string
	for _, dir := range dirs {
		// Mount points are listed with symlinks resolved.
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			dir = real
		}
		infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
		if err != nil {
			return nil, fmt.Errorf("list mounts below %s: %w", dir, err)
		}
		for _, i := range infos {
			mps = append(mps, i.Mountpoint)
		}
	}
	// Deepest first: a mount below another goes before it.
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	return mps, nil
}
