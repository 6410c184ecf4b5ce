package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/runtime/shim"
)

// containerClient returns the container and the shim of its pod.
func (m *Manager) containerClient(id string) (*container, shimConn, error) {
	c, err := m.getContainer(id)
	if err != nil {
		return nil, nil, err
	}
	client, err := m.podClient(c)
	if err != nil {
		return nil, nil, err
	}
	return c, client, nil
}

// podClient returns the shim of container c's pod.
func (m *Manager) podClient(c *container) (shimConn, error) {
	p, err := m.getPod(c.meta.PodID)
	if err != nil {
		return nil, err
	}
	return p.client()
}

// StartContainer starts a created container.
func (m *Manager) StartContainer(ctx context.Context, id string) error {
	c, client, err := m.containerClient(id)
	if err != nil {
		return err
	}
	if err := c.Update(func(s containerStatus) (containerStatus, error) {
		if s.Starting || s.Removing {
			return s, fmt.Errorf("container %s is being started or removed: %w", c.meta.ID, errdefs.ErrFailedPrecondition)
		}
		s.Starting = true
		return s, nil
	}); err != nil {
		return err
	}
	defer c.Update(func(s containerStatus) (containerStatus, error) {
		s.Starting = false
		return s, nil
	})
	resp, err := client.StartContainer(ctx, &shimv1.ContainerRequest{Id: c.meta.ID})
	if err != nil {
		return fmt.Errorf("start container %s: %w", c.meta.ID, err)
	}
	m.setRecord(c, shim.FromProto(resp.State))
	log.G(ctx).WithField("container", c.meta.ID).Info("container started")
	return nil
}

// StopContainer stops a running container: its stop signal, then SIGKILL
// after timeout. Stopping a container that is not running succeeds.
func (m *Manager) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	c, err := m.getContainer(id)
	if err != nil {
		return err
	}
	if c.Status().Record.State != shim.StateRunning {
		return nil
	}
	_, client, err := m.containerClient(id)
	if err != nil {
		// The pod is stopped: its containers are too.
		return nil
	}
	resp, err := client.StopContainer(ctx, &shimv1.StopContainerRequest{Id: c.meta.ID, TimeoutSeconds: int64(timeout / time.Second)})
	if err != nil {
		return fmt.Errorf("stop container %s: %w", c.meta.ID, err)
	}
	m.setRecord(c, shim.FromProto(resp.State))
	log.G(ctx).WithField("container", c.meta.ID).Info("container stopped")
	return nil
}

// RemoveContainer removes a container, killing it first when it runs. Its
// writable layer is released in the background.
func (m *Manager) RemoveContainer(ctx context.Context, id string) error {
	c, err := m.getContainer(id)
	if err != nil {
		return err
	}
	if err := c.Update(func(s containerStatus) (containerStatus, error) {
		if s.Removing {
			return s, fmt.Errorf("container %s is being removed: %w", c.meta.ID, errdefs.ErrFailedPrecondition)
		}
		s.Removing = true
		return s, nil
	}); err != nil {
		return err
	}
	// The shim tells the container's deletion when it removes it.
	shimTells := false
	if client, err := m.podClient(c); err == nil {
		_, err := client.RemoveContainer(ctx, &shimv1.ContainerRequest{Id: c.meta.ID})
		if err != nil && !errdefs.IsNotFound(err) {
			_ = c.Update(func(s containerStatus) (containerStatus, error) {
				s.Removing = false
				return s, nil
			})
			return fmt.Errorf("remove container %s: %w", c.meta.ID, err)
		}
		shimTells = err == nil
	}
	m.forgetContainer(ctx, c, shimTells)
	log.G(ctx).WithField("container", c.meta.ID).Info("container removed")
	return nil
}

// forgetContainer drops a container from the daemon's state. Its deletion
// is told by the pod's shim when shimTells (its event waits in m.gone, so
// that it is told after every earlier event of the pod), else now.
func (m *Manager) forgetContainer(ctx context.Context, c *container, shimTells bool) {
	if err := m.meta.delete("containers", c.meta.ID); err != nil {
		log.G(ctx).WithError(err).WithField("container", c.meta.ID).Warn("delete container metadata")
	}
	m.mu.Lock()
	_, known := m.ctrs[c.meta.ID]
	delete(m.ctrs, c.meta.ID)
	if known && !c.ev.deleted {
		if p := m.pods[c.meta.PodID]; p != nil && !shimTells {
			m.tellOwnLocked(p, EventDeleted, c, c.lastToldLocked())
		} else if p != nil {
			m.gone[c.meta.ID] = c
		}
	}
	m.mu.Unlock()
	if !known {
		return
	}
	m.ctrNames.release(ctrKey(c.meta.PodID, &c.meta.Config))
	if c.releaseImage != nil {
		c.releaseImage()
	}
}

