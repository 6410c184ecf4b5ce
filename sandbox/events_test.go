package sandbox

import (
	"context"
	"testing"
	"time"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/shim"
)

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
		if !e.PodFound || e.Pod.ID != podID {
			t.Errorf("event %d: pod snapshot %v %q, want pod %q", i, e.PodFound, e.Pod.ID, podID)
		}
		if len(e.Containers) != 1 || e.Containers[0].Status.State != want.state {
			t.Errorf("event %d: containers in the snapshot %+v, want app %v", i, e.Containers, want.state)
		}
	}
}
