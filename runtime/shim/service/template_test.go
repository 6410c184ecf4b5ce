package service

import (
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A generation made ahead of time is used only when its template key matches the new container's:
// what changes per attempt or per generation must not change the key, and what shapes the process must.
func TestTemplateKey(t *testing.T) {
	base := func() (*CreateRequest, *specs.Spec) {
		spec := specconv.Example()
		spec.Process.Args = []string{"sleep", "1000"}
		spec.Process.Env = []string{"PATH=/bin", "TERM=xterm", "KUBERNETES_SERVICE_HOST=10.0.0.1"}
		spec.Root = &specs.Root{}
		spec.Mounts = append(spec.Mounts, specs.Mount{
			Destination: "/dev/termination-log", Type: "bind", Source: "/var/lib/kubelet/pods/u/containers/main/0badf00d",
			Options: []string{"rbind", "rprivate", "rw"},
		})
		return &CreateRequest{Name: "main", Layers: []string{"/layers/a", "/layers/b"}, TerminationMessagePath: "/dev/termination-log"}, spec
	}
	key := func(adjust func(*CreateRequest, *specs.Spec)) string {
		t.Helper()
		r, spec := base()
		if adjust != nil {
			adjust(r, spec)
		}
		tmpl, err := templateOf(r, spec)
		if err != nil {
			t.Fatal(err)
		}
		return tmpl.key
	}
	baseKey := key(nil)

	for name, adjust := range map[string]func(*CreateRequest, *specs.Spec){
		"rebuilt": nil,
		"annotations (restart count)": func(_ *CreateRequest, s *specs.Spec) {
			s.Annotations = map[string]string{"io.kubernetes.container.restartCount": "7"}
		},
		"root path":    func(_ *CreateRequest, s *specs.Spec) { s.Root.Path = "/run/gen-2/rootfs" },
		"cgroups path": func(_ *CreateRequest, s *specs.Spec) { s.Linux.CgroupsPath = "/kubepods/gen-2" },
		// The kubelet lists the variables from maps.
		"env order": func(_ *CreateRequest, s *specs.Spec) {
			slices.Reverse(s.Process.Env)
		},
		// The kubelet makes a new one for every container.
		"termination message file": func(_ *CreateRequest, s *specs.Spec) {
			s.Mounts[len(s.Mounts)-1].Source = "/var/lib/kubelet/pods/u/containers/main/12345678"
		},
	} {
		if k := key(adjust); k != baseKey {
			t.Errorf("%s changed the key", name)
		}
	}
	for name, adjust := range map[string]func(*CreateRequest, *specs.Spec){
		"args":           func(_ *CreateRequest, s *specs.Spec) { s.Process.Args = []string{"sh", "-c", "true"} },
		"env":            func(_ *CreateRequest, s *specs.Spec) { s.Process.Env = append(s.Process.Env, "X=1") },
		"env value":      func(_ *CreateRequest, s *specs.Spec) { s.Process.Env = []string{"PATH=/bin", "TERM=vt100"} },
		"cwd":            func(_ *CreateRequest, s *specs.Spec) { s.Process.Cwd = "/tmp" },
		"read-only root": func(_ *CreateRequest, s *specs.Spec) { s.Root.Readonly = !s.Root.Readonly },
		"capabilities":   func(_ *CreateRequest, s *specs.Spec) { s.Process.Capabilities = nil },
		"mounts": func(_ *CreateRequest, s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/a", Source: "/host/a", Type: "bind"})
		},
		"layers":      func(r *CreateRequest, _ *specs.Spec) { r.Layers = []string{"/layers/a"} },
		"tty":         func(r *CreateRequest, _ *specs.Spec) { r.Tty = true },
		"stdin":       func(r *CreateRequest, _ *specs.Spec) { r.Stdin = true },
		"stop signal": func(r *CreateRequest, _ *specs.Spec) { r.StopSignal = 2 },
		"termination message path": func(r *CreateRequest, s *specs.Spec) {
			r.TerminationMessagePath = "/msg"
			s.Mounts[len(s.Mounts)-1].Destination = "/msg"
		},
		"a plain mount where the termination message was": func(r *CreateRequest, _ *specs.Spec) {
			r.TerminationMessagePath = ""
		},
	} {
		if k := key(adjust); k == baseKey {
			t.Errorf("%s did not change the key", name)
		}
	}
}

// A termination message path the spec binds nothing at is the caller's error.
func TestTemplateTerminationPathNotMounted(t *testing.T) {
	spec := specconv.Example()
	spec.Process.Args = []string{"sleep", "1000"}
	_, err := templateOf(&CreateRequest{Name: "main", TerminationMessagePath: "/dev/termination-log"}, spec)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "/dev/termination-log") {
		t.Errorf("templateOf = %v, want InvalidArgument naming the path", err)
	}
}
