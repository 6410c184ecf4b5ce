package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/journal"
	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/runtime/shim"
)

// Pod and container logic against the fakes of fakes_test.go: no root, no
// shim process, no namespace.

// dirEntries lists dir; a missing dir has none.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// podsLeft checks that nothing of a pod is left: not on the fake host, the
// fake network, in the pod dirs, in the metadata, nor a shim that was not
// shut down.
func (w *fakeWorld) podsLeft(t *testing.T) {
	t.Helper()
	if live := w.host.live(); len(live) > 0 {
		t.Errorf("left on the host: %v", live)
	}
	if n := w.net.live(); n > 0 {
		t.Errorf("%d pods left on the network", n)
	}
	for _, d := range []string{filepath.Join(w.opts.StateDir, "pods"), filepath.Join(w.opts.RootDir, "pods")} {
		if ents := dirEntries(t, d); len(ents) > 0 {
			t.Errorf("left in %s: %v", d, ents)
		}
	}
	if pods := w.m.ListPods(); len(pods) > 0 {
		t.Errorf("pods listed: %+v", pods)
	}
	n := 0
	w.m.meta.load("pods", func([]byte) error { n++; return nil })
	if n > 0 {
		t.Errorf("%d pods left in the metadata", n)
	}
	w.shims.mu.Lock()
	defer w.shims.mu.Unlock()
	for dir, s := range w.shims.shims {
		if !s.Exited() || !s.closed {
			t.Errorf("shim of %s left running or connected", dir)
		}
	}
}

// RunPod undoes everything it made when a step fails, and a retry then
// starts from scratch.
func TestRunPodRollsBack(t *testing.T) {
	for _, step := range []string{"namespaces", "cgroup", "shm", "network", "shim", "place", "metadata"} {
		t.Run(step, func(t *testing.T) {
			w := newFakeWorld(t)
			fail := func(err error) {
				switch step {
				case "network":
					w.net.failSetup = err
				case "shim":
					w.shims.failStart = err
				case "metadata":
					// The last step: writing the pod's metadata, to a
					// journal closed (err) or open again.
					j := w.m.meta.journals["pods"]
					if err != nil {
						j.Close()
						return
					}
					var reopenErr error
					if w.m.meta.journals["pods"], reopenErr = journal.Open(filepath.Join(w.opts.RootDir, "meta", "pods.log")); reopenErr != nil {
						t.Fatal(reopenErr)
					}
				default:
					w.host.fail[step] = err
				}
			}
			fail(errInjected)
			cfg := podConfig("web")
			if _, err := w.m.RunPod(context.Background(), cfg); !errors.Is(err, errInjected) && !errors.Is(err, os.ErrClosed) {
				t.Fatalf("RunPod = %v, want the injected failure", err)
			}
			w.podsLeft(t)

			fail(nil)
			id, err := w.m.RunPod(context.Background(), cfg)
			if err != nil {
				t.Fatalf("RunPod after the failure: %v", err)
			}
			if again, err := w.m.RunPod(context.Background(), cfg); err != nil || again != id {
				t.Errorf("retried RunPod = %q, %v; want %q", again, err, id)
			}
			if st := w.m.ListPods(); len(st) != 1 || st[0].State != PodReady || st[0].ShimPid == 0 {
				t.Errorf("pods = %+v, want one ready pod with its shim", st)
			}
		})
	}
}

