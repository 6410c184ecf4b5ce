package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/warmpod/warmpod/internal/testutil"
	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/sandbox/netns"
)

var kubeletMapping = []oci.IDMapping{{ContainerID: 0, HostID: 1000, Length: 100000}}

func TestPodUserNS(t *testing.T) {
	tests := []struct {
		name     string
		ns       oci.NamespaceOptions
		wantRoot uint32
		wantErr  error
		mention  string
	}{
		{"none", oci.NamespaceOptions{}, 0, nil, ""},
		{"node", oci.NamespaceOptions{UserNS: &oci.UserNamespace{Mode: oci.NamespaceNode}}, 0, nil, ""},
		{"pod", oci.NamespaceOptions{PID: oci.NamespaceContainer, UserNS: &oci.UserNamespace{Mode: oci.NamespacePod, UIDs: kubeletMapping, GIDs: kubeletMapping}}, 1000, nil, ""},
		{"node with mappings", oci.NamespaceOptions{UserNS: &oci.UserNamespace{Mode: oci.NamespaceNode, UIDs: kubeletMapping}},
			0, errdefs.ErrInvalidArgument, "takes no uid or gid mappings"},
		{"container mode", oci.NamespaceOptions{UserNS: &oci.UserNamespace{Mode: oci.NamespaceContainer}},
			0, errdefs.ErrInvalidArgument, "mode CONTAINER is not supported"},
		{"root not mapped", oci.NamespaceOptions{UserNS: &oci.UserNamespace{Mode: oci.NamespacePod,
			UIDs: []oci.IDMapping{{ContainerID: 1, HostID: 1000, Length: 10}}, GIDs: kubeletMapping}},
			0, errdefs.ErrInvalidArgument, "do not map root"},
		{"pod with a shared pid namespace", oci.NamespaceOptions{PID: oci.NamespacePod, UserNS: &oci.UserNamespace{Mode: oci.NamespacePod, UIDs: kubeletMapping, GIDs: kubeletMapping}}, 1000, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := podUserNS(&PodConfig{Namespaces: tt.ns})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.mention) {
					t.Fatalf("err = %v, want %v mentioning %q", err, tt.wantErr, tt.mention)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantRoot == 0 {
				if u != nil {
					t.Fatalf("user namespace %+v for a pod without one", u)
				}
				return
			}
			if root, ok := u.RootUID(); !ok || root != tt.wantRoot {
				t.Errorf("root uid = %d, %v; want %d", root, ok, tt.wantRoot)
			}
		})
	}
}

func TestContainerUserNS(t *testing.T) {
	podNS := &oci.UserNamespace{Mode: oci.NamespacePod, UIDs: kubeletMapping, GIDs: kubeletMapping}
	withUserNS := &pod{meta: podMeta{NS: netns.Paths{User: "/run/ns/user"}, Config: PodConfig{Namespaces: oci.NamespaceOptions{UserNS: podNS}}}}
	without := &pod{}
	other := []oci.IDMapping{{ContainerID: 0, HostID: 5000, Length: 100000}}
	tests := []struct {
		name     string
		pod      *pod
		userns   *oci.UserNamespace
		wantMode *oci.NamespaceMode
		mention  string
	}{
		{"none in a pod without", without, nil, nil, ""},
		{"node in a pod without", without, &oci.UserNamespace{Mode: oci.NamespaceNode}, ptr(oci.NamespaceNode), ""},
		{"none in a pod with one joins it", withUserNS, nil, ptr(oci.NamespacePod), ""},
		{"the pod's, as the kubelet copies it", withUserNS, podNS, ptr(oci.NamespacePod), ""},
		{"pod mode without mappings", withUserNS, &oci.UserNamespace{Mode: oci.NamespacePod}, ptr(oci.NamespacePod), ""},
		{"other mappings", withUserNS, &oci.UserNamespace{Mode: oci.NamespacePod, UIDs: other, GIDs: other}, nil, "differ from the pod's"},
		{"pod mode in a pod without", without, podNS, nil, "the pod has no user namespace"},
		{"node mode in a pod with one", withUserNS, &oci.UserNamespace{Mode: oci.NamespaceNode}, nil, "has a user namespace of its own"},
		{"target mode", withUserNS, &oci.UserNamespace{Mode: oci.NamespaceTarget}, nil, "mode TARGET is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := &oci.NamespaceOptions{UserNS: tt.userns}
			err := containerUserNS(ns, tt.pod)
			if tt.mention != "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.mention) {
					t.Fatalf("err = %v, want InvalidArgument mentioning %q", err, tt.mention)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.wantMode == nil && ns.UserNS != nil:
				t.Errorf("user namespace = %+v, want none", ns.UserNS)
			case tt.wantMode != nil && (ns.UserNS == nil || ns.UserNS.Mode != *tt.wantMode):
				t.Errorf("user namespace = %+v, want mode %d", ns.UserNS, *tt.wantMode)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestSearchable(t *testing.T) {
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	open := filepath.Join(base, "open", "root")
	closed := filepath.Join(base, "closed", "root")
	for _, d := range []string{open, closed} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Dir(closed), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := searchable(open); err != nil {
		t.Errorf("searchable(%s) = %v", open, err)
	}
	err := searchable(closed)
	if err == nil || !strings.Contains(err.Error(), filepath.Dir(closed)+" (mode 0700)") {
		t.Errorf("searchable(%s) = %v, want an error naming its parent", closed, err)
	}
}

// On this project's kernels (Linux 5.19 and later, root) the probe finds
// user namespaces usable and leaves nothing behind.
func TestProbeUserNS(t *testing.T) {
	testutil.RequireRoot(t, "it creates user namespaces and mounts")
	root, state := t.TempDir(), t.TempDir()
	if err := probeUserNS(root, state); err != nil {
		t.Fatalf("probeUserNS: %v", err)
	}
	for _, d := range []string{root, state} {
		if entries, _ := os.ReadDir(d); len(entries) != 0 {
			t.Errorf("probe left %v in %s", entries, d)
		}
	}
}
