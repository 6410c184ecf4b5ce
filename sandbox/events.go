package sandbox

import (
	"cmp"
	"context"
	"slices"
	"sort"
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

// Event is a container transition, for CRI GetContainerEvents, with the
// state of its pod right after it.
//
// The daemon takes that state when it applies the transition, under the
// manager's lock, so every subscriber gets the same, and each event's
// state is the one before it with the event's transition applied: Pod is
// the pod, and Containers are its containers as the pod's events have told
// of them, oldest first. A container the daemon knows of but no event has
// told of yet (the shim is still creating it) is not among them, nor is a
// container once its deletion has been told, not even in its own DELETED
// event.
//
// A pod's events come in the order of their timestamps (the pod's shim
// publishes them so, and the daemon applies them in the order it gets
// them), so a subscriber that keeps what the newest event of each pod said
// ends with the pod's state.
type Event struct {
	Type EventType
	// Container is the container, as the transition left it.
	Container ContainerInfo
	// Timestamp is when the transition happened, by the shim's clock: the
	// container's CreatedAt, Status.StartedAt or Status.FinishedAt for a
	// created, started or stopped event.
	Timestamp  int64
	Pod        PodInfo
	Containers []ContainerInfo
}

// eventView is a container as its pod's events have told of it.
type eventView struct {
	// rec is the record of the last event told of the container, at
	// stamp; told says there was one.
	rec   shim.Record
	stamp int64
	told  bool
	// deleted is set once its deletion has been told.
	deleted bool
}

// eventBuffer is how far a subscriber may lag before it is cut off.
const eventBuffer = 8192

// Subscribe returns a channel of container events and its cancel function.
// The channel is closed when the subscriber is cancelled or falls behind.
func (m *Manager) Subscribe() (<-chan Event, func()) { return m.events.Subscribe() }

// tellLocked applies event t of container c of pod p, after which c's
// record is rec, and publishes it with the pod's state. An event of c no
// later than the last one told of it is one told already (the shim's
// stream and a refresh tell the same transitions), and is dropped.
// Preconditions: m.mu held for writing.
func (m *Manager) tellLocked(p *pod, t EventType, c *container, rec shim.Record, stamp int64) {
	if t == EventDeleted {
		if c.ev.deleted {
			return
		}
		c.ev.deleted = true
	} else {
		if c.ev.deleted || (c.ev.told && stamp <= c.ev.stamp) {
			return
		}
		c.ev.rec, c.ev.stamp, c.ev.told = rec, stamp, true
	}
	p.evStamp = max(p.evStamp, stamp)
	m.events.Publish(Event{
		Type:       t,
		Container:  c.infoWith(rec),
		Timestamp:  stamp,
		Pod:        p.info(),
		Containers: m.toldLocked(p.meta.ID),
	})
}

// tellOwnLocked is tellLocked for an event the daemon tells itself, the
// pod's shim being gone or not knowing the container: it is stamped now
// (a deletion) or at the time rec keeps of it, moved to just after the
// pod's last event when that is later. It returns rec with that time.
// Preconditions: m.mu held for writing.
func (m *Manager) tellOwnLocked(p *pod, t EventType, c *container, rec shim.Record) shim.Record {
	ts := rec.Time(t)
	if t == EventDeleted {
		ts = nowNanos()
	}
	if ts <= p.evStamp {
		ts = p.evStamp + 1
		rec.SetTime(t, ts)
	}
	m.tellLocked(p, t, c, rec, ts)
	return rec
}

// toldLocked returns the containers of pod id as its events have told of
// them (eventView), oldest first.
// Preconditions: m.mu held.
func (m *Manager) toldLocked(id string) []ContainerInfo {
	var cs []*container
	for _, c := range m.ctrs {
		if c.meta.PodID == id && c.ev.told && !c.ev.deleted {
			cs = append(cs, c)
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].meta.CreatedAt < cs[j].meta.CreatedAt })
	out := make([]ContainerInfo, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.infoWith(c.ev.rec))
	}
	return out
}