// What RunPod made, StopPod and RemovePod release.
func TestRunStopRemovePod(t *testing.T) {
	w := newFakeWorld(t)
	ctx := context.Background()
	id, err := w.m.RunPod(ctx, podConfig("web"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"namespaces " + filepath.Join(w.opts.StateDir, "pods", id, "ns"),
		"cgroup " + filepath.Join("/warmpod-test", id),
		"shm " + filepath.Join(w.opts.StateDir, "pods", id, "shm"),
	}
	if live := w.host.live(); !sameStrings(live, want) {
		t.Errorf("host after RunPod = %v, want %v", live, want)
	}
	// The shim was placed in its cgroup below the pod's before it started
	// anything.
	if shims := w.host.shims; len(shims) != 1 || !strings.HasSuffix(shims[0], " in "+filepath.Join("/warmpod-test", id)+"/shim") {
		t.Errorf("shims placed: %v, want the pod's", shims)
	}
	if err := w.m.StopPod(ctx, id); err != nil {
		t.Fatal(err)
	}
	// The cgroup stays until the pod is removed.
	if live := w.host.live(); !sameStrings(live, want[1:2]) {
		t.Errorf("host after StopPod = %v, want %v", live, want[1:2])
	}
	if err := w.m.RemovePod(ctx, id); err != nil {
		t.Fatal(err)
	}
	w.podsLeft(t)
}

func containerConfig(name string) ContainerConfig {
	return ContainerConfig{Name: name, Image: "busybox", LogPath: name + ".log"}
}

// containersLeft checks that nothing of a container is left in the
// daemon: listed, in the metadata, holding its image.
func (w *fakeWorld) containersLeft(t *testing.T) {
	t.Helper()
	if cs := w.m.ListContainers(); len(cs) > 0 {
		t.Errorf("containers listed: %+v", cs)
	}
	n := 0
	w.m.meta.load("containers", func([]byte) error { n++; return nil })
	if n > 0 {
		t.Errorf("%d containers left in the metadata", n)
	}
	if h := w.images.holds[busybox.ID]; h != 0 {
		t.Errorf("image held %d times", h)
	}
}

// A CreateContainer the shim fails leaves nothing behind; a retry creates
// the container, and a retry of that returns the same container.
func TestCreateContainerRollsBackAndRetries(t *testing.T) {
	w := newFakeWorld(t)
	ctx := context.Background()
	podID, err := w.m.RunPod(ctx, podConfig("web"))
	if err != nil {
		t.Fatal(err)
	}
	s := w.shims.get(w.m.podStateDir(podID))
	s.createHook = func(*shimv1.CreateContainerRequest) error { return errInjected }
	cfg := containerConfig("app")
	if _, err := w.m.CreateContainer(ctx, podID, cfg); !errors.Is(err, errInjected) {
		t.Fatalf("CreateContainer = %v, want the injected failure", err)
	}
	w.containersLeft(t)

	s.createHook = nil
	id, err := w.m.CreateContainer(ctx, podID, cfg)
	if err != nil {
		t.Fatalf("CreateContainer after the failure: %v", err)
	}
	if again, err := w.m.CreateContainer(ctx, podID, cfg); err != nil || again != id {
		t.Errorf("retried CreateContainer = %q, %v; want %q", again, err, id)
	}
	if n := s.called("CreateContainer"); n != 2 {
		t.Errorf("the shim was asked to create %d times, want 2 (the failure, then the container)", n)
	}
	info, err := w.m.ContainerStatus(id)
	if err != nil || info.Status.State != shim.StateCreated {
		t.Errorf("ContainerStatus = %+v, %v; want created", info.Status, err)
	}
	if h := w.images.holds[busybox.ID]; h != 1 {
		t.Errorf("image held %d times, want 1", h)
	}

	// Another attempt is another container.
	cfg.Attempt = 1
	if other, err := w.m.CreateContainer(ctx, podID, cfg); err != nil || other == id {
		t.Errorf("CreateContainer of attempt 1 = %q, %v; want a new container", other, err)
	}
}

// A retry that comes while the first CreateContainer is still in the shim
// waits for the first to end and answers with its result: the container
// when the first created it, a container created anew when the first was
// rolled back (never the id of a container that no longer exists), and
// the retry's own context error when that ends first.
func TestCreateContainerRetryWhileInFlight(t *testing.T) {
	for _, tc := range []struct {
		name string
		// firstFails makes the shim fail the first create.
		firstFails bool
		// cancelRetry ends the retry's context while it waits.
		cancelRetry bool
	}{
		{name: "the first succeeds"},
		{name: "the first fails", firstFails: true},
		{name: "the retry gives up", cancelRetry: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newFakeWorld(t)
			ctx := context.Background()
			podID, err := w.m.RunPod(ctx, podConfig("web"))
			if err != nil {
				t.Fatal(err)
			}
			s := w.shims.get(w.m.podStateDir(podID))
			entered, proceed := make(chan struct{}), make(chan struct{})
			var calls atomic.Int32
			s.createHook = func(*shimv1.CreateContainerRequest) error {
				if calls.Add(1) > 1 {
					return nil
				}
				close(entered)
				<-proceed
				if tc.firstFails {
					return errInjected
				}
				return nil
			}
			waiting := make(chan struct{}, 1)
			w.m.ctrNames.waiting = func(string) { waiting <- struct{}{} }
			cfg := containerConfig("app")

			type result struct {
				id  string
				err error
			}
			first := make(chan result, 1)
			go func() {
				id, err := w.m.CreateContainer(ctx, podID, cfg)
				first <- result{id, err}
			}()
			select {
			case <-entered:
			case r := <-first:
				t.Fatalf("CreateContainer ended before it reached the shim: %q, %v", r.id, r.err)
			}
			retryCtx, cancelRetry := context.WithCancel(ctx)
			defer cancelRetry()
			retry := make(chan result, 1)
			go func() {
				id, err := w.m.CreateContainer(retryCtx, podID, cfg)
				retry <- result{id, err}
			}()
			select {
			case <-waiting:
			case r := <-retry:
				t.Fatalf("the retry answered %q, %v while the first was in the shim; want it to wait", r.id, r.err)
			}

			if tc.cancelRetry {
				cancelRetry()
				if r := <-retry; !errors.Is(r.err, context.Canceled) || r.id != "" {
					t.Errorf("retry whose context ended = %q, %v; want context.Canceled", r.id, r.err)
				}
			}
			close(proceed)
			f := <-first
			if tc.firstFails != errors.Is(f.err, errInjected) {
				t.Fatalf("first CreateContainer = %q, %v", f.id, f.err)
			}
			if tc.cancelRetry {
				if n := s.called("CreateContainer"); n != 1 {
					t.Errorf("the shim was asked to create %d times, want 1", n)
				}
				if _, err := w.m.ContainerStatus(f.id); err != nil {
					t.Errorf("the first's container after the retry gave up: %v", err)
				}
				return
			}
			r := <-retry
			if r.err != nil {
				t.Fatalf("retry = %v", r.err)
			}
			wantCreates := 1
			if tc.firstFails {
				wantCreates = 2
			} else if r.id != f.id {
				t.Errorf("retry = %q, want the first's container %q", r.id, f.id)
			}
			if n := s.called("CreateContainer"); n != wantCreates {
				t.Errorf("the shim was asked to create %d times, want %d", n, wantCreates)
			}
			info, err := w.m.ContainerStatus(r.id)
			if err != nil || info.Status.State != shim.StateCreated {
				t.Errorf("ContainerStatus of the retry's answer %q = %+v, %v; want created", r.id, info.Status, err)
			}
			if again, err := w.m.CreateContainer(ctx, podID, cfg); err != nil || again != r.id {
				t.Errorf("CreateContainer after both = %q, %v; want %q", again, err, r.id)
			}
			if cs := w.m.ListContainers(); len(cs) != 1 {
				t.Errorf("%d containers listed, want 1", len(cs))
			}
			if h := w.images.holds[busybox.ID]; h != 1 {
				t.Errorf("image held %d times, want 1", h)
			}
		})
	}
}

