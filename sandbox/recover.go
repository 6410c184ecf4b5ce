package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"

	"github.com/containerd/log"
	"github.com/warmpod/warmpod/runtime/shim"
	shimclient "github.com/warmpod/warmpod/runtime/shim/client"
)

// recover rebuilds the daemon's state from the metadata on disk and the
// running shims. A pod whose shim answers is ready again, with its
// containers' records as the shim has them (exits that happened while the
// daemon was down included); a pod whose shim is gone is not ready, and its
// containers are what the shim's records on disk say.
func (m *Manager) recover(ctx context.Context) error {
	for _, err := range m.meta.load("pods", func(data []byte) error {
		var meta podMeta
		if err := json.Unmarshal(data, &meta); err != nil {
			return err
		}
		p := &pod{meta: meta, status: podStatus{State: PodNotReady}}
		m.pods[meta.ID] = p
		return m.podNames.reserve(podKey(&meta.Config), meta.ID)
	}) {
		log.G(ctx).WithError(err).Warn("recover pod")
	}
	for _, err := range m.meta.load("containers", func(data []byte) error {
		var entry containerEntry
		if err := json.Unmarshal(data, &entry); err != nil {
			return err
		}
		meta := entry.containerMeta
		if _, ok := m.pods[meta.PodID]; !ok {
			// Its pod was removed while the container's removal did not finish.
			return m.meta.delete("containers", meta.ID)
		}
		c := &container{meta: meta}
		c.status.Resources = entry.Resources
		c.status.Record = shim.Record{ID: meta.ID, Name: meta.Config.Name, CreatedAt: meta.CreatedAt, LogPath: meta.LogPath}
		if release, err := m.opts.Images.Retain(meta.ImageID); err == nil {
			c.releaseImage = release
		} else {
			log.G(ctx).WithError(err).WithField("container", meta.ID).Warn("image of container is gone")
		}
		if release, err := m.vols.adopt(meta.PodID, meta.Config.Spec.Mounts); err == nil {
			c.releaseImage = both(c.releaseImage, release)
		} else {
			log.G(ctx).WithError(err).WithField("container", meta.ID).Warn("image volume of container is gone")
		}
		m.ctrs[meta.ID] = c
		return m.ctrNames.reserve(ctrKey(meta.PodID, &meta.Config), meta.ID)
	}) {
		log.G(ctx).WithError(err).Warn("recover container")
	}
	for _, p := range m.pods {
		// A daemon before this one may have left the pod's directories open
		// to host users.
		userNS, _ := podUserNS(&p.meta.Config)
		for _, d := range []string{p.meta.StateDir, p.meta.RootDir} {
			if err := closePodDir(d, userNS); err != nil && !errors.Is(err, fs.ErrNotExist) {
				m.log.WithError(err).WithField("pod", p.meta.ID).Warn("recover pod")
			}
		}
		if p.meta.Stopped {
			m.syncFromRecords(ctx, p)
			continue
		}
		client, err := m.shims.connect(ctx, p.meta.StateDir)
		if err == nil {
			p.shim = client
			p.status.State = PodReady
			m.refresh(ctx, p, client)
			go m.watch(p, client)
			continue
		}
		l := log.G(ctx).WithField("pod", p.meta.ID)
		if !errors.Is(err, shimclient.ErrGone) {
			// The shim may run, but it cannot be held: its pod is not
			// ready, and StopPodSandbox will try again.
			l.WithError(err).Error("reconnect to the pod's shim")
			continue
		}
		l.WithError(err).Warn("shim of pod died while the daemon was down; killing the processes it left")
		if err := m.reapPod(ctx, p); err != nil {
			l.WithError(err).Error("kill what the dead shim left")
		}
	}
	m.vols.prune()
	log.G(ctx).Infof("recovered %d pods and %d containers", len(m.pods), len(m.ctrs))
	return nil
}
