package devices

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/internal/testutil"
)

// fakeNode makes a character device with /dev/null's numbers (1:3) under
// a new name in dir, as a stand-in for a real device.
func fakeNode(t testing.TB, dir, name string) string {
	t.Helper()
	testutil.RequireRoot(t, "it makes a device node (CAP_MKNOD)")
	p := filepath.Join(dir, name)
	if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatalf("mknod %s: %v", p, err)
	}
	return p
}

// writeSpec writes a CDI spec file atomically, as device plugins should,
// so the directory watch never sees half a file.
func writeSpec(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// vendorSpec is a spec of vendor example.com, class fake, with devices
// "a" (node at nodeA) and "b" (node at nodeB), spec-wide env and mount,
// and a createContainer hook.
func vendorSpec(nodeA, nodeB, env string) string {
	return fmt.Sprintf(`cdiVersion: "0.6.0"
kind: example.com/fake
containerEdits:
  env: ["FAKE_VENDOR=%s"]
  mounts:
  - hostPath: /tmp
    containerPath: /opt/fake
    options: [ro, nosuid, nodev, bind]
  hooks:
  - hookName: createContainer
    path: /bin/true
    args: [true, create]
devices:
- name: a
  containerEdits:
    env: [FAKE_A=1]
    deviceNodes:
    - path: /dev/fake-a
      hostPath: %s
- name: b
  containerEdits:
    env: [FAKE_B=1]
    deviceNodes:
    - path: /dev/fake-b
      hostPath: %s
      permissions: rw
`, env, nodeA, nodeB)
}

func newResolver(t testing.TB, dirs ...string) *Resolver {
	t.Helper()
	r, err := New(Options{SpecDirs: dirs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func baseSpec() *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{Env: []string{"PATH=/bin"}},
		Linux: &specs.Linux{Resources: &specs.LinuxResources{
			Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		}},
	}
}

func TestRequested(t *testing.T) {
	for _, tc := range []struct {
		name    string
		names   []string
		ann     []map[string]string
		want    []string
		wantErr string
	}{
		{name: "none"},
		{
			name:  "field first, then container annotations by key, then pod",
			names: []string{"example.com/fake=b"},
			ann: []map[string]string{
				{"cdi.k8s.io/z": "example.com/fake=z", "cdi.k8s.io/a": "example.com/fake=a1,example.com/fake=a0", "other": "x"},
				{"cdi.k8s.io/pod": "example.com/fake=p"},
			},
			want: []string{"example.com/fake=b", "example.com/fake=a1", "example.com/fake=a0", "example.com/fake=z", "example.com/fake=p"},
		},
		{
			name:  "duplicates dropped",
			names: []string{"example.com/fake=a", "example.com/fake=a"},
			ann:   []map[string]string{{"cdi.k8s.io/x": "example.com/fake=a"}},
			want:  []string{"example.com/fake=a"},
		},
		{name: "unqualified field name", names: []string{"fake-a"}, wantErr: `cdi_devices[0]: CDI device name "fake-a"`},
		{name: "bad annotation value", ann: []map[string]string{{"cdi.k8s.io/x": "nope"}}, wantErr: "annotation cdi.k8s.io/x"},
		{name: "empty annotation entry", ann: []map[string]string{{"cdi.k8s.io/x": "example.com/fake=a,"}}, wantErr: "annotation cdi.k8s.io/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Requested(tc.names, tc.ann...)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want ErrInvalid mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNewRejectsRelativeDir(t *testing.T) {
	if _, err := New(Options{SpecDirs: []string{"etc/cdi"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v, want ErrInvalid", err)
	}
}

func TestInjectEdits(t *testing.T) {
	dir, nodes := t.TempDir(), t.TempDir()
	a, b := fakeNode(t, nodes, "a"), fakeNode(t, nodes, "b")
	writeSpec(t, dir, "fake.yaml", vendorSpec(a, b, "v1"))
	r := newResolver(t, dir)

	spec := baseSpec()
	if err := r.Inject("pod1", []string{"example.com/fake=a", "example.com/fake=b"}, spec); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PATH=/bin", "FAKE_VENDOR=v1", "FAKE_A=1", "FAKE_B=1"} {
		if !slices.Contains(spec.Process.Env, want) {
			t.Errorf("env %q lacks %q", spec.Process.Env, want)
		}
	}
	for _, path := range []string{"/dev/fake-a", "/dev/fake-b"} {
		i := slices.IndexFunc(spec.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == path })
		if i < 0 {
			t.Fatalf("no device node %s in %+v", path, spec.Linux.Devices)
		}
		if d := spec.Linux.Devices[i]; d.Type != "c" || d.Major != 1 || d.Minor != 3 {
			t.Errorf("node %s is %s %d:%d, want c 1:3 (from the host)", path, d.Type, d.Major, d.Minor)
		}
	}
	// The default deny stays first; one allow rule per node follows, with
	// the spec's permissions (rwm when it names none).
	rules := spec.Linux.Resources.Devices
	if len(rules) != 3 || rules[0].Allow {
		t.Fatalf("device cgroup rules %+v, want deny-all then two allows", rules)
	}
	var access []string
	for _, r := range rules[1:] {
		if !r.Allow || r.Type != "c" || r.Major == nil || *r.Major != 1 || r.Minor == nil || *r.Minor != 3 {
			t.Errorf("rule %+v, want allow c 1:3", r)
		}
		access = append(access, r.Access)
	}
	if !slices.Equal(access, []string{"rwm", "rw"}) {
		t.Errorf("rule access %q, want [rwm rw]", access)
	}
	if !slices.ContainsFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == "/opt/fake" && m.Source == "/tmp" }) {
		t.Errorf("mounts %+v lack /opt/fake", spec.Mounts)
	}
	// The spec-wide hook comes once, though two of its devices are asked for.
	if spec.Hooks == nil || len(spec.Hooks.CreateContainer) != 1 || spec.Hooks.CreateContainer[0].Path != "/bin/true" {
		t.Errorf("hooks %+v, want one createContainer hook", spec.Hooks)
	}
}

func TestInjectCachesPerPodAndSet(t *testing.T) {
	dir, nodes := t.TempDir(), t.TempDir()
	a, b := fakeNode(t, nodes, "a"), fakeNode(t, nodes, "b")
	writeSpec(t, dir, "fake.yaml", vendorSpec(a, b, "v1"))
	r := newResolver(t, dir)
	ab := []string{"example.com/fake=a", "example.com/fake=b"}

	// The shim matches pre-created generations by the spec's JSON: every
	// injection must give the same bytes.
	var first []byte
	for i := range 5 {
		spec := baseSpec()
		if err := r.Inject("pod1", ab, spec); err != nil {
			t.Fatal(err)
		}
		js, err := json.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = js
		} else if !bytes.Equal(js, first) {
			t.Fatalf("injection %d differs from the first:\n%s\n%s", i, js, first)
		}
	}
	if r.resolutions != 1 || r.Cached("pod1") != 1 {
		t.Fatalf("%d resolutions, %d cached sets after 5 injections of one set, want 1 and 1", r.resolutions, r.Cached("pod1"))
	}
	// Another set, another pod: each resolved once.
	for _, c := range []struct {
		pod   string
		names []string
	}{{"pod1", ab[:1]}, {"pod2", ab}, {"pod1", ab[:1]}, {"pod2", ab}} {
		if err := r.Inject(c.pod, c.names, baseSpec()); err != nil {
			t.Fatal(err)
		}
	}
	if r.resolutions != 3 {
		t.Fatalf("%d resolutions, want 3", r.resolutions)
	}
	// A removed node does not matter to a pod that resolved its devices.
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	if err := r.Inject("pod1", ab, baseSpec()); err != nil {
		t.Fatalf("cached injection after the host node went: %v", err)
	}
	r.Forget("pod1")
	if r.Cached("pod1") != 0 {
		t.Fatal("pod1 still has cached sets after Forget")
	}
	err := r.Inject("pod1", ab, baseSpec())
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), "example.com/fake=a") {
		t.Fatalf("error %v, want ErrInvalid naming the device and %s", err, a)
	}
}

