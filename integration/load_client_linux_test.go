package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

// loadClient is one of TestLoad's clients, on a connection of its own.
type loadClient struct {
	lr  *loadRun
	id  int
	rt  runtimeapi.RuntimeServiceClient
	wp  warmpodv1.WarmpodClient
	rnd *rand.Rand
}

// Outcomes a call may have when another client got there first: the
// container or pod is gone (NotFound), is in a state the call does not
// apply to (FailedPrecondition), or its name is taken by a concurrent
// recreate (AlreadyExists).
var (
	lostRace     = []codes.Code{codes.NotFound, codes.FailedPrecondition}
	lostNameRace = []codes.Code{codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists}
)

// loadOps are what a client does, with their weights.
var loadOps = []struct {
	weight int
	do     func(c *loadClient, s *loadSlot, p *loadPod)
}{
	{10, (*loadClient).create},
	{6, (*loadClient).stop},
	{6, (*loadClient).remove},
	{10, (*loadClient).exec},
	{6, (*loadClient).reset},
	{14, (*loadClient).status},
	{14, (*loadClient).list},
	{14, (*loadClient).podStatus},
	{6, (*loadClient).stats},
	{6, (*loadClient).recreate},
	{1, (*loadClient).replacePod},
}

// step does one thing to a random pod.
func (c *loadClient) step() {
	s := c.lr.slots[c.rnd.IntN(len(c.lr.slots))]
	p := s.pod.Load()
	total := 0
	for _, o := range loadOps {
		total += o.weight
	}
	n := c.rnd.IntN(total)
	for _, o := range loadOps {
		if n < o.weight {
			o.do(c, s, p)
			return
		}
		n -= o.weight
	}
}

func target(p *loadPod, ctrID string) string {
	if ctrID == "" {
		return "pod " + short(p.id)
	}
	return fmt.Sprintf("pod %s container %s", short(p.id), short(ctrID))
}

// containers lists a pod's containers, those in state when it is set.
func (c *loadClient) containers(p *loadPod, state *runtimeapi.ContainerStateValue) []*runtimeapi.Container {
	var out []*runtimeapi.Container
	_ = c.lr.call("ListContainers(pod)", target(p, ""), nil, func(ctx context.Context) error {
		resp, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{
			Filter: &runtimeapi.ContainerFilter{PodSandboxId: p.id, State: state},
		})
		out = resp.GetContainers()
		return err
	})
	return out
}

func (c *loadClient) pick(p *loadPod, state runtimeapi.ContainerState, anyState bool) *runtimeapi.Container {
	var filter *runtimeapi.ContainerStateValue
	if !anyState {
		filter = &runtimeapi.ContainerStateValue{State: state}
	}
	cs := c.containers(p, filter)
	if len(cs) == 0 {
		return nil
	}
	return cs[c.rnd.IntN(len(cs))]
}

// create adds a container to the pod and starts it: a long-running one,
// or one that exits with 3 a moment after it starts. Its name is one of
// the pod's extra names (a pod's container names are fixed by its spec;
// the shim keeps a pre-created generation for each name), its attempt
// new.
func (c *loadClient) create(s *loadSlot, p *loadPod) {
	if len(c.containers(p, nil)) >= loadMaxContainers {
		c.remove(s, p)
		return
	}
	attempt := uint32(c.lr.attempts.Add(1))
	cfg := extraContainer(s, c.rnd.IntN(loadExtraNames), attempt, c.rnd.IntN(3) == 0)
	c.createStart(p, cfg, lostRace)
}

func (c *loadClient) createStart(p *loadPod, cfg *runtimeapi.ContainerConfig, allowed []codes.Code) {
	var id string
	err := c.lr.call("CreateContainer", target(p, ""), allowed, func(ctx context.Context) error {
		resp, err := c.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
		id = resp.GetContainerId()
		return err
	})
	if err != nil {
		return
	}
	_ = c.lr.call("StartContainer", target(p, id), lostRace, func(ctx context.Context) error {
		_, err := c.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
		return err
	})
}

func (c *loadClient) stop(_ *loadSlot, p *loadPod) {
	ctr := c.pick(p, runtimeapi.ContainerState_CONTAINER_RUNNING, false)
	if ctr == nil {
		return
	}
	_ = c.lr.call("StopContainer", target(p, ctr.Id), lostRace, func(ctx context.Context) error {
		_, err := c.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr.Id, Timeout: c.rnd.Int64N(2)})
		return err
	})
}

