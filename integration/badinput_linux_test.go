package integration

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// assertUnchanged fails the test if the host or the daemon's lists differ
// from before.
func assertUnchanged(t *testing.T, before snapshot, pods, ctrs int) {
	t.Helper()
	diff, err := d.awaitNoLeaks(before)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range diff {
		t.Errorf("left behind: %s", l)
	}
	if p, c := counts(t); p != pods || c != ctrs {
		t.Errorf("%d pods and %d containers listed, want %d and %d", p, c, pods, ctrs)
	}
}

func counts(t *testing.T) (pods, ctrs int) {
	t.Helper()
	ctx := testCtx(t)
	p, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return len(p.Items), len(c.Containers)
}

func TestBadPodConfig(t *testing.T) {
	ctx := begin(t)
	for _, tc := range []struct {
		name     string
		change   func(*runtimeapi.RunPodSandboxRequest)
		mentions []string
	}{
		{"no metadata", func(r *runtimeapi.RunPodSandboxRequest) { r.Config.Metadata = nil }, []string{"metadata"}},
		{"no uid", func(r *runtimeapi.RunPodSandboxRequest) { r.Config.Metadata.Uid = "" }, []string{"uid"}},
		{"unknown runtime handler", func(r *runtimeapi.RunPodSandboxRequest) { r.RuntimeHandler = "kata" }, []string{`"kata"`}},
		{"restart rules not JSON", func(r *runtimeapi.RunPodSandboxRequest) {
			r.Config.Annotations["warmpod.io/restart-policy-rules"] = "{main: restart"
		}, []string{"warmpod.io/restart-policy-rules"}},
		{"restart rule with unknown action", func(r *runtimeapi.RunPodSandboxRequest) {
			r.Config.Annotations["warmpod.io/restart-policy-rules"] = `{"main": [{"action": "Explode", "exitCodes": {"operator": "In", "values": [1]}}]}`
		}, []string{"warmpod.io/restart-policy-rules", "Explode"}},
		{"restart rule without exit codes", func(r *runtimeapi.RunPodSandboxRequest) {
			r.Config.Annotations["warmpod.io/restart-policy-rules"] = `{"main": [{"action": "RestartAllContainers"}]}`
		}, []string{"warmpod.io/restart-policy-rules", "exitCodes"}},
		{"hostname too long", func(r *runtimeapi.RunPodSandboxRequest) { r.Config.Hostname = strings.Repeat("h", 65) }, []string{strings.Repeat("h", 65)}},
		{"container port 0", func(r *runtimeapi.RunPodSandboxRequest) {
			r.Config.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 0, HostPort: 8080}}
		}, []string{"port_mappings[0]"}},
		// Issue 12: log_directory was not validated.
		{"relative log directory", func(r *runtimeapi.RunPodSandboxRequest) { r.Config.LogDirectory = "logs/x" },
			[]string{"log_directory", "logs/x"}},
		{"log directory with dotdot", func(r *runtimeapi.RunPodSandboxRequest) {
			r.Config.LogDirectory = d.base + "/logs/../../etc"
		}, []string{"log_directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pods, ctrs := counts(t)
			before, err := d.takeSnapshot()
			if err != nil {
				t.Fatal(err)
			}
			cfg := newPodConfig("bad-pod")
			req := &runtimeapi.RunPodSandboxRequest{Config: cfg}
			tc.change(req)
			resp, err := d.Runtime.RunPodSandbox(ctx, req)
			if err == nil {
				removePod(t, resp.PodSandboxId, cfg)
			}
			wantCode(t, err, codes.InvalidArgument, tc.mentions...)
			assertUnchanged(t, before, pods, ctrs)
		})
	}
}

