package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeSystem answers the builder's host lookups from tables and records every call, so tests need neither
// root nor particular host mounts and devices.
type fakeSystem struct {
	hostname string
	paths    map[string]string       // host path -> resolved path; absent means it does not exist
	mounts   map[string][2]string    // resolved path -> {propagation, mountpoint}
	devices  map[string][]hostDevice // resolved path -> nodes
	files    map[string][]byte

	mu    sync.Mutex
	calls []string
}

func newFakeSystem() *fakeSystem {
	return &fakeSystem{
		hostname: "node-1",
		paths:    map[string]string{},
		mounts:   map[string][2]string{},
		devices: map[string][]hostDevice{"/dev": {
			{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, Mode: 0o666},
			{Path: "/dev/sda", Type: "b", Major: 8, Minor: 0, Mode: 0o660, GID: 6},
			{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, Mode: 0o666},
		}},
		files: map[string][]byte{},
	}
}

func (f *fakeSystem) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// addPath makes p exist, resolving to itself.
func (f *fakeSystem) addPath(p ...string) {
	for _, x := range p {
		f.paths[x] = x
	}
}

func (f *fakeSystem) Hostname() (string, error) {
	f.record("Hostname")
	return f.hostname, nil
}

func (f *fakeSystem) EvalSymlinks(p string) (string, error) {
	f.record("EvalSymlinks %s", p)
	if r, ok := f.paths[p]; ok {
		return r, nil
	}
	return "", &fs.PathError{Op: "lstat", Path: p, Err: fs.ErrNotExist}
}

func (f *fakeSystem) MountPropagation(p string) (string, string, error) {
	f.record("MountPropagation %s", p)
	if m, ok := f.mounts[p]; ok {
		return m[0], m[1], nil
	}
	return "private", "/", nil
}

func (f *fakeSystem) Devices(p string) ([]hostDevice, error) {
	f.record("Devices %s", p)
	if d, ok := f.devices[p]; ok {
		return d, nil
	}
	if _, ok := f.paths[p]; ok {
		return nil, errNotDevice
	}
	return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
}

func (f *fakeSystem) ReadFile(p string) ([]byte, error) {
	f.record("ReadFile %s", p)
	if b, ok := f.files[p]; ok {
		return b, nil
	}
	return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
}

// testHost is a cgroup v1 host like the CI machine, holding every capability but CAP_SYS_RESOURCE.
func testHost() Host {
	var caps []string
	for name := range capOrder {
		if name != "CAP_SYS_RESOURCE" {
			caps = append(caps, name)
		}
	}
	return Host{
		Capabilities:      sorted(setOf(caps...)),
		SwapAccounting:    true,
		HugePageSizes:     []string{"2MB", "1GB"},
		RecursiveReadOnly: true,
	}
}

func setOf(items ...string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, i := range items {
		m[i] = true
	}
	return m
}

func newTestBuilder(h Host, sys *fakeSystem) *Builder {
	return &Builder{host: h, sys: sys}
}

// testPod is a pod with pinned net/ipc/uts namespaces and /etc files, as the sandbox manager provides.
func testPod() *Pod {
	return &Pod{
		ID: "sandbox-1", Name: "web", Namespace: "default", UID: "uid-1",
		Hostname: "web-0",
		NetNS:    "/run/warmpod/pods/sandbox-1/ns/net",
		IPCNS:    "/run/warmpod/pods/sandbox-1/ns/ipc",
		UTSNS:    "/run/warmpod/pods/sandbox-1/ns/uts",
		PIDNS:    "/run/warmpod/pods/sandbox-1/ns/pid",
	}
}

// testContainer is the plain container the kubelet sends for a pod without a security context.
func testContainer() *Container {
	return &Container{
		ID:     "ctr-1",
		Name:   "app",
		Rootfs: "/var/lib/warmpod/rootfs/ctr-1",
		Security: Security{
			Namespaces: NamespaceOptions{PID: NamespaceContainer},
		},
	}
}

func testImage() *Image {
	return &Image{Name: "busybox:latest", Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}
}

// writeLayer creates a layer directory holding the given files (path -> content).
func writeLayer(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func ptr[T any](v T) *T { return &v }

// wantInvalid reports whether a case expects an error (want != ""), and fails the test unless err then
// matches ErrInvalidArgument and names want.
func wantInvalid(t *testing.T, err error, want string) bool {
	t.Helper()
	if want == "" {
		return false
	}
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want ErrInvalidArgument containing %q", err, want)
	}
	return true
}
