package integration

import (
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestListFilters checks every filter of ListPodSandbox and ListContainers
// on pods and containers in each state.
func TestListFilters(t *testing.T) {
	ctx := begin(t)
	// Every object here carries run=<tag>, so what other tests might have
	// left does not count.
	tag := randomHex(8)
	pod := func(name, app string) (string, *runtimeapi.PodSandboxConfig) {
		cfg := newPodConfig(name)
		cfg.Labels["run"], cfg.Labels["app"] = tag, app
		return runPod(t, cfg), cfg
	}
	ctr := func(name, role string, cmd ...string) *runtimeapi.ContainerConfig {
		cfg := newContainerConfig(name, cmd...)
		cfg.Labels["run"], cfg.Labels["role"] = tag, role
		return cfg
	}

	podA, cfgA := pod("list-a", "a")
	podB, cfgB := pod("list-b", "b")
	podC, cfgC := pod("list-c", "a")
	running := runContainer(t, podA, cfgA, ctr("running", "main", "sleep", "3600"))
	created := createContainer(t, podA, cfgA, ctr("created", "side", "sleep", "3600"))
	exited := runContainer(t, podB, cfgB, ctr("exited", "main", "true"))
	waitExited(t, exited)
	inStopped := runContainer(t, podC, cfgC, ctr("in-stopped", "main", "sleep", "3600"))
	if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podC}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	run := map[string]string{"run": tag}

	for _, tc := range []struct {
		name   string
		filter *runtimeapi.PodSandboxFilter
		want   []string
	}{
		{"labels", &runtimeapi.PodSandboxFilter{LabelSelector: run}, []string{podA, podB, podC}},
		{"id", &runtimeapi.PodSandboxFilter{Id: podB}, []string{podB}},
		{"id prefix", &runtimeapi.PodSandboxFilter{Id: podB[:12]}, []string{podB}},
		{"unknown id", &runtimeapi.PodSandboxFilter{Id: "0000000000000000"}, nil},
		{"ready", &runtimeapi.PodSandboxFilter{LabelSelector: run, State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}, []string{podA, podB}},
		{"not ready", &runtimeapi.PodSandboxFilter{LabelSelector: run, State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}}, []string{podC}},
		{"two labels", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"run": tag, "app": "a"}}, []string{podA, podC}},
		{"label value matching none", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"run": tag, "app": "z"}}, nil},
		{"id and state", &runtimeapi.PodSandboxFilter{Id: podC, State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}, nil},
	} {
		t.Run("pods by "+tc.name, func(t *testing.T) {
			resp, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: tc.filter})
			if err != nil {
				t.Fatal(err)
			}
			if got := podIDs(resp.Items); !sameSet(got, tc.want) {
				t.Errorf("got pods %v, want %v", shortAll(got), shortAll(tc.want))
			}
		})
	}

	state := func(s runtimeapi.ContainerState) *runtimeapi.ContainerStateValue {
		return &runtimeapi.ContainerStateValue{State: s}
	}
	for _, tc := range []struct {
		name   string
		filter *runtimeapi.ContainerFilter
		want   []string
	}{
		{"labels", &runtimeapi.ContainerFilter{LabelSelector: run}, []string{running, created, exited, inStopped}},
		{"id", &runtimeapi.ContainerFilter{Id: created}, []string{created}},
		{"id prefix", &runtimeapi.ContainerFilter{Id: created[:12]}, []string{created}},
		{"unknown id", &runtimeapi.ContainerFilter{Id: "0000000000000000"}, nil},
		{"running", &runtimeapi.ContainerFilter{LabelSelector: run, State: state(runtimeapi.ContainerState_CONTAINER_RUNNING)}, []string{running}},
		{"created", &runtimeapi.ContainerFilter{LabelSelector: run, State: state(runtimeapi.ContainerState_CONTAINER_CREATED)}, []string{created}},
		{"exited", &runtimeapi.ContainerFilter{LabelSelector: run, State: state(runtimeapi.ContainerState_CONTAINER_EXITED)}, []string{exited, inStopped}},
		{"pod", &runtimeapi.ContainerFilter{PodSandboxId: podA}, []string{running, created}},
		{"pod prefix", &runtimeapi.ContainerFilter{PodSandboxId: podA[:12]}, []string{running, created}},
		{"pod and state", &runtimeapi.ContainerFilter{PodSandboxId: podA, State: state(runtimeapi.ContainerState_CONTAINER_RUNNING)}, []string{running}},
		{"two labels", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"run": tag, "role": "main"}}, []string{running, exited, inStopped}},
		{"pod and label", &runtimeapi.ContainerFilter{PodSandboxId: podA, LabelSelector: map[string]string{"role": "side"}}, []string{created}},
	} {
		t.Run("containers by "+tc.name, func(t *testing.T) {
			resp, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: tc.filter})
			if err != nil {
				t.Fatal(err)
			}
			if got := containerIDs(resp.Containers); !sameSet(got, tc.want) {
				t.Errorf("got containers %v, want %v", shortAll(got), shortAll(tc.want))
			}
		})
	}

	t.Run("listed fields", func(t *testing.T) {
		resp, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: running}})
		if err != nil || len(resp.Containers) != 1 {
			t.Fatalf("ListContainers %s: %v, %v", running, resp, err)
		}
		c := resp.Containers[0]
		if c.PodSandboxId != podA || c.Metadata.GetName() != "running" || c.State != runtimeapi.ContainerState_CONTAINER_RUNNING ||
			c.ImageRef != images.busyboxID || c.Labels["role"] != "main" || c.CreatedAt == 0 {
			t.Errorf("listed container %v does not match what was created", c)
		}
		pods, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: podA}})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("ListPodSandbox %s: %v, %v", podA, pods, err)
		}
		p := pods.Items[0]
		if p.Metadata.GetUid() != cfgA.Metadata.Uid || p.State != runtimeapi.PodSandboxState_SANDBOX_READY || p.Labels["app"] != "a" || p.CreatedAt == 0 {
			t.Errorf("listed pod %v does not match what was run", p)
		}
	})
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func shortAll(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return out
}