// remove removes a container, mostly an exited one: RemoveContainer of a
// running container kills it first.
func (c *loadClient) remove(_ *loadSlot, p *loadPod) {
	ctr := c.pick(p, runtimeapi.ContainerState_CONTAINER_EXITED, c.rnd.IntN(4) == 0)
	if ctr == nil {
		return
	}
	_ = c.lr.call("RemoveContainer", target(p, ctr.Id), lostRace, func(ctx context.Context) error {
		_, err := c.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr.Id})
		return err
	})
}

// exec runs a command in a running container. Killed meanwhile, it may end
// with a signal's exit code; when it ends with 0 its output must be whole.
func (c *loadClient) exec(_ *loadSlot, p *loadPod) {
	ctr := c.pick(p, runtimeapi.ContainerState_CONTAINER_RUNNING, false)
	if ctr == nil {
		return
	}
	word := fmt.Sprintf("load-%d-%d", c.id, c.rnd.Int())
	_ = c.lr.call("ExecSync", target(p, ctr.Id), lostRace, func(ctx context.Context) error {
		resp, err := c.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr.Id, Cmd: []string{"echo", word}, Timeout: 20})
		if err == nil && resp.ExitCode == 0 && string(resp.Stdout) != word+"\n" {
			c.lr.problem("ExecSync %s: exit 0 with stdout %q, want %q", target(p, ctr.Id), resp.Stdout, word+"\n")
		}
		return err
	})
}

func (c *loadClient) reset(_ *loadSlot, p *loadPod) {
	_ = c.lr.call("ResetPod", target(p, ""), lostRace, func(ctx context.Context) error {
		_, err := c.wp.ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: p.id})
		return err
	})
}

func (c *loadClient) status(_ *loadSlot, p *loadPod) {
	ctr := c.pick(p, 0, true)
	if ctr == nil {
		return
	}
	_ = c.lr.call("ContainerStatus", target(p, ctr.Id), lostRace, func(ctx context.Context) error {
		resp, err := c.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr.Id, Verbose: c.rnd.IntN(2) == 0})
		if err == nil && (resp.Status.Id != ctr.Id || resp.Status.State == runtimeapi.ContainerState_CONTAINER_UNKNOWN) {
			c.lr.problem("ContainerStatus %s: id %s state %s", target(p, ctr.Id), resp.Status.Id, resp.Status.State)
		}
		return err
	})
}

func (c *loadClient) list(_ *loadSlot, _ *loadPod) {
	switch c.rnd.IntN(3) {
	case 0:
		_ = c.lr.call("ListContainers", "all", nil, func(ctx context.Context) error {
			_, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			return err
		})
	case 1:
		_ = c.lr.call("ListContainers(state)", "running", nil, func(ctx context.Context) error {
			_, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
				State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
			}})
			return err
		})
	default:
		_ = c.lr.call("ListPodSandbox", "all", nil, func(ctx context.Context) error {
			_, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
			return err
		})
	}
}

func (c *loadClient) podStatus(_ *loadSlot, p *loadPod) {
	if c.rnd.IntN(3) == 0 {
		_ = c.lr.call("PodStatus (warmpod)", target(p, ""), lostRace, func(ctx context.Context) error {
			_, err := c.wp.PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: p.id})
			return err
		})
		return
	}
	_ = c.lr.call("PodSandboxStatus", target(p, ""), lostRace, func(ctx context.Context) error {
		resp, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id, Verbose: c.rnd.IntN(2) == 0})
		if err == nil && resp.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY && !p.replaced.Load() {
			c.lr.problem("PodSandboxStatus %s: %s while no client stopped it", target(p, ""), resp.Status.State)
		}
		return err
	})
}

func (c *loadClient) stats(_ *loadSlot, p *loadPod) {
	switch c.rnd.IntN(3) {
	case 0:
		ctr := c.pick(p, 0, true)
		if ctr == nil {
			return
		}
		_ = c.lr.call("ContainerStats", target(p, ctr.Id), lostRace, func(ctx context.Context) error {
			_, err := c.rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: ctr.Id})
			return err
		})
	case 1:
		_ = c.lr.call("ListContainerStats", target(p, ""), nil, func(ctx context.Context) error {
			_, err := c.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: p.id}})
			return err
		})
	default:
		_ = c.lr.call("PodSandboxStats", target(p, ""), lostRace, func(ctx context.Context) error {
			_, err := c.rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: p.id})
			return err
		})
	}
}

