package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/warmpod/warmpod/runtime/shim"
	"github.com/warmpod/warmpod/sandbox/cgroup"
)

// StopPod kills every container of the pod and releases what the pod held
// at run time: its shim, network, namespaces and /dev/shm. The pod and its
// containers stay listed, as exited, until RemovePod. Stopping a stopped pod
// succeeds.
func (m *Manager) StopPod(ctx context.Context, id string) error {
	p, err := m.getPod(id)
	if err != nil {
		return err
	}
	if err := p.Update(func(s podStatus) (podStatus, error) {
		if s.Stopping || s.Removing {
			return s, fmt.Errorf("pod sandbox %s is being stopped or removed: %w", p.meta.ID, errdefs.ErrFailedPrecondition)
		}
		s.Stopping = true
		return s, nil
	}); err != nil {
		return err
	}
	defer p.Update(func(s podStatus) (podStatus, error) {
		s.Stopping = false
		return s, nil
	})
	return m.stopPod(ctx, p)
}

func (m *Manager) stopPod(ctx context.Context, p *pod) error {
	p.mu.Lock()
	client := p.shim
	p.status.State = PodNotReady
	p.mu.Unlock()

	if client != nil {
		// The pod keeps its client until the shim is gone for sure: a
		// StopPod that fails here is retried with it.
		if err := m.stopShim(ctx, client); err != nil {
			return fmt.Errorf("stop shim of pod %s: %w", p.meta.ID, err)
		}
		p.mu.Lock()
		if p.shim == client {
			p.shim = nil
		}
		p.mu.Unlock()
		client.Close()
	}
	// The shim is gone: whatever it left in the pod's cgroup is ended, and
	// the containers get the final word of its records.
	if err := m.reapPod(ctx, p); err != nil {
		return err
	}

	if !p.meta.Config.HostNetwork() {
		if err := m.opts.Network.Teardown(ctx, m.networkPod(&p.meta)); err != nil {
			return fmt.Errorf("tear down network of pod %s: %w", p.meta.ID, err)
		}
	}
	if err := m.host.removeNamespaces(filepath.Join(p.meta.StateDir, "ns")); err != nil {
		return fmt.Errorf("remove namespaces of pod %s: %w", p.meta.ID, err)
	}
	if p.meta.Shm != "" {
		m.host.unmountShm(p.meta.Shm)
	}
	// What a dead shim left mounted: root filesystems, the pinned pid
	// namespace.
	left, err := m.host.unmountBelow(p.meta.StateDir, p.meta.RootDir)
	if err != nil {
		return fmt.Errorf("release what the shim of pod %s left: %w", p.meta.ID, err)
	}
	if client != nil {
		// A shim that was told to shut down releases every root
		// filesystem itself: one left behind is a generation it lost.
		root := p.meta.RootDir
		if real, err := filepath.EvalSymlinks(root); err == nil {
			root = real
		}
		var rootfs []string
		for _, mp := range left {
			if strings.HasPrefix(mp, root+string(filepath.Separator)) {
				rootfs = append(rootfs, mp)
			}
		}
		if len(rootfs) > 0 {
			log.G(ctx).WithField("pod", p.meta.ID).WithField("mounts", rootfs).Warn("the pod's shim left root filesystems mounted; released them")
		}
	}
	p.mu.Lock()
	p.meta.Stopped = true
	meta := p.meta
	p.mu.Unlock()
	if err := m.meta.put("pods", p.meta.ID, &meta); err != nil {
		return err
	}
	log.G(ctx).WithField("pod", p.meta.ID).Info("pod sandbox stopped")
	return nil
}

