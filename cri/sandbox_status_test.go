package cri

import (
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox"
)

// A PodSandboxStatus answer never carries a timestamp or container statuses: with them a v1.37 kubelet
// running the EventedPLEG gate reads the pod's containers from the answer, loses track of which of them
// belong to the current sandbox, and runs the pod's first init container again and again.
func TestSandboxStatusLeavesContainersToTheKubelet(t *testing.T) {
	info := &sandbox.PodInfo{
		ID:        "p1",
		Config:    sandbox.PodConfig{Name: "pod", Namespace: "ns", UID: "uid"},
		CreatedAt: 1,
		State:     sandbox.PodReady,
		IPs:       []string{"10.0.0.2"},
	}
	for _, verbose := range []bool{false, true} {
		resp := sandboxStatusResponse(info, verbose)
		if resp.Timestamp != 0 {
			t.Errorf("verbose=%v: timestamp = %d, want 0", verbose, resp.Timestamp)
		}
		if len(resp.ContainersStatuses) != 0 {
			t.Errorf("verbose=%v: %d container statuses, want none", verbose, len(resp.ContainersStatuses))
		}
		if st := resp.GetStatus(); st.GetId() != "p1" || st.GetState() != runtime.PodSandboxState_SANDBOX_READY || st.GetMetadata().GetUid() != "uid" {
			t.Errorf("verbose=%v: status = %v", verbose, st)
		}
		if _, ok := resp.Info["info"]; ok != verbose {
			t.Errorf("verbose=%v: info present = %v", verbose, ok)
		}
	}
}
