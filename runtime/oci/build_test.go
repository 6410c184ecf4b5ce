package oci

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestBuildProcess(t *testing.T) {
	s := mustBuild(t, func(c *Container, pod *Pod, _ *fakeSystem, _ *Host) {
		c.Tty = true
		c.Security.NoNewPrivs = true
		c.Resources = &Resources{OOMScoreAdj: -997}
		pod.OOMScoreAdjMin, pod.OOMScoreAdjMax = -500, 1000
		c.Env = []string{"A=1"}
	})
	p := s.Process
	if !p.Terminal || !p.NoNewPrivileges || p.OOMScoreAdj == nil || *p.OOMScoreAdj != -500 {
		t.Fatalf("process = %+v", p)
	}
	if !slices.Equal(p.Args, []string{"sh"}) || p.Cwd != "/" || p.User.UID != 0 {
		t.Fatalf("args %v cwd %q user %+v", p.Args, p.Cwd, p.User)
	}
	if want := []string{"PATH=/bin", "HOSTNAME=web-0", "A=1"}; !slices.Equal(p.Env, want) {
		t.Fatalf("env = %v, want %v", p.Env, want)
	}
	if p.Rlimits != nil {
		t.Fatalf("rlimits = %v, want none (inherited from the shim)", p.Rlimits)
	}
	if s.Root.Path != "/var/lib/warmpod/rootfs/ctr-1" || s.Root.Readonly {
		t.Fatalf("root = %+v", s.Root)
	}
	if s.Version != specs.Version {
		t.Fatalf("version = %q", s.Version)
	}
}

func TestBuildHostnameFromNodeOnHostNetwork(t *testing.T) {
	s := mustBuild(t, func(c *Container, pod *Pod, _ *fakeSystem, _ *Host) {
		pod.Hostname = ""
		c.Security.Namespaces.Network = NamespaceNode
	})
	if !slices.Contains(s.Process.Env, "HOSTNAME=node-1") {
		t.Fatalf("env = %v, want the node's hostname", s.Process.Env)
	}
	if s.Hostname != "" {
		t.Fatalf("spec hostname = %q, want none on the host UTS namespace", s.Hostname)
	}
}

func TestBuildAnnotationsAndCgroup(t *testing.T) {
	s := mustBuild(t, func(c *Container, pod *Pod, _ *fakeSystem, _ *Host) {
		pod.CgroupParent = "/kubepods/burstable/poduid-1"
		c.Annotations = map[string]string{
			"io.kubernetes.container.restartCount": "3",
			AnnotationSandboxID:                    "spoofed",
		}
		c.Labels = map[string]string{"io.kubernetes.container.name": "app"}
	})
	want := map[string]string{
		"io.kubernetes.container.restartCount": "3",
		AnnotationContainerType:                ContainerTypeContainer,
		AnnotationContainerName:                "app",
		AnnotationImageName:                    "busybox:latest",
		AnnotationSandboxID:                    "sandbox-1",
		AnnotationSandboxName:                  "web",
		AnnotationSandboxNamespace:             "default",
		AnnotationSandboxUID:                   "uid-1",
	}
	if len(s.Annotations) != len(want) {
		t.Fatalf("annotations = %v, want %v", s.Annotations, want)
	}
	for k, v := range want {
		if s.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, s.Annotations[k], v)
		}
	}
	if s.Linux.CgroupsPath != "/kubepods/burstable/poduid-1/ctr-1" {
		t.Fatalf("cgroups path = %q", s.Linux.CgroupsPath)
	}
}

// Under the systemd cgroup driver the pod cgroup is a slice and each
// container a scope in it, named in runc's slice:prefix:name form.
func TestBuildSystemdCgroup(t *testing.T) {
	s := mustBuild(t, func(_ *Container, pod *Pod, _ *fakeSystem, _ *Host) {
		pod.CgroupParent = "kubepods-burstable-poduid_1-sandbox1.slice"
	})
	if want := "kubepods-burstable-poduid_1-sandbox1.slice:warmpod:ctr-1"; s.Linux.CgroupsPath != want {
		t.Fatalf("cgroups path = %q, want %q", s.Linux.CgroupsPath, want)
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name    string
		adjust  func(c *Container, pod *Pod, sys *fakeSystem, h *Host)
		wantErr string
	}{
		{name: "no name", adjust: func(c *Container, _ *Pod, _ *fakeSystem, _ *Host) { c.Name = "" }, wantErr: "container name is empty"},
		{
			name:    "privileged in an unprivileged pod",
			adjust:  func(c *Container, _ *Pod, _ *fakeSystem, _ *Host) { c.Security.Privileged = true },
			wantErr: "does not allow privileged containers",
		},
		{
			name:    "relative cgroup parent",
			adjust:  func(_ *Container, pod *Pod, _ *fakeSystem, _ *Host) { pod.CgroupParent = "kubepods" },
			wantErr: `cgroup parent "kubepods" is neither an absolute cgroupfs path nor a systemd slice`,
		},
		{
			name: "id that is a path",
			adjust: func(c *Container, pod *Pod, _ *fakeSystem, _ *Host) {
				pod.CgroupParent, c.ID = "/kubepods", "../escape"
			},
			wantErr: `container id "../escape" cannot name a cgroup`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, tt.adjust)
			wantInvalid(t, err, tt.wantErr)
			if !strings.HasPrefix(err.Error(), "build spec for container") {
				t.Fatalf("err = %v, want the build prefix", err)
			}
		})
	}

	// A nil image is no image config: the test container has no command of its own.
	b := newTestBuilder(testHost(), newFakeSystem())
	_, err := b.Build(testContainer(), nil, testPod())
	wantInvalid(t, err, `container "app" has no command`)
	if _, err := b.Build(nil, nil, testPod()); err == nil || errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("nil container: err = %v, want a programming error", err)
	}
}

// Build must not share slices with its inputs or package defaults: callers edit specs (CDI edits).
func TestBuildDoesNotAlias(t *testing.T) {
	s1 := mustBuild(t, nil)
	s1.Linux.MaskedPaths[0] = "/changed"
	s1.Process.Capabilities.Effective[0] = "CAP_CHANGED"
	s2 := mustBuild(t, nil)
	if s2.Linux.MaskedPaths[0] == "/changed" || defaultMaskedPaths[0] == "/changed" {
		t.Fatal("masked paths shared between specs")
	}
	if s2.Process.Capabilities.Bounding[0] == "CAP_CHANGED" {
		t.Fatal("capability sets shared")
	}
}

// One Builder serves every CreateContainer of the daemon at once.
func TestBuildConcurrent(t *testing.T) {
	b := newTestBuilder(testHost(), newFakeSystem())
	want, err := b.Build(testContainer(), testImage(), testPod())
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			s, err := b.Build(testContainer(), testImage(), testPod())
			if err == nil && !reflect.DeepEqual(s, want) {
				err = errors.New("concurrent build changed the spec")
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
