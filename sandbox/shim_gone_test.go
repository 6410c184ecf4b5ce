package sandbox

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/shim"
)

// A shim that dies while its pod runs: the pod's processes are killed
// before any of its containers is reported exited (the kubelet would start
// a duplicate beside one still running), then the containers are exited
// with reason Unknown, and the pod is not ready.
func TestShimDiedKillsPodFirst(t *testing.T) {
	w := newFakeWorld(t)
	ctx := context.Background()
	var reportedBeforeKill []string
	podID := ""
	var id string
	w.host.onKill = func(path string) {
		if path != filepath.Join("/warmpod-test", podID) {
			return
		}
		if info, err := w.m.ContainerStatus(id); err == nil && info.Status.State == shim.StateExited {
			reportedBeforeKill = append(reportedBeforeKill, id)
		}
	}
	var err error
	podID, err = w.m.RunPod(ctx, podConfig("web"))
	if err != nil {
		t.Fatal(err)
	}
	id, err = w.m.CreateContainer(ctx, podID, containerConfig("app"))
	if err != nil {
		t.Fatal(err)
	}
	s := w.shims.get(w.m.podStateDir(podID))
	s.set(&shimv1.ContainerState{Id: id, Name: "app", Status: shimv1.Status(shim.StateRunning), Pid: 42, StartedAt: 5})
	writeRecords(t, w.m.podStateDir(podID), shim.Record{ID: id, Name: "app", State: shim.StateRunning, Pid: 42, StartedAt: 5})
	s.kill()

	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := w.m.ContainerStatus(id)
		if err != nil {
			t.Fatal(err)
		}
		if info.Status.State == shim.StateExited {
			if r := info.Status; r.Reason != shim.ReasonUnknown || r.Message != ShimDiedMessage {
				t.Errorf("container after its shim died: %+v, want exited (Unknown, the shim died)", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the container was never reported exited")
		}
		time.Sleep(time.Millisecond)
	}
	if !w.host.wasKilled(filepath.Join("/warmpod-test", podID)) {
		t.Error("the pod's processes were not killed")
	}
	if len(reportedBeforeKill) > 0 {
		t.Errorf("reported exited before the pod's processes were killed: %v", reportedBeforeKill)
	}
	if st, _ := w.m.PodStatus(ctx, podID, false); st.State != PodNotReady {
		t.Errorf("pod after its shim died: %v, want not ready", st.State)
	}
	if err := w.m.StopPod(ctx, podID); err != nil {
		t.Fatalf("StopPod: %v", err)
	}
	if err := w.m.RemovePod(ctx, podID); err != nil {
		t.Fatalf("RemovePod: %v", err)
	}
}

// A shim that does not answer its Shutdown is killed, and the pod stops all
// the same, its processes killed.
func TestStopPodKillsHungShim(t *testing.T) {
	w := newFakeWorld(t)
	ctx := context.Background()
	podID, err := w.m.RunPod(ctx, podConfig("web"))
	if err != nil {
		t.Fatal(err)
	}
	s := w.shims.get(w.m.podStateDir(podID))
	s.hung = true
	if err := w.m.StopPod(ctx, podID); err != nil {
		t.Fatalf("StopPod: %v", err)
	}
	if s.called("Stop") != 1 || !s.Exited() {
		t.Errorf("hung shim: stopped %d times, exited %v; want killed", s.called("Stop"), s.Exited())
	}
	if !w.host.wasKilled(filepath.Join("/warmpod-test", podID)) {
		t.Error("the pod's processes were not killed")
	}
}
