package cri

import (
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/runtime/oci"
)

func idMap(container, host, length uint32) *runtime.IDMapping {
	return &runtime.IDMapping{ContainerId: container, HostId: host, Length: length}
}

func usernsPod(u *runtime.UserNamespace) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"},
		Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{UsernsOptions: u},
		}},
	}
}

func TestPodConfigUserNS(t *testing.T) {
	kubelet := []*runtime.IDMapping{idMap(0, 1000, 100000)}
	tests := []struct {
		name    string
		userns  *runtime.UserNamespace
		want    *oci.UserNamespace
		wantErr string
	}{
		{"none", nil, nil, ""},
		{"node", &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}, &oci.UserNamespace{Mode: oci.NamespaceNode}, ""},
		{"pod, as the kubelet sends it",
			&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: kubelet, Gids: kubelet},
			&oci.UserNamespace{Mode: oci.NamespacePod,
				UIDs: []oci.IDMapping{{ContainerID: 0, HostID: 1000, Length: 100000}},
				GIDs: []oci.IDMapping{{ContainerID: 0, HostID: 1000, Length: 100000}}}, ""},
		{"pod, uids and gids differ",
			&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: kubelet, Gids: []*runtime.IDMapping{idMap(0, 5000, 65536)}},
			&oci.UserNamespace{Mode: oci.NamespacePod,
				UIDs: []oci.IDMapping{{ContainerID: 0, HostID: 1000, Length: 100000}},
				GIDs: []oci.IDMapping{{ContainerID: 0, HostID: 5000, Length: 65536}}}, ""},
		{"two uid mappings",
			&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{idMap(0, 1000, 100000), idMap(0, 2000, 100000)}, Gids: kubelet},
			nil, "exactly one uids mapping, got 2"},
		{"two gid mappings",
			&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: kubelet, Gids: []*runtime.IDMapping{idMap(0, 1000, 10), idMap(10, 2000, 10)}},
			nil, "exactly one gids mapping, got 2"},
		{"no mappings", &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD}, nil, "exactly one uids mapping, got 0"},
		{"root not mapped",
			&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{idMap(1, 1000, 100000)}, Gids: kubelet},
			nil, "must map container id 0 (root), it starts at 1"},
		{"gid root not mapped",
			&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: kubelet, Gids: []*runtime.IDMapping{idMap(1, 1000, 100000)}},
			nil, "gids mapping must map container id 0"},
		{"zero length",
			&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: []*runtime.IDMapping{idMap(0, 1000, 0)}, Gids: kubelet},
			nil, "uids mapping has length 0"},
		{"past the largest id",
			&runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: kubelet, Gids: []*runtime.IDMapping{idMap(0, 1<<31, 1<<31)}},
			nil, "goes past the largest id"},
		{"container mode", &runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}, nil, "mode CONTAINER is not supported: only POD and NODE are"},
		{"target mode", &runtime.UserNamespace{Mode: runtime.NamespaceMode_TARGET}, nil, "mode TARGET is not supported: only POD and NODE are"},
		{"unknown mode", &runtime.UserNamespace{Mode: 9}, nil, "mode 9 is not supported"},
		{"node with mappings",
			&runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE, Uids: kubelet, Gids: kubelet},
			nil, "mode NODE takes no uids or gids mappings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc, err := podConfig(usernsPod(tt.userns), "")
			if tt.wantErr != "" {
				if status.Code(errgrpc.ToGRPC(err)) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want InvalidArgument saying %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "namespace_options: userns_options") {
					t.Errorf("err = %v, does not name the field", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := pc.Namespaces.UserNS
			if (got == nil) != (tt.want == nil) {
				t.Fatalf("user namespace = %+v, want %+v", got, tt.want)
			}
			if got != nil && (got.Mode != tt.want.Mode || !slices.Equal(got.UIDs, tt.want.UIDs) || !slices.Equal(got.GIDs, tt.want.GIDs)) {
				t.Errorf("user namespace = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Containers' options are checked the same way: the kubelet copies the
// pod's into each container's.
func TestContainerConfigUserNS(t *testing.T) {
	ns := &runtime.NamespaceOption{UsernsOptions: &runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}}
	_, err := containerConfig(&runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "c"},
		Image:    &runtime.ImageSpec{Image: "example.com/app:1"},
		Linux:    &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{NamespaceOptions: ns}},
	})
	if status.Code(errgrpc.ToGRPC(err)) != codes.InvalidArgument || !strings.Contains(err.Error(), "mode CONTAINER is not supported") {
		t.Fatalf("err = %v, want InvalidArgument naming the mode", err)
	}
}

// Issue 12: log_directory is where the shim writes logs as root; it must be a plain absolute path.
func TestPodConfigLogDirectory(t *testing.T) {
	for _, tc := range []struct {
		dir string
		ok  bool
	}{
		{"", true}, {"/var/log/pods/ns_p_u", true},
		{"var/log/pods", false}, {"/var/log/pods/../../etc", false}, {"/var/log//pods", false}, {"/var/log/pods/", false},
		{"/var/log/\x00pods", false},
	} {
		cfg := usernsPod(nil)
		cfg.LogDirectory = tc.dir
		_, err := podConfig(cfg, "")
		if tc.ok != (err == nil) {
			t.Errorf("log directory %q: %v, want ok %t", tc.dir, err, tc.ok)
		}
		if err != nil && (!errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "log_directory")) {
			t.Errorf("log directory %q: %v, want InvalidArgument naming log_directory", tc.dir, err)
		}
	}
}
