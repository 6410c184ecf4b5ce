package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

// resetCode is the exit code that restarts the whole pod in the tests and examples.
const resetCode = 88

// restartPath is who restarts the pod when a container exits with resetCode.
type restartPath string

const (
	// kubeletPath: the containers' restartPolicyRules (KEP-5532); the kubelet stops, removes, creates and
	// starts every container through CRI.
	kubeletPath restartPath = "kubelet"
	// warmpodPath: the pod annotation warmpod.io/restart-policy-rules; warmpod's shim restarts the pod in
	// place by itself and the kubelet sees the same containers running.
	warmpodPath restartPath = "warmpod"
)

// waitForTrigger is a container command: it runs until the file /data/exit-<name> appears, removes it
// and exits with resetCode.
func waitForTrigger(name string) []string {
	return []string{"sh", "-c", fmt.Sprintf(
		`trap 'exit 0' TERM; f=/data/exit-%s; while [ ! -e $f ]; do usleep 10000; done; rm -f $f; exit %d`, name, resetCode)}
}

// resetPodSpec is KEP-5532's shape: an init container that records each run in an emptyDir, a sidecar
// and a main container, both restarting the whole pod on resetCode.
func resetPodSpec(name string, path restartPath) *corev1.Pod {
	no := false
	grace := int64(1)
	always := corev1.ContainerRestartPolicyAlways
	rules := []corev1.ContainerRestartRule{{
		Action:    corev1.ContainerRestartRuleActionRestartAllContainers,
		ExitCodes: &corev1.ContainerRestartRuleOnExitCodes{Operator: corev1.ContainerRestartRuleOnExitCodesOpIn, Values: []int32{resetCode}},
	}}
	mount := []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}},
		Spec: corev1.PodSpec{
			RuntimeClassName:              ptr("warmpod"),
			AutomountServiceAccountToken:  &no,
			TerminationGracePeriodSeconds: &grace,
			RestartPolicy:                 corev1.RestartPolicyAlways,
			Volumes:                       []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			InitContainers: []corev1.Container{
				{Name: "prepare", Image: "busybox", ImagePullPolicy: corev1.PullIfNotPresent, VolumeMounts: mount,
					Command: []string{"sh", "-c", "echo run >> /data/init-runs"}},
				{Name: "sidecar", Image: "busybox", ImagePullPolicy: corev1.PullIfNotPresent, VolumeMounts: mount,
					RestartPolicy: &always, Command: waitForTrigger("sidecar")},
			},
			Containers: []corev1.Container{
				{Name: "main", Image: "busybox", ImagePullPolicy: corev1.PullIfNotPresent, VolumeMounts: mount,
					Command: waitForTrigger("main")},
			},
		},
	}
	switch path {
	case kubeletPath:
		p.Spec.InitContainers[1].RestartPolicyRules = rules
		p.Spec.Containers[0].RestartPolicy = &always
		p.Spec.Containers[0].RestartPolicyRules = rules
	case warmpodPath:
		data, _ := json.Marshal(map[string]any{"sidecar": rules, "main": rules})
		p.Annotations["warmpod.io/restart-policy-rules"] = string(data)
		p.Annotations["warmpod.io/init-containers"] = "prepare" // run to completion; the sidecar is not one
	}
	return p
}

func ptr[T any](v T) *T { return &v }

// eventLog records warmpod's CRI container events, as the kubelet's evented PLEG receives them.
type eventLog struct {
	mu     sync.Mutex
	events []*runtimeapi.ContainerEventResponse
	cancel context.CancelFunc
	done   chan struct{}
}

func watchEvents(t *testing.T) *eventLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &eventLog{cancel: cancel, done: make(chan struct{})}
	stream, err := cl.rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(l.done)
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			l.mu.Lock()
			l.events = append(l.events, ev)
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-l.done })
	return l
}

// stoppedAt is the time of the first CONTAINER_STOPPED_EVENT of container id, or 0.
func (l *eventLog) stoppedAt(id string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.ContainerId == id && e.ContainerEventType == runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
			return e.CreatedAt
		}
	}
	return 0
}

