package service

import (
	"testing"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A generation made ahead of time is used only when its template key matches the new container's:
// what changes per attempt or per generation must not change the key, and what shapes the process must.
func TestTemplateKey(t *testing.T) {
	base := func() (*CreateRequest, *specs.Spec) {
		spec := specconv.Example()
		spec.Process.Args = []string{"sleep", "1000"}
		spec.Root = &specs.Root{}
		return &CreateRequest{Name: "main", Layers: []string{"/layers/a", "/layers/b"}}, spec
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
	} {
		if k := key(adjust); k != baseKey {
			t.Errorf("%s changed the key", name)
		}
	}
	for name, adjust := range map[string]func(*CreateRequest, *specs.Spec){
		"args":           func(_ *CreateRequest, s *specs.Spec) { s.Process.Args = []string{"sh", "-c", "true"} },
		"env":            func(_ *CreateRequest, s *specs.Spec) { s.Process.Env = append(s.Process.Env, "X=1") },
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
	} {
		if k := key(adjust); k == baseKey {
			t.Errorf("%s did not change the key", name)
		}
	}
}
