package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

// loadHeapSlack is how far above its baseline the daemon's Go heap in use
// may stay once every pod is gone. The heap, not the RSS, is compared:
// the race detector keeps the shadow memory of whatever the heap once
// used, so a race-built daemon's RSS stays near its peak (about 300 MiB
// after 20 s of load) with nothing leaked. A leak of the load's size
// (thousands of calls) exceeds it.
const loadHeapSlack = 32 << 20

// settle stops the restart rules' crashes: each pod's crasher finds the
// stop file at its next start and then sleeps.
func (lr *loadRun) settle(t *testing.T) {
	t.Helper()
	for _, s := range lr.slots {
		if s.rules {
			if err := os.WriteFile(filepath.Join(s.vol, "stop"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// checkConsistent waits until the daemon's lists, its statuses, the
// shims' records and the containers' processes agree, and every
// container and pod is in a state CRI allows; after a minute it fails the
// test with what still disagrees.
func (lr *loadRun) checkConsistent(t *testing.T) {
	t.Helper()
	var problems []string
	deadline := time.Now().Add(time.Minute)
	for {
		problems = lr.consistencyProblems(t)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(problems) > 0 {
		t.Errorf("after the load, the daemon, its shims and the processes disagree:\n  %s", strings.Join(problems, "\n  "))
		return
	}
	pods, ctrs := daemonCounts(t, lr.d)
	t.Logf("after the load: %d pods, %d containers, consistent between ListContainers, ContainerStatus, the shims and the processes", pods, ctrs)
}

func daemonCounts(t *testing.T, d *daemon) (pods, ctrs int) {
	t.Helper()
	ctx := testCtx(t)
	p, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return len(p.Items), len(c.Containers)
}

func (lr *loadRun) consistencyProblems(t *testing.T) []string {
	ctx := testCtx(t)
	rt, wpc := lr.d.Runtime, warmpodv1.NewWarmpodClient(lr.d.Conn())
	var out []string
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return []string{fmt.Sprintf("ListPodSandbox: %v", err)}
	}
	all, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return []string{fmt.Sprintf("ListContainers: %v", err)}
	}
	byPod := map[string][]*runtimeapi.Container{}
	for _, c := range all.Containers {
		byPod[c.PodSandboxId] = append(byPod[c.PodSandboxId], c)
	}
	for _, p := range pods.Items {
		if p.State != runtimeapi.PodSandboxState_SANDBOX_READY {
			out = append(out, fmt.Sprintf("pod %s is %s; no client stopped it", short(p.Id), p.State))
		}
		st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.Id})
		if err != nil {
			out = append(out, fmt.Sprintf("PodSandboxStatus %s: %v", short(p.Id), err))
		} else if st.Status.State != p.State {
			out = append(out, fmt.Sprintf("pod %s: listed %s, status %s", short(p.Id), p.State, st.Status.State))
		}
		filtered, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: p.Id}})
		if err != nil {
			out = append(out, fmt.Sprintf("ListContainers of pod %s: %v", short(p.Id), err))
		} else if a, b := containerIDs(filtered.Containers), containerIDs(byPod[p.Id]); !sameSet(a, b) {
			out = append(out, fmt.Sprintf("pod %s: ListContainers by pod %v, in the full list %v", short(p.Id), a, b))
		}
		live, err := wpc.PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: p.Id})
		if err != nil {
			out = append(out, fmt.Sprintf("PodStatus %s: %v", short(p.Id), err))
			continue
		}
		shimState := map[string]string{}
		for _, c := range live.Containers {
			shimState[c.Id] = c.State
		}
		for _, c := range byPod[p.Id] {
			out = append(out, lr.containerProblems(ctx, c, shimState)...)
			delete(shimState, c.Id)
		}
		for id := range shimState {
			out = append(out, fmt.Sprintf("pod %s: its shim has container %s, ListContainers does not", short(p.Id), short(id)))
		}
		delete(byPod, p.Id)
	}
	for podID, cs := range byPod {
		out = append(out, fmt.Sprintf("containers %v listed for pod %s, which ListPodSandbox does not have", containerIDs(cs), short(podID)))
	}
	sort.Strings(out)
	return out
}

