package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func sleeperPod(name, runtimeClass string) *corev1.Pod {
	no := false
	grace := int64(1)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  &no,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "main", Image: "busybox", ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"sleep", "3600"},
			}},
		},
	}
	if runtimeClass != "" {
		p.Spec.RuntimeClassName = &runtimeClass
	}
	return p
}

// A pod of RuntimeClass warmpod is scheduled onto the node through the class's node selector and
// toleration, and warmpod runs its sandbox with the handler "warmpod".
func TestRuntimeClassWarmpod(t *testing.T) {
	ensureRuntimeClass(t)
	ns := newNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p, err := cl.cs.CoreV1().Pods(ns).Create(ctx, sleeperPod("rc", "warmpod"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p = waitPod(t, ns, p.Name, 2*time.Minute, podReady)
	if p.Spec.NodeName != nodeName {
		t.Errorf("pod ran on %q, want %q", p.Spec.NodeName, nodeName)
	}
	if got := p.Spec.NodeSelector[nodeLabel]; got != labelValue {
		t.Errorf("the RuntimeClass admission gave the pod node selector %v, want %s=%s", p.Spec.NodeSelector, nodeLabel, labelValue)
	}
	sb := criSandbox(t, string(p.UID))
	if sb.RuntimeHandler != "warmpod" {
		t.Errorf("sandbox runtime handler = %q, want warmpod", sb.RuntimeHandler)
	}
}

// Without the RuntimeClass (and its toleration) a pod does not land on the tainted warmpod node.
func TestNoRuntimeClassNotScheduled(t *testing.T) {
	ns := newNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := cl.cs.CoreV1().Pods(ns).Create(ctx, sleeperPod("plain", ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitPod(t, ns, p.Name, time.Minute, func(p *corev1.Pod) error {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return nil
			}
		}
		return fmt.Errorf("not reported unschedulable yet")
	})
}

// A RuntimeClass whose handler warmpod does not serve gives the pod the kubelet's sandbox creation error,
// naming the handler, instead of a hang.
func TestRuntimeClassUnknownHandler(t *testing.T) {
	ensureRuntimeClass(t)
	ns := newNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rcName := "no-such-" + randomHex(4)
	rc := &nodev1.RuntimeClass{
		ObjectMeta: metav1.ObjectMeta{Name: rcName},
		Handler:    "no-such-handler",
		Scheduling: &nodev1.Scheduling{
			NodeSelector: map[string]string{nodeLabel: labelValue},
			Tolerations:  []corev1.Toleration{{Key: nodeTaint, Operator: corev1.TolerationOpEqual, Value: labelValue, Effect: corev1.TaintEffectNoSchedule}},
		},
	}
	if _, err := cl.cs.NodeV1().RuntimeClasses().Create(ctx, rc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cl.cs.NodeV1().RuntimeClasses().Delete(context.Background(), rcName, metav1.DeleteOptions{})
	}()
	p, err := cl.cs.CoreV1().Pods(ns).Create(ctx, sleeperPod("bad-handler", rcName), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = cl.poll(ctx, cl.kubelet, 2*time.Minute, func() error {
		evs := podEvents(ns, p.Name)
		if strings.Contains(evs, "FailedCreatePodSandBox") && strings.Contains(evs, "no-such-handler") {
			return nil
		}
		return fmt.Errorf("no FailedCreatePodSandBox event naming the handler yet; events:\n%s", evs)
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := cl.cs.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != corev1.PodPending {
		t.Errorf("pod phase = %s, want Pending", got.Status.Phase)
	}
	t.Logf("events of the pod:\n%s", podEvents(ns, p.Name))
}