// dump writes the events of the pod with uid, one a line with the statuses each carried, to path.
func (l *eventLog) dump(path, uid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	var t0 int64
	for _, e := range l.events {
		if e.PodSandboxStatus.GetMetadata().GetUid() != uid {
			continue
		}
		if t0 == 0 {
			t0 = e.CreatedAt
		}
		fmt.Fprintf(&b, "+%8.3fms %-26s %.12s sandbox=%s", float64(e.CreatedAt-t0)/1e6, e.ContainerEventType, e.ContainerId,
			e.PodSandboxStatus.GetState())
		for _, s := range e.ContainersStatuses {
			fmt.Fprintf(&b, " [%s %.12s a%d %s exit=%d]", s.GetMetadata().GetName(), s.Id, s.GetMetadata().GetAttempt(),
				strings.TrimPrefix(s.State.String(), "CONTAINER_"), s.ExitCode)
		}
		b.WriteString("\n")
	}
	_ = os.WriteFile(path, []byte(b.String()), 0o644)
}

// criContainers lists warmpod's containers of a sandbox by name (the newest attempt of each).
func criContainers(ctx context.Context, sandboxID string) (map[string]*runtimeapi.Container, error) {
	resp, err := cl.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: sandboxID}})
	if err != nil {
		return nil, err
	}
	out := map[string]*runtimeapi.Container{}
	for _, c := range resp.Containers {
		n := c.Metadata.GetName()
		if old, ok := out[n]; !ok || c.Metadata.GetAttempt() > old.Metadata.GetAttempt() || c.CreatedAt > old.CreatedAt {
			out[n] = c
		}
	}
	return out, nil
}

// restartSample is one measured restart: exit of the container that asked for it, to the main container
// running again (container start times as warmpod recorded them).
type restartSample struct {
	exiter  string
	latency time.Duration
}

type restartResult struct {
	samples           []restartSample
	fromWarm, creates int
}