func TestInjectErrors(t *testing.T) {
	dir, nodes := t.TempDir(), t.TempDir()
	a := fakeNode(t, nodes, "a")
	missing := filepath.Join(nodes, "missing")
	writeSpec(t, dir, "fake.yaml", vendorSpec(a, missing, "v1"))
	writeSpec(t, dir, "broken.json", `{"cdiVersion": "0.6.0", "kind": "broken.example.com/x", "devices": [`)
	r := newResolver(t, dir)

	for _, tc := range []struct {
		name     string
		devs     []string
		unknown  bool
		mentions []string
	}{
		{name: "unknown device", devs: []string{"example.com/fake=zz"}, unknown: true,
			mentions: []string{`"example.com/fake=zz"`, dir}},
		{name: "unknown vendor names broken specs", devs: []string{"broken.example.com/x=y"}, unknown: true,
			mentions: []string{"broken.json"}},
		{name: "missing host node", devs: []string{"example.com/fake=a", "example.com/fake=b"},
			mentions: []string{`"example.com/fake=b"`, missing}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := baseSpec()
			err := r.Inject("pod", tc.devs, spec)
			if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnknownDevice) != tc.unknown {
				t.Fatalf("error %v: want ErrInvalid, ErrUnknownDevice %t", err, tc.unknown)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if r.Cached("pod") != 0 {
				t.Error("a failed resolution was cached")
			}
		})
	}
	// Once the node exists, the next try resolves.
	fakeNode(t, nodes, "missing")
	if err := r.Inject("pod", []string{"example.com/fake=b"}, baseSpec()); err != nil {
		t.Fatalf("after the node appeared: %v", err)
	}
}

