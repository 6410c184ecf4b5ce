package cri

import (
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/shim"
	"github.com/warmpod/warmpod/sandbox"
)

// An event response is the event's own snapshot, converted: its time, the
// pod, and the pod's containers as the event left them; a deleted
// container is named by its id only.
func TestContainerEvent(t *testing.T) {
	ctr := func(id, name string, attempt uint32, rec shim.Record) sandbox.ContainerInfo {
		rec.ID, rec.Name = id, name
		return sandbox.ContainerInfo{ID: id, PodID: "p1", Config: sandbox.ContainerConfig{Name: name, Attempt: attempt}, CreatedAt: rec.CreatedAt, Status: rec}
	}
	pod := sandbox.PodInfo{ID: "p1", Config: sandbox.PodConfig{Name: "web", Namespace: "ns", UID: "uid"}, State: sandbox.PodReady}
	old := ctr("c0", "main", 0, shim.Record{State: shim.StateExited, CreatedAt: 10, StartedAt: 20, FinishedAt: 30, ExitCode: 88})
	next := ctr("c1", "main", 1, shim.Record{State: shim.StateCreated, CreatedAt: 40})
	side := ctr("s0", "side", 0, shim.Record{State: shim.StateRunning, CreatedAt: 5, StartedAt: 6})

	for _, tc := range []struct {
		name  string
		e     sandbox.Event
		typ   runtime.ContainerEventType
		ids   []string
		state runtime.ContainerState
	}{
		{"stopped", sandbox.Event{Type: sandbox.EventStopped, Container: old, Timestamp: 30, Pod: pod, Containers: []sandbox.ContainerInfo{side, old}},
			runtime.ContainerEventType_CONTAINER_STOPPED_EVENT, []string{"s0", "c0"}, runtime.ContainerState_CONTAINER_EXITED},
		{"deleted", sandbox.Event{Type: sandbox.EventDeleted, Container: old, Timestamp: 35, Pod: pod, Containers: []sandbox.ContainerInfo{side}},
			runtime.ContainerEventType_CONTAINER_DELETED_EVENT, []string{"s0"}, runtime.ContainerState_CONTAINER_RUNNING},
		{"created", sandbox.Event{Type: sandbox.EventCreated, Container: next, Timestamp: 40, Pod: pod, Containers: []sandbox.ContainerInfo{side, next}},
			runtime.ContainerEventType_CONTAINER_CREATED_EVENT, []string{"s0", "c1"}, runtime.ContainerState_CONTAINER_CREATED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := containerEvent(&tc.e)
			if resp.ContainerId != tc.e.Container.ID || resp.ContainerEventType != tc.typ || resp.CreatedAt != tc.e.Timestamp {
				t.Errorf("event = %s %s at %d", resp.ContainerId, resp.ContainerEventType, resp.CreatedAt)
			}
			if st := resp.PodSandboxStatus; st.GetId() != "p1" || st.GetMetadata().GetUid() != "uid" || st.GetState() != runtime.PodSandboxState_SANDBOX_READY {
				t.Errorf("pod status = %v", st)
			}
			var ids []string
			for _, s := range resp.ContainersStatuses {
				ids = append(ids, s.Id)
			}
			if len(ids) != len(tc.ids) {
				t.Fatalf("statuses of %v, want %v", ids, tc.ids)
			}
			for i := range ids {
				if ids[i] != tc.ids[i] {
					t.Fatalf("statuses of %v, want %v", ids, tc.ids)
				}
			}
			last := resp.ContainersStatuses[len(ids)-1]
			if last.State != tc.state {
				t.Errorf("%s is %s, want %s", last.Id, last.State, tc.state)
			}
			if tc.e.Type != sandbox.EventDeleted {
				own := resp.ContainersStatuses[len(ids)-1]
				at := map[runtime.ContainerEventType]int64{
					runtime.ContainerEventType_CONTAINER_CREATED_EVENT: own.CreatedAt,
					runtime.ContainerEventType_CONTAINER_STARTED_EVENT: own.StartedAt,
					runtime.ContainerEventType_CONTAINER_STOPPED_EVENT: own.FinishedAt,
				}[resp.ContainerEventType]
				if at != resp.CreatedAt {
					t.Errorf("event at %d, its container's status says %d", resp.CreatedAt, at)
				}
			}
		})
	}
}
