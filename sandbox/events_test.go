package sandbox

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/shim"
)

// nextEvent returns the next event of ch. The deadline only guards against
// a hang.
func nextEvent(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("the subscription ended")
		}
		return e
	case <-time.After(30 * time.Second):
		t.Fatal("no event came")
	}
	return Event{}
}

// shimEvent is an event of the pod's shim: container id (named name) in
// state st after a transition at ts, in run n (created at 100, started at
// 200, exited at 300 unless the transition says otherwise).
func shimEvent(t EventType, id, name string, st shim.State, n uint32, ts int64) *shimv1.Event {
	r := shim.Record{ID: id, Name: name, State: st, CreatedAt: 100, RestartCount: n}
	if st >= shim.StateRunning {
		r.StartedAt = 200
	}
	if st == shim.StateExited {
		r.FinishedAt = 300
	}
	if t != EventDeleted {
		r.SetTime(t, ts)
	}
	return &shimv1.Event{Type: shimv1.EventType(t), Container: shim.ToProto(r), Timestamp: ts}
}

// eventPod is a pod of the fake world with its shim, and a subscription.
type eventPod struct {
	w    *fakeWorld
	id   string
	shim *fakeShimConn
	ch   <-chan Event
}

func newEventPod(t *testing.T) *eventPod {
	t.Helper()
	w := newFakeWorld(t)
	id, err := w.m.RunPod(context.Background(), podConfig("web"))
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel := w.m.Subscribe()
	t.Cleanup(cancel)
	p := &eventPod{w: w, id: id, shim: w.shims.get(w.m.podStateDir(id)), ch: ch}
	// Taken once the watcher has read the shim's records (refresh) and
	// follows its stream; of no container, it is dropped.
	p.shim.send(&shimv1.Event{Type: shimv1.EventType_EVENT_CREATED, Container: &shimv1.ContainerState{Id: "none"}, Timestamp: 1})
	return p
}

