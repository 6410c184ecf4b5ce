package sandbox

import (
	"context"
	"time"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/shim"
)

// EventType says what happened to a container: the shim's own, which the
// daemon passes on.
type EventType = shim.EventType

const (
	EventCreated = shim.EventCreated
	EventStarted = shim.EventStarted
	EventStopped = shim.EventStopped
	EventDeleted = shim.EventDeleted
)

// Event is a container transition, for CRI GetContainerEvents.
type Event struct {
	Type      EventType
	Container ContainerInfo
	// Timestamp is when the transition happened, as the shim recorded it
	// (the daemon's clock when it published the event, for the events it
	// makes up itself), in nanoseconds.
	Timestamp int64
	// Pod and Containers are the pod and all its containers as the daemon
	// had them right after it applied the transition: every subscriber
	// gets this same snapshot, however late it reads the event. PodFound
	// is false when the pod was already gone.
	Pod        PodInfo
	Containers []ContainerInfo
	PodFound   bool
}

// eventBuffer is how far a subscriber may lag before it is cut off.
const eventBuffer = 8192

// Subscribe returns a channel of container events and its cancel function.
// The channel is closed when the subscriber is cancelled or falls behind.
func (m *Manager) Subscribe() (<-chan Event, func()) { return m.events.Subscribe() }

func (m *Manager) publish(t EventType, c *container) {
	m.publishAt(t, c, 0)
}

// publishAt publishes transition t of c that happened at ts (0: now), with
// the snapshot of c's pod taken now, after the transition was applied.
func (m *Manager) publishAt(t EventType, c *container, ts int64) {
	if ts == 0 {
		ts = time.Now().UnixNano()
	}
	e := Event{Type: t, Container: c.info(), Timestamp: ts}
	if pod, err := m.PodStatus(context.Background(), e.Container.PodID, false); err == nil {
		e.Pod, e.PodFound = pod, true
		e.Containers = m.PodContainers(pod.ID)
	}
	m.events.Publish(e)
}

// watch follows a pod's shim events until the shim goes away, keeping the
// containers' records current and publishing each transition.
func (m *Manager) watch(p *pod, client shimConn) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.Events(ctx, &shimv1.EventsRequest{})
	if err == nil {
		// Whatever happened before the subscription took effect.
		m.refresh(ctx, p, client)
		for {
			ev, err := stream.Recv()
			if err != nil {
				break
			}
			t := EventType(ev.Type)
			if t == EventDeleted {
				// RemoveContainer publishes it once the daemon has forgotten the container.
				continue
			}
			c, err := m.getContainer(ev.Container.Id)
			if err != nil {
				continue
			}
			m.setRecord(c, shim.FromProto(ev.Container))
			m.publishAt(t, c, ev.Timestamp)
		}
	}
	m.shimLost(p, client)
}

// refresh reads every container's record from the shim.
func (m *Manager) refresh(ctx context.Context, p *pod, client shimConn) {
	resp, err := client.ListContainers(ctx, &shimv1.ListContainersRequest{})
	if err != nil {
		return
	}
	for _, s := range resp.Containers {
		c, err := m.getContainer(s.Id)
		if err != nil {
			continue
		}
		before := c.Status().Record.State
		m.setRecord(c, shim.FromProto(s))
		if after := c.Status().Record.State; after != before {
			m.publish(after.Event(), c)
		}
	}
}

// shimLost handles the end of a pod's event stream. A shim whose process
// still runs is followed again; one that is gone died (StopPodSandbox, which
// makes the pod not ready first, handles its own shim's exit).
func (m *Manager) shimLost(p *pod, client shimConn) {
	p.mu.Lock()
	current := p.shim == client && p.status.State == PodReady
	p.mu.Unlock()
	if !current {
		return
	}
	if !client.Exited() {
		// The stream broke but the shim lives: follow it again.
		time.AfterFunc(100*time.Millisecond, func() { m.watch(p, client) })
		return
	}
	m.shimDied(p, client)
}
