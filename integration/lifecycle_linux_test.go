package integration

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestContainerLifecycle walks one pod and container through the calls the
// kubelet makes, checking what each leaves visible.
func TestContainerLifecycle(t *testing.T) {
	ctx := begin(t)
	imageID := pullImage(t, images.busybox)

	podCfg := newPodConfig("lifecycle")
	podCfg.Hostname = "lifecycle-host"
	podCfg.DnsConfig = &runtimeapi.DNSConfig{
		Servers:  []string{"10.96.0.10", "10.96.0.11"},
		Searches: []string{"integration.svc.cluster.local", "svc.cluster.local"},
		Options:  []string{"ndots:5", "timeout:2"},
	}
	podID := runPod(t, podCfg)

	pst := podStatus(t, podID)
	if pst.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod state %s, want READY", pst.State)
	}
	if pst.Metadata.GetUid() != podCfg.Metadata.Uid || pst.Metadata.GetName() != "lifecycle" {
		t.Errorf("pod metadata %v, want %v", pst.Metadata, podCfg.Metadata)
	}
	if pst.CreatedAt == 0 {
		t.Error("pod created_at is 0")
	}
	podIP := pst.GetNetwork().GetIp()
	ip, err := netip.ParseAddr(podIP)
	if err != nil || !netip.MustParsePrefix(d.Subnet).Contains(ip) {
		t.Fatalf("pod IP %q is not in the subnet %s", podIP, d.Subnet)
	}

	script := `trap 'echo got SIGTERM; exit 143' TERM
echo first stdout line
echo first stderr line >&2
for i in 1 2 3; do echo "line $i"; done
echo ready > /tmp/ready
sleep 3600 & wait`
	ctrCfg := newContainerConfig("main", "sh", "-c", script)
	ctrCfg.Envs = []*runtimeapi.KeyValue{{Key: "GREETING", Value: []byte("hello from the pod")}}
	ctrID := createContainer(t, podID, podCfg, ctrCfg)

	st := containerStatus(t, ctrID)
	if st.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("state after create %s, want CREATED", st.State)
	}
	if st.ImageRef != imageID {
		t.Errorf("image_ref %q, want the id PullImage returned, %q", st.ImageRef, imageID)
	}
	wantLog := filepath.Join(podCfg.LogDirectory, "main.log")
	if st.LogPath != wantLog {
		t.Errorf("log path %q, want %q", st.LogPath, wantLog)
	}

	startContainer(t, ctrID)
	st = containerStatus(t, ctrID)
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("state after start %s, want RUNNING", st.State)
	}
	if st.StartedAt < st.CreatedAt {
		t.Errorf("started_at %d before created_at %d", st.StartedAt, st.CreatedAt)
	}

	waitFor(t, "the container to be ready", func() (bool, string) {
		out, _, code := execSync(t, ctrID, "cat", "/tmp/ready")
		return code == 0 && out == "ready\n", out
	})
	lines := readCRILog(t, wantLog)
	if got, want := logContents(lines, "stdout"), []string{"first stdout line", "line 1", "line 2", "line 3"}; !slices.Equal(got, want) {
		t.Errorf("stdout in the log %q, want %q", got, want)
	}
	if got, want := logContents(lines, "stderr"), []string{"first stderr line"}; !slices.Equal(got, want) {
		t.Errorf("stderr in the log %q, want %q", got, want)
	}

	t.Run("exec", func(t *testing.T) {
		for _, tc := range []struct {
			name           string
			cmd            []string
			stdout, stderr string
			code           int32
		}{
			{"streams and exit code", []string{"sh", "-c", "echo to stdout; echo to stderr >&2; exit 3"}, "to stdout\n", "to stderr\n", 3},
			{"environment", []string{"sh", "-c", "echo $GREETING"}, "hello from the pod\n", "", 0},
			{"hostname", []string{"hostname"}, "lifecycle-host\n", "", 0},
			{"pod IP on eth0", []string{"sh", "-c", "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1"}, podIP + "\n", "", 0},
			{"missing command", []string{"sh", "-c", "no-such-command"}, "", "sh: no-such-command: not found\n", 127},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, errOut, code := execSync(t, ctrID, tc.cmd...)
				if out != tc.stdout || errOut != tc.stderr || code != tc.code {
					t.Errorf("exec %q = (%q, %q, %d), want (%q, %q, %d)", tc.cmd, out, errOut, code, tc.stdout, tc.stderr, tc.code)
				}
			})
		}
	})

	t.Run("exec timeout", func(t *testing.T) {
		_, err := d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctrID, Cmd: []string{"sleep", "60"}, Timeout: 1})
		wantCode(t, err, codes.DeadlineExceeded)
		// The timed-out command is gone: no sleep 60 is left in the
		// container.
		waitFor(t, "the timed-out exec to be killed", func() (bool, string) {
			out, _, _ := execSync(t, ctrID, "ps", "-o", "args")
			return !strings.Contains(out, "sleep 60"), out
		})
	})

	t.Run("resolv.conf", func(t *testing.T) {
		out, _, code := execSync(t, ctrID, "cat", "/etc/resolv.conf")
		if code != 0 {
			t.Fatalf("cat /etc/resolv.conf exited %d", code)
		}
		for _, want := range []string{
			"nameserver 10.96.0.10\n", "nameserver 10.96.0.11\n",
			"search integration.svc.cluster.local svc.cluster.local\n",
			"options ndots:5 timeout:2\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("/etc/resolv.conf lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("stop", func(t *testing.T) {
		if _, err := d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctrID, Timeout: 30}); err != nil {
			t.Fatalf("StopContainer: %v", err)
		}
		st := containerStatus(t, ctrID)
		if st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
			t.Fatalf("state after stop %s, want EXITED", st.State)
		}
		if st.ExitCode != 143 || st.Reason != "Error" {
			t.Errorf("exit code %d reason %q, want 143 Error (the trap's exit)", st.ExitCode, st.Reason)
		}
		if st.FinishedAt < st.StartedAt {
			t.Errorf("finished_at %d before started_at %d", st.FinishedAt, st.StartedAt)
		}
		if out := logContents(readCRILog(t, wantLog), "stdout"); !slices.Contains(out, "got SIGTERM") {
			t.Errorf("the log lacks the trap's line; stdout %q", out)
		}
		// Stopping again is a no-op.
		if _, err := d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctrID, Timeout: 30}); err != nil {
			t.Errorf("second StopContainer: %v", err)
		}
	})

	t.Run("remove", func(t *testing.T) {
		if _, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrID}); err != nil {
			t.Fatalf("RemoveContainer: %v", err)
		}
		_, err := d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrID})
		wantCode(t, err, codes.NotFound)
		list, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Containers) != 0 {
			t.Errorf("pod still lists containers %v", containerIDs(list.Containers))
		}
	})

	t.Run("stop and remove pod", func(t *testing.T) {
		if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatalf("StopPodSandbox: %v", err)
		}
		if st := podStatus(t, podID); st.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("pod state after stop %s, want NOTREADY", st.State)
		}
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
		_, err := d.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
		wantCode(t, err, codes.NotFound)
	})
}

