package integration

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

// eventConsumer follows GetContainerEvents the way a kubelet's evented PLEG
// keeps its pod cache: per pod, the newest event by timestamp wins, and the
// pod's status and its containers' statuses are taken from it. It checks,
// as the events come, what every event promises, and records violations.
type eventConsumer struct {
	mu sync.Mutex
	// cache is the consumer's view of each pod, by sandbox id.
	cache map[string]*runtimeapi.ContainerEventResponse
	// last is the timestamp of each pod's last event.
	last map[string]int64
	// deleted are the containers told deleted.
	deleted map[string]bool
	// seen are the event types of each container, in order.
	seen     map[string][]runtimeapi.ContainerEventType
	problems []string
	n        int
}

// followEvents subscribes to the run's daemon's events for the rest of the
// test.
func followEvents(t *testing.T) *eventConsumer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := d.Runtime.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		cancel()
		t.Fatalf("GetContainerEvents: %v", err)
	}
	// The subscription has taken effect once the stream's headers came.
	if _, err := stream.Header(); err != nil {
		cancel()
		t.Fatalf("GetContainerEvents: %v", err)
	}
	ec := &eventConsumer{
		cache: map[string]*runtimeapi.ContainerEventResponse{}, last: map[string]int64{},
		deleted: map[string]bool{}, seen: map[string][]runtimeapi.ContainerEventType{},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			e, err := stream.Recv()
			if err != nil {
				return
			}
			ec.consume(e)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ec
}

func (ec *eventConsumer) problem(format string, args ...any) {
	ec.problems = append(ec.problems, fmt.Sprintf(format, args...))
}

// next lists the event types that may follow each, for one container.
var nextEventTypes = map[runtimeapi.ContainerEventType][]runtimeapi.ContainerEventType{
	-1: {runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT},
	runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT: {runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT},
	runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT: {runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT},
	// An exit is followed by its deletion, or by an in-place restart.
	runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT: {runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT},
}

func (ec *eventConsumer) consume(e *runtimeapi.ContainerEventResponse) {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	ec.n++
	// The kubelet drops an event without its pod.
	if e.PodSandboxStatus == nil || e.PodSandboxStatus.Metadata == nil {
		ec.problem("%s of %s has no pod status", e.ContainerEventType, short(e.ContainerId))
		return
	}
	pod := e.PodSandboxStatus.Id
	if e.CreatedAt <= ec.last[pod] {
		ec.problem("%s of %s at %d, not after the pod's event before (%d)", e.ContainerEventType, short(e.ContainerId), e.CreatedAt, ec.last[pod])
	}
	ec.last[pod] = e.CreatedAt

	id, typ := e.ContainerId, e.ContainerEventType
	prev := runtimeapi.ContainerEventType(-1)
	if s := ec.seen[id]; len(s) > 0 {
		prev = s[len(s)-1]
	}
	if !slices.Contains(nextEventTypes[prev], typ) {
		ec.problem("%s of %s after %v", typ, short(id), ec.seen[id])
	}
	ec.seen[id] = append(ec.seen[id], typ)

	var own *runtimeapi.ContainerStatus
	for _, s := range e.ContainersStatuses {
		if ec.deleted[s.Id] {
			ec.problem("%s of %s lists %s (%s), told deleted before", typ, short(id), short(s.Id), s.Metadata.Name)
		}
		if s.Id == id {
			own = s
		}
	}
	if typ == runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT {
		ec.deleted[id] = true
		if own != nil {
			ec.problem("the deletion of %s lists it", short(id))
		}
	} else if own == nil {
		ec.problem("%s of %s does not list it", typ, short(id))
	} else {
		at := map[runtimeapi.ContainerEventType]int64{
			runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT: own.CreatedAt,
			runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT: own.StartedAt,
			runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT: own.FinishedAt,
		}[typ]
		if at != e.CreatedAt {
			ec.problem("%s of %s at %d, its status says %d", typ, short(id), e.CreatedAt, at)
		}
		wantState := map[runtimeapi.ContainerEventType]runtimeapi.ContainerState{
			runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT: runtimeapi.ContainerState_CONTAINER_CREATED,
			runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT: runtimeapi.ContainerState_CONTAINER_RUNNING,
			runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT: runtimeapi.ContainerState_CONTAINER_EXITED,
		}[typ]
		if own.State != wantState {
			ec.problem("%s of %s shows it %s", typ, short(id), own.State)
		}
	}
	for _, s := range e.ContainersStatuses {
		if s.State == runtimeapi.ContainerState_CONTAINER_UNKNOWN {
			ec.problem("%s of %s lists %s as unknown", typ, short(id), short(s.Id))
		}
	}

	// The kubelet's cache: the newest event wins.
	if c, ok := ec.cache[pod]; !ok || e.CreatedAt >= c.CreatedAt {
		ec.cache[pod] = e
	}
}

// check fails the test with the problems seen so far.
func (ec *eventConsumer) check(t *testing.T) {
	t.Helper()
	ec.mu.Lock()
	defer ec.mu.Unlock()
	for _, p := range ec.problems {
		t.Error(p)
	}
	ec.problems = nil
}

// statusLine is what a consumer compares of a container's status.
func statusLine(s *runtimeapi.ContainerStatus) string {
	return fmt.Sprintf("%s %s attempt=%d %s created=%d started=%d finished=%d exit=%d reason=%q",
		short(s.Id), s.Metadata.GetName(), s.Metadata.GetAttempt(), s.State, s.CreatedAt, s.StartedAt, s.FinishedAt, s.ExitCode, s.Reason)
}