// recreate restarts one of the pod's base containers the kubelet's way:
// StopContainer with no grace, RemoveContainer, then CreateContainer with
// the next attempt (served from the pre-created generation when it is
// ready) and StartContainer.
func (c *loadClient) recreate(s *loadSlot, p *loadPod) {
	base := baseContainers(s)
	cfg := base[c.rnd.IntN(len(base))]
	name := cfg.Metadata.Name
	var old *runtimeapi.Container
	for _, ctr := range c.containers(p, nil) {
		if ctr.Metadata.GetName() == name && (old == nil || ctr.Metadata.Attempt > old.Metadata.Attempt) {
			old = ctr
		}
	}
	if old != nil {
		cfg.Metadata.Attempt = old.Metadata.Attempt + 1
		if c.lr.call("StopContainer", target(p, old.Id), lostRace, func(ctx context.Context) error {
			_, err := c.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: old.Id, Timeout: 0})
			return err
		}) != nil {
			return
		}
		if c.lr.call("RemoveContainer", target(p, old.Id), lostRace, func(ctx context.Context) error {
			_, err := c.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: old.Id})
			return err
		}) != nil {
			return
		}
	}
	cfg.Annotations = map[string]string{"io.kubernetes.container.restartCount": fmt.Sprint(cfg.Metadata.Attempt)}
	cfg.LogPath = fmt.Sprintf("%s-%d.log", name, cfg.Metadata.Attempt)
	c.createStart(p, cfg, lostNameRace)
}

// replacePod stops and removes the slot's pod and runs a new one in its
// place, while the other clients go on using the old one's id.
func (c *loadClient) replacePod(s *loadSlot, p *loadPod) {
	if !s.churn.TryLock() {
		return
	}
	defer s.churn.Unlock()
	if s.pod.Load() != p {
		return
	}
	p.replaced.Store(true)
	if c.lr.call("StopPodSandbox", target(p, ""), nil, func(ctx context.Context) error {
		_, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id})
		return err
	}) != nil {
		return
	}
	if c.lr.call("RemovePodSandbox", target(p, ""), nil, func(ctx context.Context) error {
		_, err := c.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id})
		return err
	}) != nil {
		return
	}
	cfg := c.lr.podConfig(s)
	np := &loadPod{cfg: cfg}
	if c.lr.call("RunPodSandbox", "slot "+fmt.Sprint(s.n), nil, func(ctx context.Context) error {
		resp, err := c.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		np.id = resp.GetPodSandboxId()
		return err
	}) != nil {
		return
	}
	c.lr.podMu.Lock()
	c.lr.podIDs = append(c.lr.podIDs, np.id)
	c.lr.podMu.Unlock()
	for _, cfg := range baseContainers(s) {
		c.createStart(np, cfg, lostRace)
	}
	s.pod.Store(np)
}

// eventLog is what the subscribers saw: the last event of every container
// as the persistent subscriber had it, and counts.
type eventLog struct {
	mu   sync.Mutex
	last map[string]*runtimeapi.ContainerEventResponse
	// podOf is each container's pod, from the events that carry it.
	podOf map[string]string
	n     int
	// persistentEnded is set when the persistent subscriber's stream ended
	// before the run closed it.
	persistentEnded error
	others          int // events the reconnecting subscribers read
	subscriptions   int
	stop            chan struct{}
}

func newEventLog() *eventLog {
	return &eventLog{
		last: map[string]*runtimeapi.ContainerEventResponse{}, podOf: map[string]string{},
		stop: make(chan struct{}),
	}
}

func (e *eventLog) stopOthers() { close(e.stop) }

// subscribe follows GetContainerEvents. The persistent subscriber keeps
// one stream for the whole run and records every container's last event;
// the others subscribe, read a few events and cancel, again and again.
func (c *loadClient) subscribe(ctx context.Context, persistent bool) {
	ev := c.lr.events
	for {
		sctx, cancel := context.WithCancel(ctx)
		if !persistent {
			sctx, cancel = context.WithTimeout(ctx, time.Duration(1+c.rnd.IntN(4))*time.Second)
		}
		stream, err := c.rt.GetContainerEvents(sctx, &runtimeapi.GetEventsRequest{})
		if err != nil {
			cancel()
			c.lr.problem("GetContainerEvents: %v", err)
			return
		}
		ev.mu.Lock()
		ev.subscriptions++
		ev.mu.Unlock()
		read := 0
		want := 1 + c.rnd.IntN(200)
		for persistent || read < want {
			e, err := stream.Recv()
			if err != nil {
				if persistent && ctx.Err() == nil {
					ev.mu.Lock()
					ev.persistentEnded = err
					ev.mu.Unlock()
				}
				break
			}
			read++
			ev.mu.Lock()
			if persistent {
				ev.n++
				ev.last[e.ContainerId] = e
				if ps := e.PodSandboxStatus; ps != nil {
					ev.podOf[e.ContainerId] = ps.Id
				}
			} else {
				ev.others++
			}
			ev.mu.Unlock()
		}
		cancel()
		if persistent || ctx.Err() != nil {
			return
		}
		select {
		case <-ev.stop:
			return
		default:
		}
	}
}