// measureRestarts makes n restarts of the running pod (exits alternate between sidecar and main) and
// measures each from the exit to the main container running again, with everything ready in the API.
func measureRestarts(t *testing.T, ns, name string, path restartPath, n int, events *eventLog) restartResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n)*time.Minute+time.Minute)
	defer cancel()
	pod := waitPod(t, ns, name, 90*time.Second, podReady)
	// A static pod's mirror has a UID of its own; the kubelet and warmpod know the pod by the static one.
	uid, ip := string(pod.UID), pod.Status.PodIP
	if m := pod.Annotations["kubernetes.io/config.mirror"]; m != "" {
		uid = m
	}
	sb := criSandbox(t, uid)
	wp := warmpodv1.NewWarmpodClient(cl.conn)
	var res restartResult
	for i := range n {
		exiter := []string{"sidecar", "main"}[i%2]
		before, err := criContainers(ctx, sb.Id)
		if err != nil {
			t.Fatal(err)
		}
		var beforeStatus *warmpodv1.PodStatusResponse
		if path == warmpodPath {
			if beforeStatus, err = wp.PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: sb.Id}); err != nil {
				t.Fatal(err)
			}
		}
		// The pod at rest: every container's next generation pre-created, as it is between tasks or
		// sessions. A restart that comes sooner creates cold (80-400 ms on a loaded 2-core VM); here
		// every create must be served warm, which fails only when a create's process shape differs
		// from the pre-created one.
		if err := cl.poll(ctx, cl.kubelet, time.Minute, func() error {
			st, err := wp.PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: sb.Id})
			if err != nil {
				return err
			}
			warm := map[string]bool{}
			for _, c := range st.Containers {
				warm[c.Id] = c.Warm
			}
			for name, c := range before {
				if !warm[c.Id] {
					return fmt.Errorf("no next generation of %s pre-created yet", name)
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("before restart %d: %v", i+1, err)
		}
		trigger := filepath.Join(emptyDirPath(uid, "data"), "exit-"+exiter)
		if err := os.WriteFile(trigger, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		var exitAt, runAt int64
		switch path {
		case kubeletPath:
			// Every container is replaced: wait for a new main container running.
			var newMain *runtimeapi.Container
			err = cl.poll(ctx, cl.kubelet, time.Minute, func() error {
				now, err := criContainers(ctx, sb.Id)
				if err != nil {
					return err
				}
				m := now["main"]
				if m == nil || m.Id == before["main"].Id || m.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
					return fmt.Errorf("no new main container running yet")
				}
				newMain = m
				return nil
			})
			if err != nil {
				events.dump(filepath.Join(cl.logDir, "events-"+name+".txt"), uid)
				t.Fatalf("restart %d (%s exited): %v\n%s", i+1, exiter, err, podEvents(ns, name))
			}
			st, err := cl.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: newMain.Id})
			if err != nil {
				t.Fatal(err)
			}
			runAt = st.Status.StartedAt
			exitAt = events.stoppedAt(before[exiter].Id)
			if exitAt == 0 {
				t.Fatalf("restart %d: no CONTAINER_STOPPED_EVENT for %s %s", i+1, exiter, before[exiter].Id)
			}
			now, _ := criContainers(ctx, sb.Id)
			for _, c := range now {
				res.creates++
				if fromWarm(ctx, t, c.Id) {
					res.fromWarm++
				}
			}
		case warmpodPath:
			var st *warmpodv1.PodStatusResponse
			err = cl.poll(ctx, cl.kubelet, time.Minute, func() error {
				st, err = wp.PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: sb.Id})
				if err != nil {
					return err
				}
				if st.Resets <= beforeStatus.Resets || st.AllContainersRestarting {
					return fmt.Errorf("reset %d not done yet", i+1)
				}
				for _, c := range st.Containers {
					if c.Name == "main" && c.State == "CONTAINER_RUNNING" {
						return nil
					}
				}
				return fmt.Errorf("main not running yet")
			})
			if err != nil {
				cl.saveShimLogs()
				t.Fatalf("restart %d (%s exited): %v", i+1, exiter, err)
			}
			for _, c := range st.Containers {
				if c.Name == exiter {
					exitAt = c.LastTermination.GetFinishedAt()
				}
				if c.Name == "main" {
					runAt = c.StartedAt
				}
				res.creates++
				if c.FromWarm {
					res.fromWarm++
				}
			}
		}
		lat := time.Duration(runAt - exitAt)
		res.samples = append(res.samples, restartSample{exiter: exiter, latency: lat})
		t.Logf("restart %d: %s exited, main running again %s later", i+1, exiter, lat.Round(time.Microsecond))
		// Settled before the next one: every container ready in the API.
		waitPod(t, ns, name, time.Minute, func(p *corev1.Pod) error {
			if err := podReady(p); err != nil {
				return err
			}
			if path == kubeletPath {
				for _, cs := range p.Status.ContainerStatuses {
					if cs.RestartCount < int32(i+1) {
						return fmt.Errorf("%s restart count %d, want %d", cs.Name, cs.RestartCount, i+1)
					}
				}
			}
			return nil
		})
	}
	// What the API shows after the restarts.
	pod = waitPod(t, ns, name, time.Minute, podReady)
	if pod.Status.PodIP != ip {
		t.Errorf("pod IP changed: %s -> %s", ip, pod.Status.PodIP)
	}
	if got := criSandbox(t, uid).Id; got != sb.Id {
		t.Errorf("sandbox changed: %s -> %s", sb.Id, got)
	}
	runs, err := os.ReadFile(filepath.Join(emptyDirPath(uid, "data"), "init-runs"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(runs), "run\n"); got != n+1 {
		t.Errorf("the init container ran %d times (emptyDir file kept across restarts), want %d", got, n+1)
	}
	all := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range all {
		want := int32(n)
		if path == warmpodPath {
			want = 0 // the kubelet restarted nothing
		}
		if cs.RestartCount < want || (path == warmpodPath && cs.RestartCount != 0) {
			t.Errorf("%s: API restart count %d, want %d", cs.Name, cs.RestartCount, want)
		}
	}
	t.Logf("pod %s: %s", name, podSummary(pod))
	return res
}

func fromWarm(ctx context.Context, t *testing.T, id string) bool {
	st, err := cl.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Errorf("status of %s: %v", id, err)
		return false
	}
	var info struct {
		FromWarm bool `json:"fromWarm"`
	}
	_ = json.Unmarshal([]byte(st.Info["info"]), &info)
	return info.FromWarm
}

