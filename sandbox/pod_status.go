package sandbox

import (
	"context"
	"fmt"
	"sort"
	"time"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/shim"
)

func (p *pod) info() PodInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := PodInfo{
		ID:         p.meta.ID,
		Config:     p.meta.Config,
		CreatedAt:  p.meta.CreatedAt,
		State:      p.status.State,
		IPs:        p.meta.IPs,
		NetNSPath:  p.meta.NS.Net,
		CgroupPath: p.meta.CgroupPath,
	}
	if p.shim != nil {
		i.ShimPid = p.shim.Pid()
	}
	return i
}

// PodStatus returns what is known of pod id. With live set it also asks the
// pod's shim for its reset condition and, in Live, its containers' current
// records: the truth of the moment, transient states of a reset included,
// and warm-generation flags, which change without an event. Live records do
// not update what CRI reports: a restart the shim does itself is published
// only where it ends (runtime/shim/service).
func (m *Manager) PodStatus(ctx context.Context, id string, live bool) (PodInfo, error) {
	p, err := m.getPod(id)
	if err != nil {
		return PodInfo{}, err
	}
	info := p.info()
	if live {
		if client, err := p.client(); err == nil {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if resp, err := client.Info(ctx, &shimv1.InfoRequest{}); err == nil {
				info.ShimPid = int(resp.Pid)
				info.Restarting = resp.AllContainersRestarting
				info.Resets = resp.Resets
				info.Precreating = resp.Precreating
			}
			if resp, err := client.ListContainers(ctx, &shimv1.ListContainersRequest{}); err == nil {
				for _, st := range resp.Containers {
					c, err := m.getContainer(st.Id)
					if err != nil {
						continue
					}
					ci := c.info()
					ci.Status = shim.FromProto(st)
					info.Live = append(info.Live, ci)
				}
				sort.Slice(info.Live, func(i, j int) bool { return info.Live[i].CreatedAt < info.Live[j].CreatedAt })
			}
		}
	}
	return info, nil
}

// ListPods returns every pod, oldest first.
func (m *Manager) ListPods() []PodInfo {
	m.mu.RLock()
	ps := make([]*pod, 0, len(m.pods))
	for _, p := range m.pods {
		ps = append(ps, p)
	}
	m.mu.RUnlock()
	sort.Slice(ps, func(i, j int) bool { return ps[i].meta.CreatedAt < ps[j].meta.CreatedAt })
	out := make([]PodInfo, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.info())
	}
	return out
}

// PodContainers returns the containers of pod id, oldest first, but those
// still being created.
func (m *Manager) PodContainers(id string) []ContainerInfo {
	cs := m.podContainers(id)
	out := make([]ContainerInfo, 0, len(cs))
	for _, c := range cs {
		if !c.Status().Creating {
			out = append(out, c.info())
		}
	}
	return out
}

// ResetResult is the outcome of a pod reset.
type ResetResult struct {
	Containers []ContainerInfo
	Duration   time.Duration
}

// ResetPod restarts every container of a pod in place (the shim's Reset, in
// runtime/shim/service) and returns once the main containers run again.
func (m *Manager) ResetPod(ctx context.Context, id string) (ResetResult, error) {
	p, err := m.getPod(id)
	if err != nil {
		return ResetResult{}, err
	}
	client, err := p.client()
	if err != nil {
		return ResetResult{}, err
	}
	resp, err := client.ResetPod(ctx, &shimv1.ResetPodRequest{})
	if err != nil {
		return ResetResult{}, fmt.Errorf("reset pod %s: %w", p.meta.ID, err)
	}
	var res ResetResult
	res.Duration = time.Duration(resp.DurationNs)
	for _, s := range resp.Containers {
		c, err := m.getContainer(s.Id)
		if err != nil {
			continue
		}
		m.setRecord(c, shim.FromProto(s))
		res.Containers = append(res.Containers, c.info())
	}
	return res, nil
}
