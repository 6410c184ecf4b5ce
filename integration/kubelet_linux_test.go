package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// kubeletDir is a kubelet's root dir as far as its CreateContainer requests
// name it: <root>/pods/<pod uid>/...
type kubeletDir struct {
	root   string
	podUID string
}

func newKubeletDir(t *testing.T, pod *runtimeapi.PodSandboxConfig) *kubeletDir {
	t.Helper()
	k := &kubeletDir{root: t.TempDir(), podUID: pod.Metadata.Uid}
	if err := os.MkdirAll(k.podPath("volumes/kubernetes.io~empty-dir/data"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.podPath("etc-hosts"), []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kubeletDir) podPath(rel string) string {
	return filepath.Join(k.root, "pods", k.podUID, rel)
}

// kubeletEnv is a container's environment as a v1.37 kubelet lists it for
// attempt n: its own variables and the service variables, each from a map
// (kubelet_pods.go makeEnvironmentVariables), in another order every time.
func kubeletEnv(n uint32) []*runtimeapi.KeyValue {
	var env []*runtimeapi.KeyValue
	for _, kv := range [][2]string{
		{"POD_NAME", "kubelet-warm"}, {"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"},
		{"KUBERNETES_SERVICE_PORT_HTTPS", "443"}, {"KUBERNETES_PORT", "tcp://10.96.0.1:443"},
	} {
		env = append(env, &runtimeapi.KeyValue{Key: kv[0], Value: []byte(kv[1])})
	}
	k := int(n) % len(env)
	return append(env[k:], env[:k]...)
}

// container returns attempt n of a container as a v1.37 kubelet asks for
// it (kuberuntime_container.go generateContainerConfig, makeMounts;
// labels.go): labels and annotations of its own, a log path per attempt,
// the pod's etc-hosts and emptyDir, the environment in another order, and
// a termination message file of its own, new for every attempt, at
// /dev/termination-log. It returns the config and that file.
func (k *kubeletDir) container(t *testing.T, pod *runtimeapi.PodSandboxConfig, name string, n uint32, command ...string) (*runtimeapi.ContainerConfig, string) {
	t.Helper()
	dir := k.podPath(filepath.Join("containers", name))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	term := filepath.Join(dir, fmt.Sprintf("%08x", rand.Uint32()))
	if err := os.WriteFile(term, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(term, 0o666); err != nil {
		t.Fatal(err)
	}
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name, Attempt: n},
		Image:    &runtimeapi.ImageSpec{Image: images.busybox, UserSpecifiedImage: "busybox"},
		Command:  command,
		LogPath:  fmt.Sprintf("%s/%d.log", name, n),
		Labels: map[string]string{
			"io.kubernetes.pod.name": pod.Metadata.Name, "io.kubernetes.pod.namespace": pod.Metadata.Namespace,
			"io.kubernetes.pod.uid": pod.Metadata.Uid, "io.kubernetes.container.name": name,
		},
		Annotations: map[string]string{
			"io.kubernetes.container.hash":                     "5f1b2c3d",
			"io.kubernetes.container.restartCount":             strconv.Itoa(int(n)),
			"io.kubernetes.container.terminationMessagePath":   "/dev/termination-log",
			"io.kubernetes.container.terminationMessagePolicy": "File",
			"io.kubernetes.pod.terminationGracePeriod":         "30",
		},
		Envs: kubeletEnv(n),
		Mounts: []*runtimeapi.Mount{
			{ContainerPath: "/data", HostPath: k.podPath("volumes/kubernetes.io~empty-dir/data")},
			{ContainerPath: "/etc/hosts", HostPath: k.podPath("etc-hosts")},
			{ContainerPath: "/dev/termination-log", HostPath: term},
		},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources: &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuShares: 2, OomScoreAdj: 1000},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			},
		},
	}
	return cfg, term
}

// A kubelet's create, start, stop, remove and create again of one
// container is served from the generation pre-created meanwhile, although
// every attempt binds another termination message file; what each attempt
// writes there reaches its own file by the time its stop returns.
func TestKubeletRestartServedWarm(t *testing.T) {
	ctx := begin(t)
	pod := newPodConfig("kubelet-warm")
	podID := runPod(t, pod)
	k := newKubeletDir(t, pod)
	command := []string{"sh", "-c", "cat /proc/sys/kernel/random/uuid > /dev/termination-log; echo ready; exec sleep 3600"}
	var msgs []string
	for n := uint32(0); n < 3; n++ {
		cfg, term := k.container(t, pod, "main", n, command...)
		id := runContainer(t, podID, pod, cfg)
		if info := verboseInfo(t, id); (info["fromWarm"] == true) != (n > 0) {
			t.Errorf("attempt %d: served from a pre-created generation = %v, want %v", n, info["fromWarm"], n > 0)
		}
		// The kubelet reads the file of the mount ContainerStatus reports.
		var reported string
		for _, m := range containerStatus(t, id).Mounts {
			if m.ContainerPath == "/dev/termination-log" {
				reported = m.HostPath
			}
		}
		if reported != term {
			t.Errorf("attempt %d: ContainerStatus reports the termination message file %q, want %q", n, reported, term)
		}
		waitFor(t, "main to start", func() (bool, string) {
			lines := logContents(readCRILog(t, filepath.Join(pod.LogDirectory, cfg.LogPath)), "stdout")
			return len(lines) > 0, strings.Join(lines, "|")
		})
		waitWarm(t, podID, id)
		if _, err := d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0}); err != nil {
			t.Fatalf("StopContainer: %v", err)
		}
		data, err := os.ReadFile(term)
		if msg := strings.TrimSpace(string(data)); err != nil || len(msg) != 36 {
			t.Fatalf("attempt %d: termination message file = %q, %v; want the uuid the container wrote", n, data, err)
		}
		msgs = append(msgs, string(data))
		if _, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer: %v", err)
		}
	}
	for i := 1; i < len(msgs); i++ {
		if msgs[i] == msgs[i-1] {
			t.Errorf("attempts %d and %d left the same message %q", i-1, i, msgs[i])
		}
	}
}