// ContainerStatus returns what is known of container id.
func (m *Manager) ContainerStatus(id string) (ContainerInfo, error) {
	c, err := m.getContainer(id)
	if err != nil {
		return ContainerInfo{}, err
	}
	if c.Status().Creating {
		return ContainerInfo{}, fmt.Errorf("container %q is still being created: %w", c.meta.ID, errdefs.ErrNotFound)
	}
	return c.info(), nil
}

// ListContainers returns every container, oldest first, but those still
// being created.
func (m *Manager) ListContainers() []ContainerInfo {
	m.mu.RLock()
	cs := make([]*container, 0, len(m.ctrs))
	for _, c := range m.ctrs {
		cs = append(cs, c)
	}
	m.mu.RUnlock()
	sort.Slice(cs, func(i, j int) bool { return cs[i].meta.CreatedAt < cs[j].meta.CreatedAt })
	out := make([]ContainerInfo, 0, len(cs))
	for _, c := range cs {
		if !c.Status().Creating {
			out = append(out, c.info())
		}
	}
	return out
}

// ExecSyncResult is the outcome of a synchronous exec.
type ExecSyncResult struct {
	Stdout, Stderr []byte
	ExitCode       int32
}

// ExecSync runs cmd in a running container and waits for it; with a
// timeout, a process that runs longer is killed and the error wraps
// context.DeadlineExceeded.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (ExecSyncResult, error) {
	if len(cmd) == 0 {
		return ExecSyncResult{}, fmt.Errorf("exec: cmd is empty: %w", errdefs.ErrInvalidArgument)
	}
	c, client, err := m.containerClient(id)
	if err != nil {
		return ExecSyncResult{}, err
	}
	resp, err := client.ExecSync(ctx, &shimv1.ExecSyncRequest{Id: c.meta.ID, Cmd: cmd, TimeoutSeconds: int64(timeout / time.Second)})
	if err != nil {
		return ExecSyncResult{}, fmt.Errorf("exec in container %s: %w", c.meta.ID, err)
	}
	return ExecSyncResult{Stdout: resp.Stdout, Stderr: resp.Stderr, ExitCode: resp.ExitCode}, nil
}

// ReopenContainerLog makes the shim reopen a running container's log file.
func (m *Manager) ReopenContainerLog(ctx context.Context, id string) error {
	c, client, err := m.containerClient(id)
	if err != nil {
		return err
	}
	if _, err := client.ReopenLog(ctx, &shimv1.ContainerRequest{Id: c.meta.ID}); err != nil {
		return fmt.Errorf("reopen log of container %s: %w", c.meta.ID, err)
	}
	return nil
}

// UpdateContainerResources applies new cgroup limits to a created or
// running container, and to its later generations. r is translated as at
// creation (oci.LinuxResources, swap rule included). The running
// container's cgroup keeps a limit r leaves unset; later generations get
// r's limits only, as the kubelet always sends all of them. oom_score_adj,
// a process attribute fixed at creation, is not updated.
func (m *Manager) UpdateContainerResources(ctx context.Context, id string, r *oci.Resources) error {
	host, err := oci.ThisHost()
	if err != nil {
		return err
	}
	res, err := oci.LinuxResources(r, &host)
	if err != nil {
		return fmt.Errorf("update resources of container %s: %w", id, err)
	}
	c, client, err := m.containerClient(id)
	if err != nil {
		return err
	}
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	if _, err := client.UpdateResources(ctx, &shimv1.UpdateResourcesRequest{Id: c.meta.ID, Resources: data}); err != nil {
		return fmt.Errorf("update resources of container %s: %w", c.meta.ID, err)
	}
	c.mu.Lock()
	c.status.Resources = res
	entry := containerEntry{containerMeta: c.meta, Resources: res}
	err = m.meta.put("containers", c.meta.ID, &entry)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	log.G(ctx).WithField("container", c.meta.ID).Info("container resources updated")
	return nil
}

// setRecord stores a newer shim record of c.
func (m *Manager) setRecord(c *container, r shim.Record) {
	_ = c.Update(func(s containerStatus) (containerStatus, error) {
		if newer(r, s.Record) {
			s.Record = r
		}
		// A record of the shim's own (from its answer to the create,
		// or from its created event, which may come first) means the
		// shim has created the container.
		if r.State != shim.StateUnknown {
			s.Creating = false
		}
		return s, nil
	})
}

// newer tells whether record a is at least as recent as b: records of one
// container only move forward (created, running, exited, running again
// after an in-place restart).
func newer(a, b shim.Record) bool {
	if a.RestartCount != b.RestartCount {
		return a.RestartCount > b.RestartCount
	}
	return a.State >= b.State
}
