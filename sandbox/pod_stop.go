package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

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
	p.shim = nil
	p.status.State = PodNotReady
	p.mu.Unlock()

	if client != nil {
		m.shutdownShim(ctx, client)
	}
	// The shim recorded every exit before it went; take the final word.
	m.syncFromRecords(ctx, p)

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

// shutdownShim asks a shim to kill its containers and exit, and waits a
// while until it has: the shim lives in the pod's cgroup, which can only be
// removed once it is empty.
func (m *Manager) shutdownShim(ctx context.Context, c shimConn) {
	m.retireShim(ctx, c)
	exited, err := c.ShutdownWait(ctx, shimExitTimeout)
	c.Close()
	switch {
	case err != nil && !errdefs.IsUnavailable(err):
		log.G(ctx).WithError(err).Warn("shut down shim")
	case err == nil && !exited:
		log.G(ctx).WithField("pid", c.Pid()).Warnf("shim still running %s after shutting down", shimExitTimeout)
	}
}

// shimExitTimeout bounds the wait for a shim told to shut down.
const shimExitTimeout = 10 * time.Second

// syncFromRecords updates the pod's containers from the records its shim
// left on disk. A container the records show as created or running has lost
// its shim: what became of it cannot be known, so it is reported exited with
// reason Unknown.
func (m *Manager) syncFromRecords(ctx context.Context, p *pod) {
	recs, err := shim.ReadRecords(p.meta.StateDir)
	if err != nil {
		log.G(ctx).WithError(err).WithField("pod", p.meta.ID).Warn("read container records")
	}
	byID := make(map[string]shim.Record, len(recs))
	for _, r := range recs {
		byID[r.ID] = r
	}
	for _, c := range m.podContainers(p.meta.ID) {
		var changed bool
		_ = c.Update(func(s containerStatus) (containerStatus, error) {
			r, ok := byID[c.meta.ID]
			if !ok {
				r = s.Record
			}
			if r.State == shim.StateCreated || r.State == shim.StateRunning || r.State == shim.StateUnknown {
				r.State = shim.StateExited
				r.Reason = shim.ReasonUnknown
				r.ExitCode = 255
				r.Message = "the container's shim is gone"
				if r.FinishedAt == 0 {
					r.FinishedAt = nowNanos()
				}
			}
			changed = r.State != s.Record.State
			s.Record = r
			return s, nil
		})
		if changed {
			m.publish(EventStopped, c)
		}
	}
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
		m.forgetContainer(ctx, c)
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
