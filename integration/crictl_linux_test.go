package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// crictl runs crictl against the daemon and returns its stdout; a failure
// fails the test with crictl's stderr.
type crictl struct {
	t    *testing.T
	path string
	cfg  string
}

func newCrictl(t *testing.T) *crictl {
	t.Helper()
	path, err := exec.LookPath("crictl")
	if err != nil {
		t.Skip("crictl is not installed (go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0)")
	}
	// A config file of its own keeps crictl from reading /etc/crictl.yaml
	// and warning that it is missing.
	cfg := filepath.Join(t.TempDir(), "crictl.yaml")
	data := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", d.SocketPath(), d.SocketPath())
	if err := os.WriteFile(cfg, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return &crictl{t: t, path: path, cfg: cfg}
}

func (c *crictl) cmd(args ...string) *exec.Cmd {
	full := append([]string{"--config", c.cfg,
		"--runtime-endpoint", "unix://" + d.SocketPath(), "--image-endpoint", "unix://" + d.SocketPath()}, args...)
	return exec.Command(c.path, full...)
}

func (c *crictl) run(args ...string) string {
	c.t.Helper()
	out, err := c.cmd(args...).Output()
	if err != nil {
		var ee *exec.ExitError
		stderr := ""
		if errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		c.t.Fatalf("crictl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// inspect runs an inspect subcommand and decodes its JSON "status".
func (c *crictl) inspect(sub, id string) map[string]any {
	c.t.Helper()
	var out struct {
		Status map[string]any `json:"status"`
	}
	if err := json.Unmarshal([]byte(c.run(sub, "-o", "json", id)), &out); err != nil {
		c.t.Fatalf("crictl %s %s: decode: %v", sub, id, err)
	}
	return out.Status
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCrictlLifecycle runs the README's crictl walk-through.
func TestCrictlLifecycle(t *testing.T) {
	begin(t)
	c := newCrictl(t)
	dir := t.TempDir()
	uid := randomHex(16)
	logDir := filepath.Join(d.base, "logs", uid)
	t.Cleanup(func() { _ = os.RemoveAll(logDir) })
	podJSON, ctrJSON := filepath.Join(dir, "pod.json"), filepath.Join(dir, "container.json")
	writeJSON(t, podJSON, map[string]any{
		"metadata":      map[string]any{"name": "crictl-demo", "namespace": "integration", "uid": uid},
		"hostname":      "crictl-demo",
		"log_directory": logDir,
		"linux":         map[string]any{},
	})
	writeJSON(t, ctrJSON, map[string]any{
		"metadata": map[string]any{"name": "main"},
		"image":    map[string]any{"image": "busybox"},
		"command":  []string{"sh", "-c", `echo hello from crictl; trap 'exit 0' TERM; sleep 3600 & wait`},
		"log_path": "main.log",
		"linux":    map[string]any{},
	})

	if out := c.run("pull", "busybox"); !strings.Contains(out, images.busyboxID) {
		t.Errorf("crictl pull busybox printed %q, want the image id %s", out, images.busyboxID)
	}
	if out := c.run("images", "-q"); !strings.Contains(out, images.busyboxID) {
		t.Errorf("crictl images -q lacks %s:\n%s", images.busyboxID, out)
	}

	pod := c.run("runp", podJSON)
	t.Cleanup(func() { removePod(t, pod, nil) })
	if st := c.inspect("inspectp", pod); st["state"] != "SANDBOX_READY" {
		t.Errorf("crictl inspectp state %v, want SANDBOX_READY", st["state"])
	}
	ctr := c.run("create", pod, ctrJSON, podJSON)
	if st := c.inspect("inspect", ctr); st["state"] != "CONTAINER_CREATED" {
		t.Errorf("state after create %v, want CONTAINER_CREATED", st["state"])
	}
	c.run("start", ctr)
	if st := c.inspect("inspect", ctr); st["state"] != "CONTAINER_RUNNING" {
		t.Fatalf("state after start %v, want CONTAINER_RUNNING", st["state"])
	}
	if ids := c.run("ps", "-q", "--pod", pod); ids != ctr {
		t.Errorf("crictl ps -q --pod = %q, want %q", ids, ctr)
	}

	waitFor(t, "the greeting in crictl logs", func() (bool, string) {
		out := c.run("logs", ctr)
		return strings.Contains(out, "hello from crictl"), out
	})
	if out := c.run("exec", "-s", ctr, "sh", "-c", "echo $((6*7)); hostname"); out != "42\ncrictl-demo" {
		t.Errorf("crictl exec -s printed %q, want \"42\\ncrictl-demo\"", out)
	}
	// crictl reports a command's non-zero exit as a failure of its own
	// (the exact code is checked through the CRI client in
	// TestContainerLifecycle).
	if err := c.cmd("exec", "-s", ctr, "sh", "-c", "exit 3").Run(); err == nil {
		t.Error("crictl exec -s of a command exiting 3 succeeded")
	}

	// crictl stop's default timeout is 0, which kills at once; give the
	// trap time to run.
	c.run("stop", "--timeout", "30", ctr)
	st := c.inspect("inspect", ctr)
	if st["state"] != "CONTAINER_EXITED" || st["exitCode"] != float64(0) || st["reason"] != "Completed" {
		t.Errorf("after stop: state %v exit code %v reason %v, want CONTAINER_EXITED 0 Completed", st["state"], st["exitCode"], st["reason"])
	}
	c.run("rm", ctr)
	if ids := c.run("ps", "-a", "-q", "--pod", pod); ids != "" {
		t.Errorf("containers left after crictl rm: %q", ids)
	}
	c.run("stopp", pod)
	if st := c.inspect("inspectp", pod); st["state"] != "SANDBOX_NOTREADY" {
		t.Errorf("state after stopp %v, want SANDBOX_NOTREADY", st["state"])
	}
	c.run("rmp", pod)
	if ids := c.run("pods", "-q", "--id", pod); ids != "" {
		t.Errorf("pod still listed after crictl rmp: %q", ids)
	}
}