// percentiles returns p50, p90 and max of the samples.
func percentiles(s []restartSample) (p50, p90, worst time.Duration) {
	d := make([]time.Duration, len(s))
	for i, x := range s {
		d[i] = x.latency
	}
	slices.Sort(d)
	if len(d) == 0 {
		return 0, 0, 0
	}
	return d[len(d)/2], d[(len(d)*9)/10], d[len(d)-1]
}

// report prints a latency line that "make e2e" collects.
func report(t *testing.T, what string, res restartResult) {
	p50, p90, worst := percentiles(res.samples)
	line := fmt.Sprintf("e2e latency: %s, %s PLEG: exit -> main running again over %d restarts: p50 %s p90 %s max %s; creates served warm %d/%d",
		what, pleg(), len(res.samples), p50.Round(time.Microsecond), p90.Round(time.Microsecond), worst.Round(time.Microsecond), res.fromWarm, res.creates)
	t.Log(line)
	fmt.Println(line)
}

// restartCount is how many restarts a measurement makes ($E2E_RESTARTS, default 20).
func restartCount() int {
	var n int
	if _, err := fmt.Sscan(os.Getenv("E2E_RESTARTS"), &n); err == nil && n > 0 {
		return n
	}
	return 20
}

// KEP-5532 through the real kubelet: a pod from the API server restarts all its containers in order when
// its sidecar or main container exits with the reset code.
func TestRestartAllContainersKubelet(t *testing.T) {
	ensureRuntimeClass(t)
	ns := newNamespace(t)
	events := watchEvents(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := cl.cs.CoreV1().Pods(ns).Create(ctx, resetPodSpec("reset", kubeletPath), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The CRI events of the pod, kept with the run's logs ($E2E_LOG_DIR).
	defer events.dump(filepath.Join(cl.logDir, "events-kubelet-path.txt"), string(p.UID))
	res := measureRestarts(t, ns, p.Name, kubeletPath, restartCount(), events)
	report(t, "kubelet restartPolicyRules (API pod)", res)
	if res.fromWarm != res.creates {
		t.Errorf("%d of %d containers of the restarts were served from a pre-created generation, want all", res.fromWarm, res.creates)
	}
}

// The same pod with warmpod's own restart rules: the shim restarts it in place, the kubelet restarts
// nothing and the pod stays Ready.
func TestRestartAllContainersWarmpodRules(t *testing.T) {
	ensureRuntimeClass(t)
	ns := newNamespace(t)
	events := watchEvents(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := cl.cs.CoreV1().Pods(ns).Create(ctx, resetPodSpec("reset", warmpodPath), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer events.dump(filepath.Join(cl.logDir, "events-warmpod-path.txt"), string(p.UID))
	res := measureRestarts(t, ns, p.Name, warmpodPath, restartCount(), events)
	report(t, "warmpod restart rules (API pod)", res)
}

// The same pod as a static pod (a manifest in the kubelet's staticPodPath): the kind of pod Kubernetes
// issues 121349 and 123087 saw fail under the evented PLEG.
func TestRestartAllContainersStaticPod(t *testing.T) {
	events := watchEvents(t)
	pod := resetPodSpec("static-reset", kubeletPath)
	pod.APIVersion, pod.Kind = "v1", "Pod"
	pod.Namespace = "default"
	// Static pods are not admitted by the API server: no RuntimeClass; warmpod's default handler runs them.
	pod.Spec.RuntimeClassName = nil
	data, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(cl.staticPods, "static-reset.json")
	if err := os.WriteFile(manifest, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mirror := "static-reset-" + nodeName
	t.Cleanup(func() {
		_ = os.Remove(manifest)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		err := cl.poll(ctx, cl.kubelet, 2*time.Minute, func() error {
			if _, err := cl.cs.CoreV1().Pods("default").Get(ctx, mirror, metav1.GetOptions{}); err == nil {
				return fmt.Errorf("mirror pod %s still there", mirror)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
	defer func() {
		if p, err := cl.cs.CoreV1().Pods("default").Get(context.Background(), mirror, metav1.GetOptions{}); err == nil {
			events.dump(filepath.Join(cl.logDir, "events-static-pod.txt"), p.Annotations["kubernetes.io/config.mirror"])
		}
	}()
	n := max(restartCount()/4, 3)
	res := measureRestarts(t, "default", mirror, kubeletPath, n, events)
	report(t, "kubelet restartPolicyRules (static pod)", res)
}