// syncFromRecords updates the pod's containers from the records its shim
// left on disk. Preconditions: the shim is gone and what it left running has
// been killed (reapPod). A container the records show as created or running
// was killed then, or died with the shim: its exit is unknown, and it is
// reported exited with reason Unknown and a message that says so. What the
// pod's events have not told is told, and so is the deletion of the
// containers the daemon removed that the shim did not tell.
func (m *Manager) syncFromRecords(ctx context.Context, p *pod) {
	recs, err := shim.ReadRecords(p.meta.StateDir)
	if err != nil {
		log.G(ctx).WithError(err).WithField("pod", p.meta.ID).Warn("read container records")
	}
	byID := make(map[string]shim.Record, len(recs))
	for _, r := range recs {
		byID[r.ID] = r
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var evs []pendingEvent
	for _, c := range m.podContainersLocked(p.meta.ID) {
		var rec shim.Record
		_ = c.Update(func(s containerStatus) (containerStatus, error) {
			r, ok := byID[c.meta.ID]
			if !ok {
				r = s.Record
			}
			if r.State == shim.StateCreated || r.State == shim.StateRunning || r.State == shim.StateUnknown {
				r.State = shim.StateExited
				r.Reason = shim.ReasonUnknown
				r.ExitCode = 255
				r.Message = ShimDiedMessage
				if r.FinishedAt == 0 {
					r.FinishedAt = nowNanos()
				}
			}
			s.Record = r
			rec = r
			return s, nil
		})
		evs = append(evs, catchUpLocked(c, rec)...)
	}
	sortEvents(evs)
	for _, pe := range evs {
		told := m.tellOwnLocked(p, pe.e.Type, pe.c, pe.e.Container)
		if t := told.Time(pe.e.Type); t != pe.e.Timestamp {
			// Told later than it happened: the record says when it was told.
			_ = pe.c.Update(func(s containerStatus) (containerStatus, error) {
				if s.Record.RestartCount == told.RestartCount && s.Record.State == told.State {
					s.Record.SetTime(pe.e.Type, t)
				}
				return s, nil
			})
		}
	}
	m.tellGoneLocked(p, func(string) bool { return true })
}

// RemovePod stops the pod if needed, removes its containers and everything
// it kept on disk. Removing an unknown pod fails with ErrNotFound.
func (m *Manager) RemovePod(ctx context.Context, id string) error {
	p, err := m.getPod(id)
	if err != nil {
		return err
	}
	if err := p.Update(func(s podStatus) (podStatus, error) {
		if s.Removing || s.Stopping {
			return s, fmt.Errorf("pod sandbox %s is being stopped or removed: %w", p.meta.ID, errdefs.ErrFailedPrecondition)
		}
		s.Removing = true
		return s, nil
	}); err != nil {
		return err
	}
	removed := false
	defer func() {
		if !removed {
			_ = p.Update(func(s podStatus) (podStatus, error) {
				s.Removing = false
				return s, nil
			})
		}
	}()
	if !p.meta.Stopped || p.Status().State == PodReady {
		if err := m.stopPod(ctx, p); err != nil {
			return err
		}
	}
	for _, c := range m.podContainers(p.meta.ID) {
		m.forgetContainer(ctx, c, false)
	}
	m.mu.Lock()
	m.tellGoneLocked(p, func(string) bool { return true })
	m.mu.Unlock()
	// A pod stopped by an earlier daemon may have left processes and mounts
	// of a dead shim; its shim is gone in any case.
	if err := m.reapPod(ctx, p); err != nil {
		return err
	}
	if _, err := m.host.unmountBelow(p.meta.StateDir, p.meta.RootDir); err != nil {
		return fmt.Errorf("release what the shim of pod %s left: %w", p.meta.ID, err)
	}
	if err := m.host.deleteCgroup(p.meta.CgroupPath); err != nil && !errors.Is(err, cgroup.ErrNotFound) {
		return fmt.Errorf("remove cgroup of pod %s: %w", p.meta.ID, err)
	}
	for _, d := range []string{p.meta.StateDir, p.meta.RootDir} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove pod dir: %w", err)
		}
	}
	if err := m.meta.delete("pods", p.meta.ID); err != nil {
		return err
	}
	if m.opts.Devices != nil {
		m.opts.Devices.Forget(p.meta.ID)
	}
	m.mu.Lock()
	delete(m.pods, p.meta.ID)
	m.mu.Unlock()
	m.podNames.release(podKey(&p.meta.Config))
	removed = true
	log.G(ctx).WithField("pod", p.meta.ID).Info("pod sandbox removed")
	return nil
}