// containerProblems compares one listed container with its status, its
// shim's record and its process.
func (lr *loadRun) containerProblems(ctx context.Context, c *runtimeapi.Container, shimState map[string]string) []string {
	var out []string
	name := fmt.Sprintf("container %s (%s, pod %s)", short(c.Id), c.Metadata.GetName(), short(c.PodSandboxId))
	switch c.State {
	case runtimeapi.ContainerState_CONTAINER_CREATED, runtimeapi.ContainerState_CONTAINER_RUNNING, runtimeapi.ContainerState_CONTAINER_EXITED:
	default:
		out = append(out, fmt.Sprintf("%s is %s", name, c.State))
	}
	st, err := lr.d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.Id, Verbose: true})
	if err != nil {
		return append(out, fmt.Sprintf("%s: ContainerStatus: %v", name, err))
	}
	if st.Status.State != c.State {
		out = append(out, fmt.Sprintf("%s: listed %s, status %s", name, c.State, st.Status.State))
	}
	if s, ok := shimState[c.Id]; !ok {
		out = append(out, fmt.Sprintf("%s: its shim does not have it", name))
	} else if s != c.State.String() {
		out = append(out, fmt.Sprintf("%s: listed %s, its shim has %s", name, c.State, s))
	}
	if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
		var info struct {
			Pid int `json:"pid"`
		}
		if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Pid <= 0 {
			out = append(out, fmt.Sprintf("%s: running with no pid in its verbose status (%v)", name, err))
		} else if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", info.Pid)); err != nil {
			out = append(out, fmt.Sprintf("%s: running, but its process %d is gone", name, info.Pid))
		} else if _, state, _ := parseStat(string(stat)); state == "Z" {
			out = append(out, fmt.Sprintf("%s: running, but its process %d is a zombie", name, info.Pid))
		}
	}
	return out
}

// checkEvents waits until the persistent subscriber's last event of every
// container agrees with the container's state (CONTAINER_DELETED_EVENT for
// one that is gone from a pod that is still there), as the kubelet's
// evented PLEG relies on; then it stops the subscribers.
func (lr *loadRun) checkEvents(t *testing.T) {
	t.Helper()
	defer lr.stopSubscribers()
	ev := lr.events
	var problems []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		problems = lr.eventProblems(t)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	t.Logf("events: the persistent subscriber read %d on one stream; the others read %d over %d subscriptions",
		ev.n, ev.others, ev.subscriptions)
	if ev.persistentEnded != nil {
		t.Errorf("the persistent GetContainerEvents stream ended under load: %v", ev.persistentEnded)
	}
	if len(problems) > 0 {
		t.Errorf("last events disagree with the containers' states:\n  %s", strings.Join(problems, "\n  "))
	}
}

func (lr *loadRun) eventProblems(t *testing.T) []string {
	ctx := testCtx(t)
	pods, err := lr.d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return []string{err.Error()}
	}
	all, err := lr.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return []string{err.Error()}
	}
	want := map[runtimeapi.ContainerState]runtimeapi.ContainerEventType{
		runtimeapi.ContainerState_CONTAINER_CREATED: runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
		runtimeapi.ContainerState_CONTAINER_RUNNING: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerState_CONTAINER_EXITED:  runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
	}
	livePods := map[string]bool{}
	for _, p := range pods.Items {
		livePods[p.Id] = true
	}
	ev := lr.events
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var out []string
	listed := map[string]bool{}
	for _, c := range all.Containers {
		listed[c.Id] = true
		e := ev.last[c.Id]
		if e == nil {
			continue // made before the subscriber started and unchanged since
		}
		if e.ContainerEventType != want[c.State] {
			out = append(out, fmt.Sprintf("container %s (%s) is %s, its last event %s", short(c.Id), c.Metadata.GetName(), c.State, e.ContainerEventType))
		}
	}
	for id, e := range ev.last {
		if !listed[id] && livePods[ev.podOf[id]] && e.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT {
			out = append(out, fmt.Sprintf("container %s is gone from pod %s, its last event %s", short(id), short(ev.podOf[id]), e.ContainerEventType))
		}
	}
	sort.Strings(out)
	return out
}