// A vendor may describe a node completely (type and numbers); then the
// host needs no node at that path, as the CDI library allows.
func TestInjectFullySpecifiedNodeWithoutHost(t *testing.T) {
	dir := t.TempDir()
	writeSpec(t, dir, "full.yaml", `cdiVersion: "0.6.0"
kind: example.com/full
devices:
- name: x
  containerEdits:
    deviceNodes:
    - path: /dev/does-not-exist-on-host
      type: c
      major: 1
      minor: 5
`)
	r := newResolver(t, dir)
	spec := baseSpec()
	if err := r.Inject("pod", []string{"example.com/full=x"}, spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.Linux.Devices) != 1 || spec.Linux.Devices[0].Major != 1 || spec.Linux.Devices[0].Minor != 5 {
		t.Fatalf("devices %+v, want c 1:5", spec.Linux.Devices)
	}
}

// A spec written after the resolver started is found at once by the first
// request for one of its devices (no wait for the directory watch), and a
// changed spec reaches new pods while pods that resolved before keep their
// edits.
func TestSpecChanges(t *testing.T) {
	dir, nodes := t.TempDir(), t.TempDir()
	a, b := fakeNode(t, nodes, "a"), fakeNode(t, nodes, "b")
	r := newResolver(t, dir)
	writeSpec(t, dir, "fake.yaml", vendorSpec(a, b, "v1"))
	if err := r.Inject("old", []string{"example.com/fake=a"}, baseSpec()); err != nil {
		t.Fatalf("device of a spec written after start: %v", err)
	}

	writeSpec(t, dir, "fake.yaml", vendorSpec(a, b, "v2"))
	// The watch delivers the change asynchronously: wait for the state,
	// asserting no duration.
	deadline := time.Now().Add(time.Minute)
	for i := 0; ; i++ {
		spec := baseSpec()
		if err := r.Inject(fmt.Sprintf("new%d", i), []string{"example.com/fake=a"}, spec); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(spec.Process.Env, "FAKE_VENDOR=v2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new pods still get %q a minute after the spec changed", spec.Process.Env)
		}
		time.Sleep(10 * time.Millisecond)
	}
	spec := baseSpec()
	if err := r.Inject("old", []string{"example.com/fake=a"}, spec); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(spec.Process.Env, "FAKE_VENDOR=v1") {
		t.Errorf("pod resolved before the change got env %q, want its first edits (v1)", spec.Process.Env)
	}
}

func TestInjectConcurrent(t *testing.T) {
	dir, nodes := t.TempDir(), t.TempDir()
	a, b := fakeNode(t, nodes, "a"), fakeNode(t, nodes, "b")
	writeSpec(t, dir, "fake.yaml", vendorSpec(a, b, "v1"))
	r := newResolver(t, dir)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := fmt.Sprintf("pod%d", i%4)
			if err := r.Inject(pod, []string{"example.com/fake=a", "example.com/fake=b"}, baseSpec()); err != nil {
				errs <- err
			}
			if i%16 == 15 {
				_ = r.Cached(pod)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if r.resolutions != 4 {
		t.Errorf("%d resolutions for 4 pods, want 4", r.resolutions)
	}
}

// BenchmarkInject compares applying a pod's cached edits with what a
// runtime without the per-pod cache does on every create: the CDI
// library's InjectDevices, which looks devices up and stats each host node.
func BenchmarkInject(b *testing.B) {
	dir, nodes := b.TempDir(), b.TempDir()
	na, nb := fakeNode(b, nodes, "a"), fakeNode(b, nodes, "b")
	writeSpec(b, dir, "fake.yaml", vendorSpec(na, nb, "v1"))
	r := newResolver(b, dir)
	names := []string{"example.com/fake=a", "example.com/fake=b"}
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if err := r.Inject("pod", names, baseSpec()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("library", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.cache.InjectDevices(baseSpec(), names...); err != nil {
				b.Fatal(err)
			}
		}
	})
}