// TestContainerExits covers how a container's own exit, or its stop, is
// reported.
func TestContainerExits(t *testing.T) {
	begin(t)
	podCfg := newPodConfig("exits")
	podID := runPod(t, podCfg)
	for _, tc := range []struct {
		name    string
		script  string
		stop    bool
		timeout int64
		code    int32
		reason  string
	}{
		{name: "succeeds", script: "echo done", code: 0, reason: "Completed"},
		{name: "fails", script: "exit 7", code: 7, reason: "Error"},
		{name: "ignores SIGTERM", script: "trap '' TERM; touch /tmp/ready; sleep 3600", stop: true, timeout: 1, code: 137, reason: "Error"},
		{name: "handles SIGTERM", script: "trap 'exit 3' TERM; touch /tmp/ready; sleep 3600 & wait", stop: true, timeout: 30, code: 3, reason: "Error"},
		{name: "stopped with timeout 0", script: "touch /tmp/ready; sleep 3600", stop: true, timeout: 0, code: 137, reason: "Error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := runContainer(t, podID, podCfg, newContainerConfig(strings.ReplaceAll(tc.name, " ", "-"), "sh", "-c", tc.script))
			if tc.stop {
				// Stop once the script has set its trap: what a stop
				// signal does before then is not what this checks.
				waitFor(t, "the script to set its trap", func() (bool, string) {
					_, _, code := execSync(t, id, "test", "-e", "/tmp/ready")
					return code == 0, fmt.Sprintf("exit %d", code)
				})
				if _, err := d.Runtime.StopContainer(testCtx(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: tc.timeout}); err != nil {
					t.Fatalf("StopContainer: %v", err)
				}
			}
			st := waitExited(t, id)
			if st.ExitCode != tc.code || st.Reason != tc.reason {
				t.Errorf("exit code %d reason %q, want %d %q", st.ExitCode, st.Reason, tc.code, tc.reason)
			}
			if st.FinishedAt == 0 || st.FinishedAt < st.StartedAt {
				t.Errorf("finished_at %d, started_at %d", st.FinishedAt, st.StartedAt)
			}
		})
	}
}

// TestHostNetworkPod checks that a pod on the node's network gets no
// address of its own and sees the node's interfaces.
func TestHostNetworkPod(t *testing.T) {
	begin(t)
	podCfg := newPodConfig("host-network")
	podCfg.Hostname = ""
	podCfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
	}
	podID := runPod(t, podCfg)
	pst := podStatus(t, podID)
	if ip := pst.GetNetwork().GetIp(); ip != "" {
		t.Errorf("host-network pod has its own IP %q", ip)
	}
	if got := pst.GetLinux().GetNamespaces().GetOptions().GetNetwork(); got != runtimeapi.NamespaceMode_NODE {
		t.Errorf("pod network namespace mode %s, want NODE", got)
	}
	ctrCfg := newContainerConfig("main", "sleep", "3600")
	ctrCfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
	}
	ctrID := runContainer(t, podID, podCfg, ctrCfg)
	out, _, code := execSync(t, ctrID, "ip", "-o", "link", "show", d.Bridge)
	if code != 0 || !strings.Contains(out, d.Bridge) {
		t.Errorf("the container does not see the node's bridge %s: exit %d, %q", d.Bridge, code, out)
	}
}

// TestExecSyncLargeOutput runs an exec whose output is larger than gRPC's
// default message size (4 MiB) between the daemon and the shim: it comes
// back whole, not as a ResourceExhausted error.
func TestExecSyncLargeOutput(t *testing.T) {
	begin(t)
	podCfg := newPodConfig("exec-large")
	podID := runPod(t, podCfg)
	id := runContainer(t, podID, podCfg, newContainerConfig("main", "sleep", "3600"))
	const size = 6 << 20
	stdout, stderr, code := execSync(t, id, "head", "-c", strconv.Itoa(size), "/dev/zero")
	if code != 0 || len(stdout) != size {
		t.Fatalf("exec printed %d bytes with exit code %d (stderr %q), want %d bytes and 0", len(stdout), code, stderr, size)
	}
}