// lastToldLocked is c's record as last told, or as the daemon has it when
// nothing was told of c.
// Preconditions: m.mu held.
func (c *container) lastToldLocked() shim.Record {
	if c.ev.told {
		return c.ev.rec
	}
	return c.Status().Record
}

// pendingEvent is an event of container c not yet told.
type pendingEvent struct {
	c *container
	e shim.Event
}

// catchUpLocked returns the events that tell c's transitions from its last
// told record to rec (shim.Transitions).
// Preconditions: m.mu held.
func catchUpLocked(c *container, rec shim.Record) []pendingEvent {
	var from *shim.Record
	if c.ev.told {
		from = &c.ev.rec
	}
	var out []pendingEvent
	for _, e := range shim.Transitions(from, rec) {
		out = append(out, pendingEvent{c, e})
	}
	return out
}

// sortEvents orders events of several containers by their time.
func sortEvents(evs []pendingEvent) {
	slices.SortStableFunc(evs, func(a, b pendingEvent) int {
		return cmp.Compare(a.e.Timestamp, b.e.Timestamp)
	})
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
			m.mu.Lock()
			m.applyLocked(p, ev)
			m.mu.Unlock()
		}
	}
	m.shimLost(p, client)
}

// applyLocked applies an event of pod p's shim.
// Preconditions: m.mu held for writing.
func (m *Manager) applyLocked(p *pod, ev *shimv1.Event) {
	id := ev.GetContainer().GetId()
	t := EventType(ev.Type)
	c := m.ctrs[id]
	if t == EventDeleted && c == nil {
		// Removed by the daemon already, its deletion waiting for this.
		c = m.gone[id]
		delete(m.gone, id)
	}
	if c == nil || c.meta.PodID != p.meta.ID {
		return
	}
	if t == EventDeleted {
		m.tellLocked(p, t, c, c.lastToldLocked(), ev.Timestamp)
		return
	}
	rec := shim.FromProto(ev.Container)
	// The status follows the shim's record as it was when the event was
	// sent: the exit before an in-place restart is told after the new run
	// started, and a status read between that event and the next must not
	// show the container exited (the kubelet would start it again).
	cur := rec
	if ev.Current != nil {
		cur = shim.FromProto(ev.Current)
	}
	m.setRecord(c, cur)
	m.tellLocked(p, t, c, rec, ev.Timestamp)
}

// refresh reads every container's record from the shim and tells what the
// pod's events have not told yet (the shim's stream was down, or the
// daemon restarted), in the order it happened: a container that started
// and exited meanwhile is told started, then stopped. A container the
// daemon removed whose deletion the shim has not told is told deleted.
func (m *Manager) refresh(ctx context.Context, p *pod, client shimConn) {
	resp, err := client.ListContainers(ctx, &shimv1.ListContainersRequest{})
	if err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	inShim := make(map[string]bool, len(resp.Containers))
	var evs []pendingEvent
	for _, s := range resp.Containers {
		inShim[s.Id] = true
		c := m.ctrs[s.Id]
		if c == nil || c.meta.PodID != p.meta.ID {
			continue
		}
		r := shim.FromProto(s)
		m.setRecord(c, r)
		evs = append(evs, catchUpLocked(c, r)...)
	}
	sortEvents(evs)
	for _, pe := range evs {
		m.tellLocked(p, pe.e.Type, pe.c, pe.e.Container, pe.e.Timestamp)
	}
	m.tellGoneLocked(p, func(id string) bool { return !inShim[id] })
}

// tellGoneLocked tells the deletion of pod p's containers the daemon
// removed and whose deletion the shim has not told, those of them that
// which selects.
// Preconditions: m.mu held for writing.
func (m *Manager) tellGoneLocked(p *pod, which func(id string) bool) {
	var gone []*container
	for id, c := range m.gone {
		if c.meta.PodID == p.meta.ID && which(id) {
			gone = append(gone, c)
			delete(m.gone, id)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].meta.CreatedAt < gone[j].meta.CreatedAt })
	for _, c := range gone {
		m.tellOwnLocked(p, EventDeleted, c, c.lastToldLocked())
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