// sameView tells whether the consumer's view of pod podID is what
// ContainerStatus and PodSandboxStatus report of it, and how they differ.
func (ec *eventConsumer) sameView(t *testing.T, podID string) (bool, string) {
	t.Helper()
	ec.mu.Lock()
	cached := ec.cache[podID]
	ec.mu.Unlock()
	if cached == nil {
		return false, "no event of the pod"
	}
	resp, err := d.Runtime.ListContainers(testCtx(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	var want, got []string
	for _, c := range resp.Containers {
		want = append(want, statusLine(containerStatus(t, c.Id)))
	}
	for _, s := range cached.ContainersStatuses {
		got = append(got, statusLine(s))
	}
	sort.Strings(want)
	sort.Strings(got)
	ps := podStatus(t, podID)
	cp := cached.PodSandboxStatus
	podWant := fmt.Sprintf("%s %s %s ip=%s", ps.Id, ps.State, ps.Metadata.Uid, ps.GetNetwork().GetIp())
	podGot := fmt.Sprintf("%s %s %s ip=%s", cp.Id, cp.State, cp.Metadata.Uid, cp.GetNetwork().GetIp())
	if !slices.Equal(want, got) || podWant != podGot {
		return false, fmt.Sprintf("\nthe statuses: %s\n%s\nthe events:   %s\n%s", podWant, strings.Join(want, "\n"), podGot, strings.Join(got, "\n"))
	}
	return true, ""
}

// waitSameView waits until the consumer's view of the pod is the
// runtime's (the last events may still be on their way).
func (ec *eventConsumer) waitSameView(t *testing.T, podID, when string) {
	t.Helper()
	waitFor(t, "the events' view of the pod "+when, func() (bool, string) { return ec.sameView(t, podID) })
	ec.check(t)
}

// A consumer that keeps, per pod, the statuses of the newest event ends
// with what ContainerStatus and PodSandboxStatus say, through the
// kubelet's RestartAllContainers sequence and warmpod's own reset, and no
// event ever lists a container told deleted: no removed container is ever
// the current one of its name.
func TestEventsKubeletConsumer(t *testing.T) {
	ctx := begin(t)
	ec := followEvents(t)
	p := newResetPod(t, "events-consumer", nil)
	ec.waitSameView(t, p.id, "after the start")

	// The kubelet's restart: stop and remove each container, then create
	// and start the next attempt in order.
	p.waitWarm(t)
	old := slices.Clone(p.ids)
	for _, id := range p.ids {
		if _, err := d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0}); err != nil {
			t.Fatalf("StopContainer: %v", err)
		}
		if _, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer: %v", err)
		}
	}
	for _, c := range p.configs {
		c.Metadata.Attempt++
		c.Annotations = map[string]string{"io.kubernetes.container.restartCount": "1"}
		c.LogPath = fmt.Sprintf("%s-%d.log", c.Metadata.Name, c.Metadata.Attempt)
	}
	p.startAll(t)
	ec.waitSameView(t, p.id, "after the kubelet's restart")
	ec.mu.Lock()
	for _, id := range old {
		if !ec.deleted[id] {
			t.Errorf("the removal of %s was not told", short(id))
		}
	}
	ec.mu.Unlock()

	// warmpod's own reset.
	p.waitWarm(t)
	if _, err := wp().ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: p.id}); err != nil {
		t.Fatalf("ResetPod: %v", err)
	}
	ec.waitSameView(t, p.id, "after the reset")
	ec.mu.Lock()
	defer ec.mu.Unlock()
	// What the reset told of each container: the sidecar and the main
	// container were killed and ran again, the init container ran again.
	for i, want := range [][]runtimeapi.ContainerEventType{
		{runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT},
		{runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT},
		{runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT},
	} {
		seen := ec.seen[p.ids[i]]
		if len(seen) < len(want) || !slices.Equal(seen[len(seen)-len(want):], want) {
			t.Errorf("%s's events: %v, want them to end with %v", p.configs[i].Metadata.Name, seen, want)
		}
	}
	t.Logf("%d events", ec.n)
}

// A container that warmpod restarts by its own rule is told stopped only
// once its new run has started, and a status read that follows that event
// (a kubelet's relist) shows it running: read exited, the kubelet would
// start a container of its own beside it.
func TestRuleRestartNeverReadExited(t *testing.T) {
	ctx := begin(t)
	const restarts = 5
	vol := t.TempDir()
	cfg := newPodConfig("rule-restart-status")
	cfg.Annotations["warmpod.io/restart-policy-rules"] = `{"main": [{"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [88]}}]}`
	podID := runPod(t, cfg)
	main := newContainerConfig("main", "sh", "-c", fmt.Sprintf(
		"n=$(cat /data/n 2>/dev/null || echo 0); n=$((n + 1)); echo $n > /data/n; [ $n -le %d ] && exit 88; exec sleep 3600", restarts))
	main.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: vol}}

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := d.Runtime.GetContainerEvents(sctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	id := runContainer(t, podID, cfg, main)
	for stops := 0; stops < restarts; {
		e, err := stream.Recv()
		if err != nil {
			t.Fatalf("events: %v (after %d of %d exits)", err, stops, restarts)
		}
		if e.ContainerId != id || e.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
			continue
		}
		stops++
		st, err := d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if s := st.GetStatus(); s.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("exit %d: status read after the stopped event: %s (exit code %d), want running: the rule restarted it",
				stops, s.State, s.ExitCode)
		}
	}
}
