package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// newNamespace makes a namespace for one test and deletes it, with its pods, when the test ends.
func newNamespace(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.Trim(name, "-") + "-" + randomHex(4)
	if _, err := cl.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteNamespace(t, name) })
	return name
}

// deleteNamespace deletes the namespace's pods at once and waits until the kubelet stopped them all.
func deleteNamespace(t *testing.T, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl.saveShimLogs()
	zero := int64(0)
	_ = cl.cs.AppsV1().Deployments(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	_ = cl.cs.AppsV1().ReplicaSets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	_ = cl.cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	err := cl.poll(ctx, cl.kubelet, 2*time.Minute, func() error {
		pods, err := cl.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d pods left in %s", len(pods.Items), ns)
		}
		return nil
	})
	if err != nil {
		t.Errorf("delete namespace %s: %v", ns, err)
	}
	_ = cl.cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
}

// ensureRuntimeClass applies deploy/runtimeclass.yaml once.
var runtimeClassOnce sync.Once

func ensureRuntimeClass(t *testing.T) {
	t.Helper()
	var err error
	runtimeClassOnce.Do(func() {
		for _, obj := range decodeManifest(t, "../../deploy/runtimeclass.yaml") {
			rc, ok := obj.(*nodev1.RuntimeClass)
			if !ok {
				err = fmt.Errorf("deploy/runtimeclass.yaml holds a %T", obj)
				return
			}
			_, err = cl.cs.NodeV1().RuntimeClasses().Create(context.Background(), rc, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				err = nil
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// decodeManifest reads the objects of a multi-document YAML file.
func decodeManifest(t *testing.T, path string) []runtime.Object {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []runtime.Object
	for _, doc := range strings.Split(string(data), "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(doc), "---")) == "" {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, obj)
	}
	return out
}

// waitPod polls the pod until cond holds (nil) or timeout passes.
func waitPod(t *testing.T, ns, name string, timeout time.Duration, cond func(*corev1.Pod) error) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var pod *corev1.Pod
	err := cl.poll(ctx, cl.kubelet, timeout, func() error {
		p, err := cl.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		pod = p
		return cond(p)
	})
	if err != nil {
		t.Fatalf("pod %s/%s: %v\npod status: %s", ns, name, err, podSummary(pod))
	}
	return pod
}

func podReady(p *corev1.Pod) error {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return nil
		}
	}
	return fmt.Errorf("not ready (phase %s)", p.Status.Phase)
}

func podSummary(p *corev1.Pod) string {
	if p == nil {
		return "<none>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s ip %s", p.Status.Phase, p.Status.PodIP)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, "; %s=%s %s", c.Type, c.Status, c.Reason)
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		state := "?"
		switch {
		case cs.State.Running != nil:
			state = "running"
		case cs.State.Terminated != nil:
			state = fmt.Sprintf("terminated(%d %s)", cs.State.Terminated.ExitCode, cs.State.Terminated.Reason)
		case cs.State.Waiting != nil:
			state = fmt.Sprintf("waiting(%s: %s)", cs.State.Waiting.Reason, cs.State.Waiting.Message)
		}
		fmt.Fprintf(&b, "; %s %s restarts=%d ready=%v", cs.Name, state, cs.RestartCount, cs.Ready)
	}
	return b.String()
}

// podEvents is the pod's events, oldest first, one a line.
func podEvents(ns, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	evs, err := cl.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	sort.Slice(evs.Items, func(i, j int) bool { return evs.Items[i].LastTimestamp.Before(&evs.Items[j].LastTimestamp) })
	var b strings.Builder
	for _, e := range evs.Items {
		fmt.Fprintf(&b, "%s %s x%d: %s\n", e.Type, e.Reason, e.Count, e.Message)
	}
	return b.String()
}

// criSandbox finds warmpod's ready sandbox of the pod with uid.
func criSandbox(t *testing.T, uid string) *runtimeapi.PodSandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cl.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
		LabelSelector: map[string]string{"io.kubernetes.pod.uid": uid},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Items) != 1 {
		t.Fatalf("warmpod has %d ready sandboxes of pod uid %s, want 1", len(resp.Items), uid)
	}
	return resp.Items[0]
}

// emptyDirPath is where the kubelet keeps the pod's emptyDir volume on the host.
func emptyDirPath(uid, volume string) string {
	return filepath.Join(cl.kubeletRoot, "pods", uid, "volumes", "kubernetes.io~empty-dir", volume)
}