// writeRecords leaves records in a pod's state dir, as its shim does.
func writeRecords(t *testing.T, stateDir string, recs ...shim.Record) {
	t.Helper()
	j, err := journal.Open(shim.JournalPath(stateDir))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, r := range recs {
		if err := j.Put(r.ID, &r); err != nil {
			t.Fatal(err)
		}
	}
}

// A restarted daemon gets its pods and containers back: a pod whose shim
// lives is ready with what the shim says now; a pod whose shim died is not
// ready, with what its shim recorded (and, for what ran when it died, an
// unknown end); a stopped pod stays stopped. Names, image holds and
// retries work as before the restart.
func TestRecover(t *testing.T) {
	w := newFakeWorld(t)
	ctx := context.Background()
	live, err := w.m.RunPod(ctx, podConfig("live"))
	if err != nil {
		t.Fatal(err)
	}
	lost, err := w.m.RunPod(ctx, podConfig("lost"))
	if err != nil {
		t.Fatal(err)
	}
	stopped, err := w.m.RunPod(ctx, podConfig("stopped"))
	if err != nil {
		t.Fatal(err)
	}
	create := func(pod, name string) string {
		t.Helper()
		id, err := w.m.CreateContainer(ctx, pod, containerConfig(name))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	running := create(live, "app")
	exited := create(lost, "job")
	vanished := create(lost, "server")
	if err := w.m.StopPod(ctx, stopped); err != nil {
		t.Fatal(err)
	}

	// While the daemon is down, the live pod's container starts, and the
	// lost pod's shim records an exit, then dies.
	w.shims.get(w.m.podStateDir(live)).set(&shimv1.ContainerState{
		Id: running, Name: "app", Status: shimv1.Status(shim.StateRunning), Pid: 42, StartedAt: 5,
	})
	writeRecords(t, w.m.podStateDir(lost),
		shim.Record{ID: exited, Name: "job", State: shim.StateExited, ExitCode: 3, Reason: shim.ReasonError, StartedAt: 5, FinishedAt: 6},
		shim.Record{ID: vanished, Name: "server", State: shim.StateRunning, Pid: 43, StartedAt: 5},
	)
	w.shims.get(w.m.podStateDir(lost)).kill()
	startedBefore := len(w.shims.started)
	// What recovery itself reads, not what the pod's watcher reads later
	// from the shim: the watcher waits.
	liveShim := w.shims.get(w.m.podStateDir(live))
	liveShim.holdEvents = make(chan struct{})
	w.restart(t)
	defer close(liveShim.holdEvents)

	pods := map[string]PodInfo{}
	for _, p := range w.m.ListPods() {
		pods[p.ID] = p
	}
	for id, want := range map[string]PodState{live: PodReady, lost: PodNotReady, stopped: PodNotReady} {
		if p, ok := pods[id]; !ok || p.State != want {
			t.Errorf("pod %s = %+v, want state %v", id, p, want)
		}
	}
	if len(pods) != 3 {
		t.Errorf("%d pods recovered, want 3", len(pods))
	}
	if pods[live].ShimPid != w.shims.get(w.m.podStateDir(live)).pid {
		t.Errorf("live pod's shim pid = %d", pods[live].ShimPid)
	}
	status := func(id string) shim.Record {
		t.Helper()
		info, err := w.m.ContainerStatus(id)
		if err != nil {
			t.Fatalf("ContainerStatus(%s): %v", id, err)
		}
		return info.Status
	}
	if r := status(running); r.State != shim.StateRunning || r.Pid != 42 {
		t.Errorf("container of the live pod = %+v, want running as pid 42", r)
	}
	if r := status(exited); r.State != shim.StateExited || r.ExitCode != 3 || r.Reason != shim.ReasonError {
		t.Errorf("exited container of the lost pod = %+v, want exited 3 (Error)", r)
	}
	if r := status(vanished); r.State != shim.StateExited || r.Reason != shim.ReasonUnknown || r.Message != ShimDiedMessage {
		t.Errorf("running container of the lost pod = %+v, want exited (Unknown, the shim died)", r)
	}
	// What the dead shim left running was killed; nothing of the others.
	if !w.host.wasKilled(filepath.Join("/warmpod-test", lost)) || w.host.wasKilled(filepath.Join("/warmpod-test", live)) {
		t.Errorf("cgroups killed: %v, want the lost pod's only", w.host.killed)
	}
	if h := w.images.holds[busybox.ID]; h != 3 {
		t.Errorf("image held %d times, want 3, once by each container", h)
	}
	if len(w.shims.started) != startedBefore {
		t.Errorf("recovery started %d shims", len(w.shims.started)-startedBefore)
	}

	// Names are reserved as before: retries return what exists.
	if id, err := w.m.RunPod(ctx, podConfig("live")); err != nil || id != live {
		t.Errorf("RunPod of the live pod = %q, %v; want %q", id, err, live)
	}
	if id, err := w.m.CreateContainer(ctx, live, containerConfig("app")); err != nil || id != running {
		t.Errorf("CreateContainer of the live pod's container = %q, %v; want %q", id, err, running)
	}
	if _, err := w.m.CreateContainer(ctx, lost, containerConfig("job2")); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("CreateContainer in the lost pod = %v, want FailedPrecondition", err)
	}
}

