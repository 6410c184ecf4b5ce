package e2e

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The node registered with warmpod as its runtime, with the label and taint the RuntimeClass names.
func TestNodeRunsOnWarmpod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := cl.cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := cl.rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The kubelet shows "Unknown" for a runtime version it cannot parse.
	if got, want := n.Status.NodeInfo.ContainerRuntimeVersion, "warmpod://"+v.GetRuntimeVersion(); got != want {
		t.Errorf("node's container runtime = %q, want %q (the CRI Version's RuntimeVersion)", got, want)
	}
	if n.Labels[nodeLabel] != labelValue {
		t.Errorf("node label %s = %q, want %q", nodeLabel, n.Labels[nodeLabel], labelValue)
	}
	found := false
	for _, taint := range n.Spec.Taints {
		found = found || (taint.Key == nodeTaint && taint.Value == labelValue)
	}
	if !found {
		t.Errorf("node taints %v lack %s=%s", n.Spec.Taints, nodeTaint, labelValue)
	}
	t.Logf("node %s: kubelet %s, runtime %s", n.Name, n.Status.NodeInfo.KubeletVersion, n.Status.NodeInfo.ContainerRuntimeVersion)
}