func TestBadContainerConfig(t *testing.T) {
	ctx := begin(t)
	pullImage(t, images.noCmd)
	podCfg := newPodConfig("bad-containers")
	podID := runPod(t, podCfg)
	otherCfg := newPodConfig("bad-containers-other")
	otherPod := runPod(t, otherCfg)
	otherCtr := runContainer(t, otherPod, otherCfg, newContainerConfig("target", "sleep", "3600"))
	// Its next generation is pre-created in the background: wait for it, so
	// the host is quiet when each case compares it before and after.
	waitWarm(t, otherPod, otherCtr)
	missingHostPath := "/nonexistent-" + randomHex(8) + "/data"
	for _, tc := range []struct {
		name     string
		podID    string
		change   func(*runtimeapi.ContainerConfig)
		code     codes.Code
		mentions []string
	}{
		{"image not pulled", podID, func(c *runtimeapi.ContainerConfig) { c.Image.Image = "docker.io/library/never-pulled:v1" },
			codes.NotFound, []string{"docker.io/library/never-pulled:v1"}},
		{"host path missing", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: missingHostPath}}
		}, codes.InvalidArgument, []string{missingHostPath}},
		{"no command in an image without one", podID, func(c *runtimeapi.ContainerConfig) {
			c.Image.Image, c.Command = images.noCmd, nil
		}, codes.InvalidArgument, nil},
		{"no name", podID, func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "" }, codes.InvalidArgument, []string{"name"}},
		{"relative mount path", podID, func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "data", HostPath: d.base}}
		}, codes.InvalidArgument, []string{"data"}},
		{"log path outside the pod's log directory", podID, func(c *runtimeapi.ContainerConfig) { c.LogPath = "../escape.log" },
			codes.InvalidArgument, []string{"log_path", "../escape.log"}},
		{"absolute log path", podID, func(c *runtimeapi.ContainerConfig) { c.LogPath = "/etc/cron.d/x" },
			codes.InvalidArgument, []string{"log_path", "/etc/cron.d/x"}},
		// Issue 12: target_id could name any pod's container.
		{"pid namespace of another pod's container", podID, func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
				Pid: runtimeapi.NamespaceMode_TARGET, TargetId: otherCtr,
			}}
		}, codes.InvalidArgument, []string{"target_id", otherCtr}},
		{"unknown pod", "0123456789abcdef", func(*runtimeapi.ContainerConfig) {}, codes.NotFound, []string{"0123456789abcdef"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pods, ctrs := counts(t)
			before, err := d.takeSnapshot()
			if err != nil {
				t.Fatal(err)
			}
			cfg := newContainerConfig("bad", "sleep", "3600")
			tc.change(cfg)
			_, err = d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: tc.podID, Config: cfg, SandboxConfig: podCfg})
			wantCode(t, err, tc.code, tc.mentions...)
			assertUnchanged(t, before, pods, ctrs)
		})
	}
	// The pod is still usable after every failed create.
	id := runContainer(t, podID, podCfg, newContainerConfig("good", "sleep", "3600"))
	if out, _, _ := execSync(t, id, "echo", "fine"); out != "fine\n" {
		t.Errorf("exec in a container created after the failures: %q", out)
	}
}

// Issue 12: names were joined with "_" into the keys that make a retried
// RunPodSandbox or CreateContainer return the first one's id, so two
// different pods ("a_b" in namespace "c", "a" in namespace "b_c") were
// taken for one.
func TestNamesDoNotCollide(t *testing.T) {
	begin(t)
	uid := randomHex(16)
	first := newPodConfig("a_b")
	first.Metadata.Namespace, first.Metadata.Uid, first.Hostname = "c", "u_"+uid, "first"
	second := newPodConfig("a")
	second.Metadata.Namespace, second.Metadata.Uid, second.Hostname = "b_c", "u_"+uid, "second"
	idA, idB := runPod(t, first), runPod(t, second)
	if idA == idB {
		t.Fatalf("pods %s/%s and %s/%s got the same id %s", first.Metadata.Namespace, first.Metadata.Name,
			second.Metadata.Namespace, second.Metadata.Name, idA)
	}
	if got := podStatus(t, idB).Metadata; got.Name != "a" || got.Namespace != "b_c" {
		t.Errorf("second pod's status shows %s/%s", got.Namespace, got.Name)
	}
}

// TestUnknownIDs checks CRI's contract for ids the daemon does not know:
// status and actions report NotFound, while stop and remove succeed
// (api.proto: they must be idempotent).
func TestUnknownIDs(t *testing.T) {
	ctx := begin(t)
	const id = "feedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedface"
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"PodSandboxStatus", func() error {
			_, err := d.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
			return err
		}, codes.NotFound},
		{"ContainerStatus", func() error {
			_, err := d.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
			return err
		}, codes.NotFound},
		{"StartContainer", func() error {
			_, err := d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
			return err
		}, codes.NotFound},
		{"ExecSync", func() error {
			_, err := d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}})
			return err
		}, codes.NotFound},
		{"StopPodSandbox", func() error {
			_, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			return err
		}, codes.OK},
		{"RemovePodSandbox", func() error {
			_, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
			return err
		}, codes.OK},
		{"StopContainer", func() error {
			_, err := d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id})
			return err
		}, codes.OK},
		{"RemoveContainer", func() error {
			_, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
			return err
		}, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if tc.code == codes.OK {
				if err != nil {
					t.Errorf("got %v, want success", err)
				}
				return
			}
			wantCode(t, err, tc.code)
		})
	}
}
