package sandbox

import (
	"slices"
	"testing"
)

// Issue 12: cdi.k8s.io/* annotations of the pod are any pod author's to write; only the CRI field and
// the container's annotations, which the kubelet sets from device plugins, request devices.
func TestRequestedDevicesIgnoresPodAnnotations(t *testing.T) {
	cfg := &ContainerConfig{
		Name:        "main",
		CDIDevices:  []string{"example.com/fake=a"},
		Annotations: map[string]string{"cdi.k8s.io/plugin": "example.com/fake=b"},
	}
	pod := map[string]string{"cdi.k8s.io/steal": "nvidia.com/gpu=all", "other": "x"}
	names, ignored, err := requestedDevices(cfg, pod)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"example.com/fake=a", "example.com/fake=b"}; !slices.Equal(names, want) {
		t.Errorf("requested %q, want %q", names, want)
	}
	if want := []string{"cdi.k8s.io/steal"}; !slices.Equal(ignored, want) {
		t.Errorf("ignored %q, want %q", ignored, want)
	}
	// A pod annotation that does not even parse fails nothing either.
	if _, _, err := requestedDevices(&ContainerConfig{Name: "main"}, map[string]string{"cdi.k8s.io/x": "not a device"}); err != nil {
		t.Errorf("a bad pod annotation failed the container: %v", err)
	}
}