// UpdatePodResources sets the limits of a ready pod's cgroup, and of no
// other.
func TestUpdatePodResources(t *testing.T) {
	w := newFakeWorld(t)
	ctx := context.Background()
	id, err := w.m.RunPod(ctx, podConfig("web"))
	if err != nil {
		t.Fatal(err)
	}
	res := &oci.Resources{MemoryLimitInBytes: 64 << 20}
	if err := w.m.UpdatePodResources(ctx, id[:12], res, nil); err != nil {
		t.Fatal(err)
	}
	got := w.host.limits[filepath.Join("/warmpod-test", id)]
	if got == nil || got.Memory == nil || got.Memory.Limit == nil || *got.Memory.Limit != 64<<20 {
		t.Errorf("pod cgroup limits = %+v, want a 64 MiB memory limit", got)
	}
	if err := w.m.UpdatePodResources(ctx, "nope", res, nil); !errdefs.IsNotFound(err) {
		t.Errorf("update of an unknown pod = %v, want NotFound", err)
	}
	w.host.deleteCgroup(filepath.Join("/warmpod-test", id))
	if err := w.m.UpdatePodResources(ctx, id, res, nil); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("update of a pod without its cgroup = %v, want FailedPrecondition", err)
	}
	if err := w.m.StopPod(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := w.m.UpdatePodResources(ctx, id, res, nil); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("update of a stopped pod = %v, want FailedPrecondition", err)
	}
}

// The node's metrics sum what the live shims report with what the shims of
// stopped pods reported before they went, so counters never go down.
func TestNodeStats(t *testing.T) {
	w := newFakeWorld(t)
	ctx := context.Background()
	a, err := w.m.RunPod(ctx, podConfig("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.m.RunPod(ctx, podConfig("b")); err != nil {
		t.Fatal(err)
	}
	if err := w.m.StopPod(ctx, a); err != nil {
		t.Fatal(err)
	}
	st := w.m.NodeStats()
	if st.Shims != 1 {
		t.Errorf("shims %d, want the one running", st.Shims)
	}
	// Each fake shim reports one ResetPod reset and one warm create.
	if r := st.Resets[shim.TriggerResetPod]; r.Duration.Count != 2 || st.WarmCreates != 2 {
		t.Errorf("resets %+v, warm creates %d; want both shims' (2 and 2)", r, st.WarmCreates)
	}
	if b := st.Resets[shim.TriggerResetPod].Duration.Buckets; b[0.004] != 2 || b[0.002] != 0 {
		t.Errorf("reset duration buckets %v, want both 3 ms resets at or below 4 ms", b)
	}
}
