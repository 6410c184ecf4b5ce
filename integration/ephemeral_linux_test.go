package integration

import (
	"fmt"
	"os"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

// TestEphemeralContainer runs a debug container in the pid namespace of a
// pod's main container (kubectl debug --target), then resets the pod. The
// debug container is terminated, not restarted (KEP-5532; the kubelet never
// restarts ephemeral containers); the main container restarts in a new pid
// namespace, and a debug container created then joins that one, not
// whatever process took the main container's old pid.
func TestEphemeralContainer(t *testing.T) {
	ctx := begin(t)
	podCfg := newPodConfig("ephemeral")
	podID := runPod(t, podCfg)
	main := runContainer(t, podID, podCfg, newContainerConfig("main", "sleep", "3601"))
	debug := func(name string) *runtimeapi.ContainerConfig {
		c := newContainerConfig(name, "sleep", "3602")
		c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: main},
		}
		return c
	}
	d1 := runContainer(t, podID, podCfg, debug("debugger-1"))
	if out, _, _ := execSync(t, d1, "cat", "/proc/1/cmdline"); out != "sleep\x003601\x00" {
		t.Fatalf("pid 1 seen from the debug container: %q, want the main container's", out)
	}
	waitWarm(t, podID, main)

	if _, err := wp().ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("ResetPod: %v", err)
	}
	if st := containerStatus(t, main); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("main container after the reset: %v", st.State)
	}
	st := waitExited(t, d1)
	if info := verboseInfo(t, d1); info["restartCount"] != float64(0) || st.ExitCode != 137 {
		t.Errorf("debug container after the reset: exit %d, restart count %v; want killed (137), not restarted", st.ExitCode, info["restartCount"])
	}

	d2 := runContainer(t, podID, podCfg, debug("debugger-2"))
	if got, want := pidNamespace(t, d2), pidNamespace(t, main); got != want {
		t.Errorf("debug container after the reset in pid namespace %s, the main container's is %s", got, want)
	}
	if out, _, _ := execSync(t, d2, "cat", "/proc/1/cmdline"); out != "sleep\x003601\x00" {
		t.Errorf("pid 1 seen from the new debug container: %q, want the main container's", out)
	}
}

// pidNamespace is the pid namespace of a running container's process.
func pidNamespace(t testing.TB, id string) string {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", containerPid(t, id)))
	if err != nil {
		t.Fatal(err)
	}
	return ns
}
