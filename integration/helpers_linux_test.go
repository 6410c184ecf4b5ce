package integration

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// testCtx is a context for one test's requests.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// begin starts a test: its daemon log is printed if it fails.
func begin(t *testing.T) context.Context {
	t.Helper()
	d.watchLogs(t)
	return testCtx(t)
}

// newPodConfig returns a pod config as the kubelet sends it, with a fresh
// UID and a log directory in the run's directory.
func newPodConfig(name string) *runtimeapi.PodSandboxConfig {
	uid := randomHex(16)
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "integration", Uid: uid},
		Hostname:     name,
		LogDirectory: filepath.Join(d.base, "logs", uid),
		Labels:       map[string]string{"io.kubernetes.pod.name": name, "suite": "integration"},
		Annotations:  map[string]string{},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
}

// newContainerConfig runs command in the busybox image, logging to
// <name>.log in the pod's log directory.
func newContainerConfig(name string, command ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: images.busybox},
		Command:  command,
		LogPath:  name + ".log",
		Labels:   map[string]string{"io.kubernetes.container.name": name},
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

// runPod runs a pod; a cleanup stops and removes it (printing its shim log
// first when the test failed) and deletes its log directory.
func runPod(t testing.TB, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	resp, err := d.Runtime.RunPodSandbox(testCtx(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox %s: %v", cfg.Metadata.Name, err)
	}
	id := resp.PodSandboxId
	t.Cleanup(func() { removePod(t, id, cfg) })
	return id
}

func removePod(t testing.TB, id string, cfg *runtimeapi.PodSandboxConfig) {
	t.Helper()
	if t.Failed() {
		if s := d.shimLog(id); s != "" {
			t.Logf("shim log of pod %s:\n%s", id, s)
		}
	}
	ctx := testCtx(t)
	if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("StopPodSandbox %s: %v", id, err)
	}
	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("RemovePodSandbox %s: %v", id, err)
	}
	if cfg != nil && cfg.LogDirectory != "" {
		_ = os.RemoveAll(cfg.LogDirectory)
	}
}

// createContainer creates a container; RemovePodSandbox removes it with
// its pod, so no cleanup of its own is needed.
func createContainer(t testing.TB, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	resp, err := d.Runtime.CreateContainer(testCtx(t), &runtimeapi.CreateContainerRequest{
		PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg,
	})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", cfg.Metadata.Name, err)
	}
	return resp.ContainerId
}

func startContainer(t testing.TB, id string) {
	t.Helper()
	if _, err := d.Runtime.StartContainer(testCtx(t), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer %s: %v", id, err)
	}
}

// runContainer creates and starts a container.
func runContainer(t testing.TB, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id := createContainer(t, podID, podCfg, cfg)
	startContainer(t, id)
	return id
}

func containerStatus(t testing.TB, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	resp, err := d.Runtime.ContainerStatus(testCtx(t), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	return resp.Status
}

func podStatus(t testing.TB, id string) *runtimeapi.PodSandboxStatus {
	t.Helper()
	resp, err := d.Runtime.PodSandboxStatus(testCtx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	return resp.Status
}

// waitFor polls cond until it holds; after a minute it fails the test with
// cond's last message. It waits for a state, it asserts no duration.
func waitFor(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up after a minute: %s", what, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExited waits until the container has exited and returns its status.
func waitExited(t testing.TB, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	var st *runtimeapi.ContainerStatus
	waitFor(t, "container "+id+" to exit", func() (bool, string) {
		st = containerStatus(t, id)
		return st.State == runtimeapi.ContainerState_CONTAINER_EXITED, "state " + st.State.String()
	})
	return st
}

// execSync runs cmd in a container and returns what it printed.
func execSync(t testing.TB, id string, cmd ...string) (stdout, stderr string, exitCode int32) {
	t.Helper()
	resp, err := d.Runtime.ExecSync(testCtx(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 30})
	if err != nil {
		t.Fatalf("ExecSync %v in %s: %v", cmd, id, err)
	}
	return string(resp.Stdout), string(resp.Stderr), resp.ExitCode
}

// criLogLine is one line of a CRI log file:
// "<RFC3339Nano time> <stdout|stderr> <F|P> <content>".
type criLogLine struct {
	Time    time.Time
	Stream  string
	Partial bool
	Content string
}

// readCRILog parses a CRI log file; a line not in CRI format fails the
// test.
func readCRILog(t testing.TB, path string) []criLogLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open container log: %v", err)
	}
	defer f.Close()
	var out []criLogLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		parts := strings.SplitN(line, " ", 4)
		if len(parts) < 3 {
			t.Fatalf("log line %q: want \"TIME STREAM TAG CONTENT\"", line)
		}
		ts, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil {
			t.Fatalf("log line %q: time: %v", line, err)
		}
		if parts[1] != "stdout" && parts[1] != "stderr" {
			t.Fatalf("log line %q: stream %q is neither stdout nor stderr", line, parts[1])
		}
		if parts[2] != "F" && parts[2] != "P" {
			t.Fatalf("log line %q: tag %q is neither F nor P", line, parts[2])
		}
		content := ""
		if len(parts) == 4 {
			content = parts[3]
		}
		out = append(out, criLogLine{Time: ts, Stream: parts[1], Partial: parts[2] == "P", Content: content})
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read container log: %v", err)
	}
	return out
}

// logContents returns the full lines of one stream of a CRI log.
func logContents(lines []criLogLine, stream string) []string {
	var out []string
	for _, l := range lines {
		if l.Stream == stream && !l.Partial {
			out = append(out, l.Content)
		}
	}
	return out
}

// wantCode fails the test unless err is a gRPC error with code and a
// message containing every one of mentions.
func wantCode(t testing.TB, err error, code codes.Code, mentions ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got success, want %s", code)
	}
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("got %s (%v), want %s", st.Code(), err, code)
	}
	for _, m := range mentions {
		if !strings.Contains(st.Message(), m) {
			t.Errorf("error %q does not mention %q", st.Message(), m)
		}
	}
}

// containerIDs returns the ids of a ListContainers answer.
func containerIDs(cs []*runtimeapi.Container) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Id)
	}
	return out
}

func podIDs(ps []*runtimeapi.PodSandbox) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Id)
	}
	return out
}

// short abbreviates an id for messages.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
