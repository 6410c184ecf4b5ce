package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The node registered with warmpod as its runtime, with the label and taint the RuntimeClass names.
func TestNodeRunsOnWarmpod(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := cl.cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Status.NodeInfo.ContainerRuntimeVersion; !strings.HasPrefix(got, "warmpod://") {
		t.Errorf("node's container runtime = %q, want warmpod://<version>", got)
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
