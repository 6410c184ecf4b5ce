package cri

import (
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/sandbox"
)

func TestMatchContainer(t *testing.T) {
	c := &sandbox.ContainerInfo{ID: "c1234", PodID: "p5678"}
	c.Config.Labels = map[string]string{"app": "web", "tier": "front"}
	tests := []struct {
		name string
		f    containerFilter
		want bool
	}{
		{"nil list filter", (*runtime.ContainerFilter)(nil), true},
		{"nil stats filter", (*runtime.ContainerStatsFilter)(nil), true},
		{"empty filter", &runtime.ContainerFilter{}, true},
		{"id prefix", &runtime.ContainerFilter{Id: "c12"}, true},
		{"full id", &runtime.ContainerStatsFilter{Id: "c1234"}, true},
		{"other id", &runtime.ContainerFilter{Id: "c2"}, false},
		{"pod id prefix", &runtime.ContainerStatsFilter{PodSandboxId: "p56"}, true},
		{"other pod id", &runtime.ContainerFilter{PodSandboxId: "p6"}, false},
		{"labels", &runtime.ContainerFilter{LabelSelector: map[string]string{"app": "web"}}, true},
		{"other label value", &runtime.ContainerStatsFilter{LabelSelector: map[string]string{"app": "db"}}, false},
		{"missing label", &runtime.ContainerFilter{LabelSelector: map[string]string{"zone": "a"}}, false},
		{"all fields", &runtime.ContainerStatsFilter{Id: "c1", PodSandboxId: "p5", LabelSelector: map[string]string{"tier": "front"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchContainer(tt.f, c); got != tt.want {
				t.Errorf("matchContainer = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMatchPod(t *testing.T) {
	p := &sandbox.PodInfo{ID: "p5678"}
	p.Config.Labels = map[string]string{"app": "web"}
	tests := []struct {
		name string
		f    podFilter
		want bool
	}{
		{"nil list filter", (*runtime.PodSandboxFilter)(nil), true},
		{"nil stats filter", (*runtime.PodSandboxStatsFilter)(nil), true},
		{"empty filter", &runtime.PodSandboxFilter{}, true},
		{"id prefix", &runtime.PodSandboxStatsFilter{Id: "p56"}, true},
		{"other id", &runtime.PodSandboxFilter{Id: "p6"}, false},
		{"labels", &runtime.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "web"}}, true},
		{"other label value", &runtime.PodSandboxFilter{LabelSelector: map[string]string{"app": "db"}}, false},
		{"id and labels", &runtime.PodSandboxFilter{Id: "p5", LabelSelector: map[string]string{"app": "web"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchPod(tt.f, p); got != tt.want {
				t.Errorf("matchPod = %v, want %v", got, tt.want)
			}
		})
	}
}