func (p *eventPod) create(t *testing.T, name string) string {
	t.Helper()
	id, err := p.w.m.CreateContainer(context.Background(), p.id, containerConfig(name))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// statesOf is the containers of an event as "name state runN" strings.
func statesOf(e Event) []string {
	var out []string
	for _, c := range e.Containers {
		out = append(out, fmt.Sprintf("%s %s run%d", c.Config.Name, c.Status.State, c.Status.RestartCount))
	}
	return out
}

// Each event carries the pod's state right after its transition, taken
// when the daemon applied it: the same for every subscriber, whenever it
// reads it, and with the event's time, the shim's.
func TestEventSnapshot(t *testing.T) {
	p := newEventPod(t)
	other, cancel := p.w.m.Subscribe()
	defer cancel()
	a := p.create(t, "a")
	// b is indexed, and its shim has not told of it yet.
	b := p.create(t, "b")

	p.shim.send(shimEvent(EventCreated, a, "a", shim.StateCreated, 0, 100))
	p.shim.send(shimEvent(EventStarted, a, "a", shim.StateRunning, 0, 200))
	p.shim.send(shimEvent(EventStopped, a, "a", shim.StateExited, 0, 300))
	want := []struct {
		t      EventType
		ts     int64
		states []string
	}{
		{EventCreated, 100, []string{"a created run0"}},
		{EventStarted, 200, []string{"a running run0"}},
		{EventStopped, 300, []string{"a exited run0"}},
	}
	for i, w := range want {
		e := nextEvent(t, p.ch)
		if e.Type != w.t || e.Timestamp != w.ts || e.Container.ID != a {
			t.Errorf("event %d: %s of %s at %d, want %s of a at %d", i, e.Type, e.Container.Config.Name, e.Timestamp, w.t, w.ts)
		}
		if got := statesOf(e); fmt.Sprint(got) != fmt.Sprint(w.states) {
			t.Errorf("event %d (%s) lists %v, want %v (and never b, which no event told of)", i, e.Type, got, w.states)
		}
		if e.Container.Status.Time(e.Type) != e.Timestamp {
			t.Errorf("event %d at %d, its container's status says %d", i, e.Timestamp, e.Container.Status.Time(e.Type))
		}
		if e.Pod.ID != p.id || e.Pod.State != PodReady {
			t.Errorf("event %d: pod %+v", i, e.Pod)
		}
		if o := nextEvent(t, other); !reflect.DeepEqual(o, e) {
			t.Errorf("event %d differs between subscribers:\n%+v\n%+v", i, e, o)
		}
	}
	// Once its shim tells of b, b is listed.
	p.shim.send(shimEvent(EventCreated, b, "b", shim.StateCreated, 0, 400))
	if e := nextEvent(t, p.ch); e.Container.ID != b || fmt.Sprint(statesOf(e)) != fmt.Sprint([]string{"a exited run0", "b created run0"}) {
		t.Errorf("b's created event: %s of %s lists %v", e.Type, e.Container.Config.Name, statesOf(e))
	}
	// What the daemon reports of a container is what its last event said.
	if info, _ := p.w.m.ContainerStatus(a); info.Status.State != shim.StateExited || info.CreatedAt != 100 || info.Status.FinishedAt != 300 {
		t.Errorf("ContainerStatus(a) = created %d, %+v", info.CreatedAt, info.Status)
	}
}

// A DELETED event names the removed container, lists only the others, and
// comes after every earlier event of the pod's shim, whichever of the
// shim's event and the daemon's own removal comes first.
func TestDeletedEvent(t *testing.T) {
	p := newEventPod(t)
	ctx := context.Background()
	a, b := p.create(t, "a"), p.create(t, "b")
	p.shim.send(shimEvent(EventCreated, a, "a", shim.StateCreated, 0, 100))
	p.shim.send(shimEvent(EventCreated, b, "b", shim.StateCreated, 0, 200))
	nextEvent(t, p.ch)
	nextEvent(t, p.ch)

	// The daemon removes a first: its deletion waits for the shim's event.
	if err := p.w.m.RemoveContainer(ctx, a); err != nil {
		t.Fatal(err)
	}
	p.shim.send(shimEvent(EventStarted, b, "b", shim.StateRunning, 0, 300))
	if e := nextEvent(t, p.ch); e.Type != EventStarted || e.Container.ID != b {
		t.Fatalf("got %s of %s, want b's start, told before a's deletion", e.Type, e.Container.Config.Name)
	} else if got := statesOf(e); fmt.Sprint(got) != "[b running run0]" {
		t.Errorf("b's start lists %v: a is removed", got)
	}
	p.shim.send(shimEvent(EventDeleted, a, "a", shim.StateCreated, 0, 400))
	e := nextEvent(t, p.ch)
	if e.Type != EventDeleted || e.Container.ID != a || e.Timestamp != 400 {
		t.Fatalf("got %s of %s at %d, want a's deletion at 400", e.Type, e.Container.Config.Name, e.Timestamp)
	}
	if got := statesOf(e); fmt.Sprint(got) != "[b running run0]" {
		t.Errorf("a's deletion lists %v, want b alone", got)
	}

	// The shim tells of b's removal before the daemon's call returns: b
	// leaves the list at once, and is told deleted once.
	p.shim.send(shimEvent(EventDeleted, b, "b", shim.StateRunning, 0, 500))
	if e := nextEvent(t, p.ch); e.Type != EventDeleted || e.Container.ID != b || len(e.Containers) != 0 {
		t.Fatalf("got %s of %s listing %v, want b's deletion listing nothing", e.Type, e.Container.Config.Name, statesOf(e))
	}
	if err := p.w.m.RemoveContainer(ctx, b); err != nil {
		t.Fatal(err)
	}
	c := p.create(t, "c")
	p.shim.send(shimEvent(EventCreated, c, "c", shim.StateCreated, 0, 600))
	if e := nextEvent(t, p.ch); e.Container.ID != c {
		t.Errorf("got %s of %s, want c's creation (b's deletion was told already)", e.Type, e.Container.Config.Name)
	}
}

// After the shim's stream was down, what happened meanwhile is told in the
// order it happened, and the stream's copies of it are not told again.
func TestRefreshCatchesUp(t *testing.T) {
	p := newEventPod(t)
	ctx := context.Background()
	a := p.create(t, "a")
	p.shim.send(shimEvent(EventCreated, a, "a", shim.StateCreated, 0, 100))
	nextEvent(t, p.ch)
	// Meanwhile a started and exited at once (the shim's records), and b
	// was created and started.
	b := p.create(t, "b")
	ra := shim.Record{ID: a, Name: "a", State: shim.StateExited, CreatedAt: 100, StartedAt: 200, FinishedAt: 210, ExitCode: 3, Reason: shim.ReasonError}
	rb := shim.Record{ID: b, Name: "b", State: shim.StateRunning, CreatedAt: 150, StartedAt: 205}
	p.shim.set(shim.ToProto(ra))
	p.shim.set(shim.ToProto(rb))
	pd, _ := p.w.m.getPod(p.id)
	p.w.m.refresh(ctx, pd, p.shim)
	want := []string{"created b 150", "started a 200", "started b 205", "stopped a 210"}
	var got []string
	for range want {
		e := nextEvent(t, p.ch)
		got = append(got, fmt.Sprintf("%s %s %d", e.Type, e.Container.Config.Name, e.Timestamp))
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("refresh told %v, want %v", got, want)
	}
	// The stream's own copy of a's exit is not told again.
	p.shim.send(shimEvent(EventStopped, a, "a", shim.StateExited, 0, 210))
	p.shim.send(shimEvent(EventStopped, b, "b", shim.StateExited, 0, 220))
	if e := nextEvent(t, p.ch); e.Container.ID != b || e.Timestamp != 220 {
		t.Errorf("got %s of %s at %d, want b's exit at 220", e.Type, e.Container.Config.Name, e.Timestamp)
	}
}

// When the pod's shim is gone the daemon tells what it knows itself: the
// running containers' end, after every event told, and the deletion of a
// container the shim was to tell.
func TestShimGoneTellsTheEnd(t *testing.T) {
	p := newEventPod(t)
	ctx := context.Background()
	a, b := p.create(t, "a"), p.create(t, "b")
	p.shim.send(shimEvent(EventCreated, a, "a", shim.StateCreated, 0, 100))
	p.shim.send(shimEvent(EventStarted, a, "a", shim.StateRunning, 0, 200))
	p.shim.send(shimEvent(EventCreated, b, "b", shim.StateCreated, 0, 300))
	for range 3 {
		nextEvent(t, p.ch)
	}
	if err := p.w.m.RemoveContainer(ctx, b); err != nil {
		t.Fatal(err)
	}
	// The shim's last record of a is older than the events told.
	p.shim.set(shim.ToProto(shim.Record{ID: a, Name: "a", State: shim.StateRunning, CreatedAt: 100, StartedAt: 200}))
	writeRecords(t, p.w.m.podStateDir(p.id), shim.Record{ID: a, Name: "a", State: shim.StateRunning, CreatedAt: 100, StartedAt: 200})
	p.shim.kill()
	e := nextEvent(t, p.ch)
	if e.Type != EventStopped || e.Container.ID != a || e.Timestamp <= 300 || e.Container.Status.FinishedAt != e.Timestamp {
		t.Fatalf("got %s of %s at %d (finished %d), want a's end after 300", e.Type, e.Container.Config.Name, e.Timestamp, e.Container.Status.FinishedAt)
	}
	if e.Container.Status.Reason != shim.ReasonUnknown || e.Pod.State != PodNotReady {
		t.Errorf("a's end: reason %q, pod %v", e.Container.Status.Reason, e.Pod.State)
	}
	if e := nextEvent(t, p.ch); e.Type != EventDeleted || e.Container.ID != b || e.Timestamp <= 300 {
		t.Errorf("got %s of %s at %d, want b's deletion", e.Type, e.Container.Config.Name, e.Timestamp)
	}
	if info, _ := p.w.m.ContainerStatus(a); info.Status.FinishedAt != e.Timestamp && info.Status.FinishedAt <= 300 {
		t.Errorf("ContainerStatus(a) finished at %d", info.Status.FinishedAt)
	}
}

// An event carries the time of the transition as the shim recorded it, and the pod with all its containers
// as the daemon had them right after applying it: a subscriber that reads a started event after the
// container has already exited still sees it running in that event.
func TestEventsCarryTransitionTimeAndSnapshot(t *testing.T) {
	w := newFakeWorld(t)
	ctx := context.Background()
	podID, err := w.m.RunPod(ctx, podConfig("web"))
	if err != nil {
		t.Fatal(err)
	}
	s := w.shims.get(w.m.podStateDir(podID))
	events, cancel := w.m.Subscribe()
	defer cancel()
	id, err := w.m.CreateContainer(ctx, podID, containerConfig("app"))
	if err != nil {
		t.Fatal(err)
	}
	state := func(st shim.State, started, finished int64) *shimv1.ContainerState {
		return &shimv1.ContainerState{Id: id, Name: "app", Status: shimv1.Status(st), CreatedAt: 1, StartedAt: started, FinishedAt: finished, ExitCode: 3}
	}
	// A container that exits right after its start: both events are applied before anyone reads them.
	s.stream <- &shimv1.Event{Type: shimv1.EventType(shim.EventStarted), Container: state(shim.StateRunning, 100, 0), Timestamp: 100}
	s.stream <- &shimv1.Event{Type: shimv1.EventType(shim.EventStopped), Container: state(shim.StateExited, 100, 200), Timestamp: 200}

	var got []Event
	deadline := time.After(10 * time.Second)
	for len(got) < 2 {
		select {
		case e := <-events:
			if e.Container.ID == id && (e.Type == EventStarted || e.Type == EventStopped) {
				got = append(got, e)
			}
		case <-deadline:
			t.Fatalf("got %d of the 2 events", len(got))
		}
	}
	for i, want := range []struct {
		typ   EventType
		ts    int64
		state shim.State
	}{{EventStarted, 100, shim.StateRunning}, {EventStopped, 200, shim.StateExited}} {
		e := got[i]
		if e.Type != want.typ || e.Timestamp != want.ts {
			t.Errorf("event %d = type %v at %d, want type %v at the shim's %d", i, e.Type, e.Timestamp, want.typ, want.ts)
		}
		if e.Pod.ID != podID {
			t.Errorf("event %d: pod snapshot %q, want pod %q", i, e.Pod.ID, podID)
		}
		if len(e.Containers) != 1 || e.Containers[0].Status.State != want.state {
			t.Errorf("event %d: containers in the snapshot %+v, want app %v", i, e.Containers, want.state)
		}
	}
}

// The shim tells of an in-place restart (warmpod's restart rules, a reset)
// once the new run has started: the exit of the run before, then the new
// start. Between the two a status read must show the container running,
// as the shim has it: a kubelet that relists on the exit event and reads it
// exited starts a container of its own beside it.
func TestRestartExitIsNotReadAsExited(t *testing.T) {
	p := newEventPod(t)
	a := p.create(t, "a")
	p.shim.send(shimEvent(EventCreated, a, "a", shim.StateCreated, 0, 100))
	p.shim.send(shimEvent(EventStarted, a, "a", shim.StateRunning, 0, 200))
	nextEvent(t, p.ch)
	nextEvent(t, p.ch)

	// Run 0 exited at 300, run 1 started at 400; the exit is told first.
	exit := shimEvent(EventStopped, a, "a", shim.StateExited, 0, 300)
	now := shim.Record{ID: a, Name: "a", State: shim.StateRunning, CreatedAt: 100, StartedAt: 400, RestartCount: 1,
		LastTermination: &shim.Termination{ExitCode: 88, StartedAt: 200, FinishedAt: 300}}
	exit.Current = shim.ToProto(now)
	p.shim.send(exit)
	e := nextEvent(t, p.ch)
	if e.Type != EventStopped || e.Container.Status.State != shim.StateExited || e.Container.Status.RestartCount != 0 {
		t.Fatalf("got %s of run %d in state %s, want run 0's exit", e.Type, e.Container.Status.RestartCount, e.Container.Status.State)
	}
	st, err := p.w.m.ContainerStatus(a)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.State != shim.StateRunning || st.Status.RestartCount != 1 || st.Status.StartedAt != 400 {
		t.Errorf("status after the exit event: run %d %s started at %d, want run 1 running since 400 (the shim's record)",
			st.Status.RestartCount, st.Status.State, st.Status.StartedAt)
	}

	start := shimEvent(EventStarted, a, "a", shim.StateRunning, 1, 400)
	start.Current = shim.ToProto(now)
	p.shim.send(start)
	if e := nextEvent(t, p.ch); e.Type != EventStarted || e.Container.Status.RestartCount != 1 {
		t.Fatalf("got %s of run %d, want run 1's start", e.Type, e.Container.Status.RestartCount)
	}
	if st, err := p.w.m.ContainerStatus(a); err != nil {
		t.Fatal(err)
	} else if st.Status.State != shim.StateRunning || st.Status.RestartCount != 1 {
		t.Errorf("status after the start event: run %d %s, want run 1 running", st.Status.RestartCount, st.Status.State)
	}
}
