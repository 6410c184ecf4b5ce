package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	shimv1 "github.com/warmpod/warmpod/api/shim/v1"
	"github.com/warmpod/warmpod/runtime/oci"
	"github.com/warmpod/warmpod/runtime/shim"
)

// kubeletNode is the part of a kubelet's root dir (<root>/pods/<uid>/...)
// its CreateContainer requests name.
type kubeletNode struct {
	t      *testing.T
	root   string
	podUID string
}

func newKubeletNode(t *testing.T, podUID string) *kubeletNode {
	t.Helper()
	k := &kubeletNode{t: t, root: t.TempDir(), podUID: podUID}
	for _, d := range []string{"volumes/kubernetes.io~projected/kube-api-access-x7k2p", "volumes/kubernetes.io~empty-dir/data", "containers/main"} {
		if err := os.MkdirAll(k.podPath(d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(k.podPath("etc-hosts"), []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kubeletNode) podPath(rel string) string {
	return filepath.Join(k.root, "pods", k.podUID, rel)
}

// terminationFile makes the file the kubelet binds at a container's
// terminationMessagePath: new for every container, named by a random id
// (kuberuntime_container.go, makeMounts).
func (k *kubeletNode) terminationFile(name string) string {
	k.t.Helper()
	p := k.podPath(filepath.Join("containers", name, fmt.Sprintf("%08x", rand.Uint32())))
	if err := os.WriteFile(p, nil, 0o666); err != nil {
		k.t.Fatal(err)
	}
	return p
}

// kubeletEnv is a container's environment as a v1.37 kubelet lists it for
// attempt n: its own variables and the service variables, each from a map
// (kubelet_pods.go makeEnvironmentVariables), in another order every time.
func kubeletEnv(n uint32) []string {
	env := []string{
		"POD_IP=10.88.0.7",
		"KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443", "KUBERNETES_SERVICE_PORT_HTTPS=443",
		"KUBERNETES_PORT=tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443",
	}
	k := int(n) % len(env)
	return append(env[k:], env[:k]...)
}

// container is the config the daemon gets (after cri's translation) from
// a v1.37 kubelet's CreateContainer for attempt n of container "main" of a
// BestEffort pod with a service account token and an emptyDir
// (kuberuntime_container.go generateContainerConfig and makeMounts,
// labels.go, kubelet_pods.go): the attempt, the restart count annotation,
// the log path, the termination message file and the order of the
// environment change from one attempt to the next, nothing else does.
func (k *kubeletNode) container(n uint32) ContainerConfig {
	return ContainerConfig{
		Name:    "main",
		Attempt: n,
		Image:   "busybox",
		LogPath: fmt.Sprintf("main/%d.log", n),
		Labels: map[string]string{
			"io.kubernetes.pod.name": "web", "io.kubernetes.pod.namespace": "default",
			"io.kubernetes.pod.uid": k.podUID, "io.kubernetes.container.name": "main",
		},
		Annotations: map[string]string{
			"io.kubernetes.container.hash":                     "5f1b2c3d",
			"io.kubernetes.container.restartCount":             strconv.Itoa(int(n)),
			"io.kubernetes.container.terminationMessagePath":   "/dev/termination-log",
			"io.kubernetes.container.terminationMessagePolicy": "File",
			"io.kubernetes.pod.terminationGracePeriod":         "30",
		},
		Spec: oci.Container{
			Name:    "main",
			Command: []string{"sh", "-c", "echo done > /dev/termination-log; exit 88"},
			Env:     kubeletEnv(n),
			Mounts: []oci.Mount{
				{ContainerPath: "/data", HostPath: k.podPath("volumes/kubernetes.io~empty-dir/data")},
				{ContainerPath: "/var/run/secrets/kubernetes.io/serviceaccount", HostPath: k.podPath("volumes/kubernetes.io~projected/kube-api-access-x7k2p"), Readonly: true},
				{ContainerPath: "/etc/hosts", HostPath: k.podPath("etc-hosts")},
				{ContainerPath: "/dev/termination-log", HostPath: k.terminationFile("main")},
			},
			Resources: &oci.Resources{CPUPeriod: 100000, CPUShares: 2, OOMScoreAdj: 1000},
			Security: oci.Security{
				Seccomp:       &oci.SecurityProfile{Type: oci.ProfileRuntimeDefault},
				MaskedPaths:   []string{"/proc/acpi", "/proc/kcore", "/proc/keys"},
				ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/sys"},
				Namespaces:    oci.NamespaceOptions{PID: oci.NamespaceContainer},
			},
		},
	}
}

// captureCreates records what the pod's shim is asked to create.
func captureCreates(s *fakeShimConn) func() []*shimv1.CreateContainerRequest {
	var (
		mu   sync.Mutex
		reqs []*shimv1.CreateContainerRequest
	)
	s.createHook = func(r *shimv1.CreateContainerRequest) error {
		mu.Lock()
		defer mu.Unlock()
		reqs = append(reqs, r)
		return nil
	}
	return func() []*shimv1.CreateContainerRequest {
		mu.Lock()
		defer mu.Unlock()
		return reqs
	}
}

// processKey is the shim's key of a create request.
func processKey(t *testing.T, r *shimv1.CreateContainerRequest) string {
	t.Helper()
	var spec specs.Spec
	if err := json.Unmarshal(r.Spec, &spec); err != nil {
		t.Fatal(err)
	}
	key, err := shim.ProcessKey(&spec, shim.Shape{
		Layers: r.Layers, Tty: r.Tty, Stdin: r.Stdin, StdinOnce: r.StdinOnce, StopSignal: int(r.StopSignal),
		TerminationMessagePath: r.TerminationMessagePath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// The kubelet's RestartAllContainers removes a container and creates the
// next attempt of it: both requests must have the same process key, or no
// pre-created generation ever serves the kubelet.
func TestKubeletAttemptsShareProcessKey(t *testing.T) {
	w := newFakeWorld(t)
	ctx := context.Background()
	pc := podConfig("web")
	podID, err := w.m.RunPod(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	k := newKubeletNode(t, pc.UID)
	creates := captureCreates(w.shims.get(w.m.podStateDir(podID)))
	for n := uint32(0); n < 2; n++ {
		id, err := w.m.CreateContainer(ctx, podID, k.container(n))
		if err != nil {
			t.Fatalf("CreateContainer attempt %d: %v", n, err)
		}
		if err := w.m.RemoveContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	reqs := creates()
	if len(reqs) != 2 {
		t.Fatalf("%d creates reached the shim, want 2", len(reqs))
	}
	for i, r := range reqs {
		if r.TerminationMessagePath != "/dev/termination-log" {
			t.Errorf("attempt %d: termination message path = %q, want /dev/termination-log", i, r.TerminationMessagePath)
		}
	}
	if k0, k1 := processKey(t, reqs[0]), processKey(t, reqs[1]); k0 != k1 {
		t.Errorf("attempts 0 and 1 have different process keys:\n%s\n%s", reqs[0].Spec, reqs[1].Spec)
	}
	// Each still names its own kubelet file, which gets its message.
	src := func(r *shimv1.CreateContainerRequest) string {
		var spec specs.Spec
		if err := json.Unmarshal(r.Spec, &spec); err != nil {
			t.Fatal(err)
		}
		return spec.Mounts[shim.TerminationMount(&spec, r.TerminationMessagePath)].Source
	}
	if a, b := src(reqs[0]), src(reqs[1]); a == b || filepath.Dir(a) != k.podPath("containers/main") {
		t.Errorf("termination files %q and %q: want two files in the container's dir", a, b)
	}
}

// Only the kubelet's own termination message file is taken for it: a mount
// at the annotation's path that is anything else keeps its host path in the
// process key.
func TestKubeletTerminationMessagePath(t *testing.T) {
	k := newKubeletNode(t, "uid-web")
	link := k.podPath("containers/main/link")
	if err := os.Symlink(k.terminationFile("main"), link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		adjust func(*ContainerConfig)
		want   string
	}{
		{"the kubelet's", func(*ContainerConfig) {}, "/dev/termination-log"},
		{"custom path", func(c *ContainerConfig) {
			c.Annotations[annotationTerminationMessagePath] = "tmp/../msg"
			c.Spec.Mounts[3].ContainerPath = "/msg"
		}, "/msg"},
		{"no annotation", func(c *ContainerConfig) { delete(c.Annotations, annotationTerminationMessagePath) }, ""},
		{"another path", func(c *ContainerConfig) { c.Annotations[annotationTerminationMessagePath] = "/dev/other" }, ""},
		{"a volume", func(c *ContainerConfig) {
			c.Spec.Mounts[3].HostPath = k.podPath("volumes/kubernetes.io~empty-dir/data")
		}, ""},
		{"another container's", func(c *ContainerConfig) { c.Name = "side" }, ""},
		{"another pod's", func(c *ContainerConfig) {
			c.Spec.Mounts[3].HostPath = filepath.Join(k.root, "pods", "uid-other", "containers", "main", "0badf00d")
		}, ""},
		{"a symlink", func(c *ContainerConfig) { c.Spec.Mounts[3].HostPath = link }, ""},
		{"read-only", func(c *ContainerConfig) { c.Spec.Mounts[3].Readonly = true }, ""},
		{"propagation", func(c *ContainerConfig) { c.Spec.Mounts[3].Propagation = oci.PropagationHostToContainer }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := k.container(0)
			tc.adjust(&c)
			if got := kubeletTerminationMessagePath("uid-web", &c); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
