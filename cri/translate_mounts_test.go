package cri

import (
	"strings"
	"testing"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestContainerConfigImageVolumes(t *testing.T) {
	img := &runtime.ImageSpec{Image: "example.com/data:1"}
	tests := []struct {
		name    string
		mount   *runtime.Mount
		wantErr string
	}{
		{"read-only", &runtime.Mount{ContainerPath: "/data", Image: img, Readonly: true}, ""},
		{"read-only with a sub path", &runtime.Mount{ContainerPath: "/data", Image: img, Readonly: true, ImageSubPath: "etc/app"}, ""},
		{"writable", &runtime.Mount{ContainerPath: "/data", Image: img}, "must be read-only"},
		{"absolute sub path", &runtime.Mount{ContainerPath: "/data", Image: img, Readonly: true, ImageSubPath: "/etc"}, "must be relative"},
		{"sub path leaving the image", &runtime.Mount{ContainerPath: "/data", Image: img, Readonly: true, ImageSubPath: "etc/../../x"}, "must be relative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := containerConfig(&runtime.ContainerConfig{
				Metadata: &runtime.ContainerMetadata{Name: "c"},
				Image:    &runtime.ImageSpec{Image: "example.com/app:1"},
				Mounts:   []*runtime.Mount{tt.mount},
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m := cfg.Spec.Mounts[0]
			if !m.Image || m.HostPath != "example.com/data:1" || m.ImageSubPath != tt.mount.ImageSubPath {
				t.Errorf("mount = %+v", m)
			}
		})
	}
}