// checkShimFDs brings every pod that kept its place through the load back
// to the shape it started with (its base containers running, the others
// removed, all warm) and checks that its shim holds no more fds and
// children (containers and their pre-created generations) than it did
// then.
func (lr *loadRun) checkShimFDs(t *testing.T) {
	t.Helper()
	ctx := testCtx(t)
	checked := 0
	for _, s := range lr.slots {
		p := s.pod.Load()
		if s.rules || p.shimFDs == 0 {
			continue
		}
		resp, err := lr.d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: p.id}})
		if err != nil {
			t.Fatal(err)
		}
		running := map[string]bool{}
		for _, c := range resp.Containers {
			if c.Metadata.Name == "main" || c.Metadata.Name == "sidecar" {
				if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING && !running[c.Metadata.Name] {
					running[c.Metadata.Name] = true
					continue
				}
			}
			if _, err := lr.d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.Id}); err != nil {
				t.Fatalf("RemoveContainer %s: %v", c.Id, err)
			}
		}
		for _, cfg := range baseContainers(s) {
			if running[cfg.Metadata.Name] {
				continue
			}
			cfg.Metadata.Attempt = 1000
			cfg.LogPath = cfg.Metadata.Name + "-final.log"
			cr, err := lr.d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
			if err != nil {
				t.Fatalf("CreateContainer %s: %v", cfg.Metadata.Name, err)
			}
			if _, err := lr.d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
				t.Fatalf("StartContainer %s: %v", cr.ContainerId, err)
			}
		}
		if why := lr.awaitWarm(p.id); why != "" {
			// Pre-creation is an optimisation: a slot that stays cold
			// is slow, not wrong. Its shim's shape cannot be compared
			// then, and the run says so.
			t.Logf("pod %s: %s after a minute; its shim's fds and children are not compared", short(p.id), why)
			continue
		}
		waitFor(t, fmt.Sprintf("pod %s's shim back to %d fds and %d children", short(p.id), p.shimFDs, p.shimChildren), func() (bool, string) {
			fds, children := countFDs(p.shimPid), len(childrenOf(p.shimPid))
			return fds <= p.shimFDs && children <= p.shimChildren,
				fmt.Sprintf("%d fds (grown: %s), %d children", fds, grownTargets(p.shimPid, p.shimFDTargets), children)
		})
		checked++
	}
	t.Logf("%d pods back in their first shape: no shim holds more fds or children than it did then", checked)
}

// removePods stops and removes every pod, a few at a time.
func (lr *loadRun) removePods(t *testing.T) {
	t.Helper()
	pods, err := lr.d.Runtime.ListPodSandbox(testCtx(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
	)
	sem := make(chan struct{}, 4)
	for _, p := range pods.Items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), loadCallDeadline)
			defer cancel()
			if err := lr.removePod(ctx, &loadPod{id: p.Id, cfg: &runtimeapi.PodSandboxConfig{}}); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("remove pod %s: %v", short(p.Id), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("removing the pods after the load:\n  %s", strings.Join(errs, "\n  "))
	}
	_ = os.RemoveAll(filepath.Join(lr.dir, "logs"))
}

