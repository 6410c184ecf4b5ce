package sandbox

import (
	"context"
	"sync"
	"testing"

	"github.com/containerd/errdefs"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/shim"
)

// A container still in its shim's CreateContainer is neither listed nor
// given a status (a listed container in state UNKNOWN is one the kubelet
// kills, and one rolled back would have been seen), as TestLoad found
// under concurrent ListContainers; once created it is both.
func TestContainerHiddenWhileCreating(t *testing.T) {
	w := newFakeWorld(t)
	ctx := context.Background()
	podID, err := w.m.RunPod(ctx, podConfig("web"))
	if err != nil {
		t.Fatal(err)
	}
	s := w.shims.get(w.m.podStateDir(podID))
	entered, proceed := make(chan string, 1), make(chan struct{})
	s.createHook = func(r *shimv1.CreateContainerRequest) error {
		entered <- r.Id
		<-proceed
		return nil
	}
	var (
		wg    sync.WaitGroup
		id    string
		idErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		id, idErr = w.m.CreateContainer(ctx, podID, containerConfig("app"))
	}()
	inFlight := <-entered
	if cs := w.m.ListContainers(); len(cs) != 0 {
		t.Errorf("ListContainers while the shim creates the container: %+v", cs)
	}
	if cs := w.m.PodContainers(podID); len(cs) != 0 {
		t.Errorf("PodContainers while the shim creates the container: %+v", cs)
	}
	if info, err := w.m.ContainerStatus(inFlight); !errdefs.IsNotFound(err) {
		t.Errorf("ContainerStatus while the shim creates the container = %+v, %v; want NotFound", info.Status, err)
	}
	close(proceed)
	wg.Wait()
	if idErr != nil || id != inFlight {
		t.Fatalf("CreateContainer = %q, %v; want %q", id, idErr, inFlight)
	}
	if cs := w.m.ListContainers(); len(cs) != 1 || cs[0].Status.State != shim.StateCreated {
		t.Errorf("ListContainers after the create: %+v", cs)
	}
	if info, err := w.m.ContainerStatus(id); err != nil || info.Status.State != shim.StateCreated {
		t.Errorf("ContainerStatus after the create = %+v, %v; want created", info.Status, err)
	}
}

// The shim's created event may come before its answer to the create; the
// container is shown from then on, so that the event's list of the pod's
// containers holds the container it is about.
func TestCreatedRecordEndsCreating(t *testing.T) {
	m := &Manager{}
	c := &container{meta: containerMeta{ID: "c1"}}
	c.status = containerStatus{Record: shim.Record{ID: "c1", State: shim.StateUnknown}, Creating: true}
	m.setRecord(c, shim.Record{ID: "c1", State: shim.StateUnknown})
	if !c.Status().Creating {
		t.Fatal("a record in state unknown ended the creation")
	}
	m.setRecord(c, shim.Record{ID: "c1", State: shim.StateCreated})
	if c.Status().Creating {
		t.Error("the shim's created record did not end the creation")
	}
}