// checkLeaks compares the host with the daemon's baseline once the pods
// are gone, and its RSS with its baseline.
func (lr *loadRun) checkLeaks(t *testing.T) {
	t.Helper()
	diff, err := lr.d.awaitNoLeaks(lr.baseline)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) > 0 {
		t.Errorf("after the load and the pods' removal the host differs from before:\n  %s", strings.Join(diff, "\n  "))
	}
	lr.podMu.Lock()
	ids := lr.podIDs
	lr.podMu.Unlock()
	now, err := hostVeths()
	if err != nil {
		t.Fatal(err)
	}
	veths := multisetAdded(lr.baseVeths, now)
	if len(veths) > 0 {
		t.Errorf("warmpod veths on the host that were not there before the run: %v", veths)
	}
	if len(diff) == 0 && len(veths) == 0 {
		t.Logf("leaks: none of %d pods' mounts, namespaces, cgroups, veths, processes or daemon fds left; %d daemon fds",
			len(ids), countFDs(lr.d.PID()))
	}
}

// checkMemory waits until the daemon's Go heap in use is back within
// loadHeapSlack of its baseline. Garbage counts as in use until a
// collection, and an idle daemon collects at least every 2 minutes, so it
// waits up to 3.
func (lr *loadRun) checkMemory(t *testing.T) {
	t.Helper()
	start := time.Now()
	var heap int64
	var err error
	for {
		heap, err = lr.heapInuse()
		if err != nil {
			t.Fatal(err)
		}
		if heap <= lr.baseHeap+loadHeapSlack || time.Since(start) > 3*time.Minute {
			break
		}
		time.Sleep(2 * time.Second)
	}
	rss := procRSS(lr.d.PID(), "VmRSS")
	if heap > lr.baseHeap+loadHeapSlack {
		t.Errorf("daemon heap in use %d MiB after the pods' removal, baseline %d MiB: more than %d MiB above it (RSS %d MiB)",
			heap>>20, lr.baseHeap>>20, loadHeapSlack>>20, rss>>20)
		return
	}
	t.Logf("memory: daemon heap in use %d MiB after the pods' removal (baseline %d MiB, %s later); RSS %d MiB (baseline %d MiB)",
		heap>>20, lr.baseHeap>>20, time.Since(start).Round(time.Second), rss>>20, lr.baseRSS>>20)
}

// heapInuse reads go_memstats_heap_inuse_bytes from the daemon's metrics.
func (lr *loadRun) heapInuse() (int64, error) {
	// No connection kept open: the daemon's fds are compared with their
	// baseline.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + lr.metricsAddr + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("daemon metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("daemon metrics: %w", err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_memstats_heap_inuse_bytes "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("daemon metrics: %q: %w", line, err)
			}
			return int64(f), nil
		}
	}
	return 0, errors.New("daemon metrics: no go_memstats_heap_inuse_bytes")
}

func hostVeths() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []string
	for _, l := range links {
		if name := l.Attrs().Name; l.Type() == "veth" && strings.HasPrefix(name, "wp") {
			out = append(out, name)
		}
	}
	return out, nil
}

// checkRaces fails the test with every data race the daemon and its shims
// reported: to the files GORACE names, or to their logs.
func (lr *loadRun) checkRaces(t *testing.T) {
	t.Helper()
	// The daemon writes its reports when it finds them; its exit status
	// (66) says so too, which the teardown tolerates because this reads
	// them.
	files, _ := filepath.Glob(filepath.Join(lr.raceDir, "race.*"))
	var reports []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || len(data) == 0 {
			continue
		}
		reports = append(reports, fmt.Sprintf("==== %s\n%s", filepath.Base(f), truncate(string(data), 20000)))
	}
	if log := lr.d.LogSince(0); strings.Contains(log, "WARNING: DATA RACE") {
		reports = append(reports, "the daemon log has a race report")
	}
	if len(reports) > 0 {
		t.Errorf("%d data race reports from the daemon and its shims:\n%s", len(reports), strings.Join(reports, "\n"))
		return
	}
	t.Log("no data race reported by the daemon or its shims")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n... (truncated)"
}
