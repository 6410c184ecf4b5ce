package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestShimDeath kills a pod's shim the ways a shim dies: SIGKILL (as the
// OOM killer does), a crash of the Go runtime (SIGABRT ends it as a panic
// does: stack dump, exit 2), and either while the daemon is down. The pod's
// processes must die with it, before its containers are reported exited,
// each with reason Unknown and a message that says the shim died; the pod is
// not ready; StopPodSandbox and RemovePodSandbox succeed and leave nothing
// behind. (In a pod that shares its pid namespace the pause process, tied
// to the shim, dies with it and the kernel ends the namespace: the shim's
// death while the daemon is down is tried on a pod without one, where the
// containers outlive it.)
func TestShimDeath(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sig        syscall.Signal
		sharedPID  bool
		daemonDown bool
	}{
		{"SIGKILL", syscall.SIGKILL, false, false},
		{"SIGKILL shared pid namespace", syscall.SIGKILL, true, false},
		{"crash", syscall.SIGABRT, false, false},
		{"SIGKILL while the daemon is down", syscall.SIGKILL, false, true},
		{"crash while the daemon is down", syscall.SIGABRT, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) { testShimDeath(t, tc.sig, tc.sharedPID, tc.daemonDown) })
	}
}

func testShimDeath(t *testing.T, sig syscall.Signal, sharedPID, daemonDown bool) {
	ctx := begin(t)
	before, err := d.takeSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	podCfg := newPodConfig("shim-death")
	if sharedPID {
		podCfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_POD},
		}
	}
	podID := runPod(t, podCfg)
	t.Cleanup(func() {
		if d.PID() == 0 {
			if err := d.Start(); err != nil {
				t.Errorf("start the daemon again after the test: %v", err)
			}
		}
	})
	main := runContainer(t, podID, podCfg, newContainerConfig("main", "sleep", "3600"))
	forker := runContainer(t, podID, podCfg, newContainerConfig("forker", "sh", "-c", "sleep 3600 & sleep 3600 & wait"))
	created := createContainer(t, podID, podCfg, newContainerConfig("created", "sleep", "3600"))
	// A pre-created generation: a process waiting before its execve.
	waitWarm(t, podID, main)

	info := podVerboseInfo(t, podID)
	shimPid, _ := info["pid"].(float64)
	cgroup, _ := info["cgroupPath"].(string)
	if shimPid <= 0 || cgroup == "" {
		t.Fatalf("pod verbose info has no shim pid or cgroup: %v", info)
	}
	procs := cgroupProcesses(t, cgroup)
	// sleep, sh and its two sleepers, the created container's init and the
	// pre-created generation's.
	if len(procs) < 6 {
		t.Fatalf("pod cgroup holds %v, want the containers' processes", procs)
	}

	if daemonDown {
		d.Kill()
	}
	if err := syscall.Kill(int(shimPid), sig); err != nil {
		t.Fatalf("kill shim %d: %v", int(shimPid), err)
	}
	waitFor(t, "the shim to die", func() (bool, string) {
		return !processRunning(int(shimPid)), fmt.Sprintf("shim %d runs", int(shimPid))
	})
	if daemonDown {
		// Nothing ended the containers with their shim.
		if left := cgroupProcesses(t, cgroup); len(left) == 0 {
			t.Fatal("the pod's processes died with the shim: nothing for the daemon to do")
		}
		if err := d.Start(); err != nil {
			t.Fatalf("start the daemon again: %v", err)
		}
	}

	for _, id := range []string{main, forker, created} {
		st := waitExited(t, id)
		// Reported exited only once its processes are gone.
		if left := cgroupProcesses(t, cgroup); len(left) > 0 {
			t.Fatalf("container %s reported exited while the pod's cgroup still holds %v", st.Metadata.Name, left)
		}
		if st.Reason != "Unknown" || !strings.Contains(st.Message, "shim died") {
			t.Errorf("container %s exited with reason %q message %q, want Unknown and a message that the shim died", st.Metadata.Name, st.Reason, st.Message)
		}
	}
	if st := podStatus(t, podID); st.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("pod is %v after its shim died, want not ready", st.State)
	}
	if sig == syscall.SIGABRT {
		if log := d.shimLog(podID); !strings.Contains(log, "SIGABRT") {
			t.Errorf("the shim log shows no crash:\n%s", log)
		}
	}

	if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	// A daemon started again opens some fds only when it first needs them.
	var ignore []string
	if daemonDown {
		ignore = append(ignore, kindFDs)
	}
	diff, err := d.awaitNoLeaks(before, ignore...)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) > 0 {
		t.Errorf("left behind by the pod whose shim died:\n  %s", strings.Join(diff, "\n  "))
	}
}

// podVerboseInfo returns the "info" of a pod's verbose status.
func podVerboseInfo(t testing.TB, id string) map[string]any {
	t.Helper()
	resp, err := d.Runtime.PodSandboxStatus(testCtx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus %s: %v", id, err)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
		t.Fatalf("verbose info of pod %s: %v", id, err)
	}
	return info
}

// cgroupProcesses lists the live (not zombie) processes in cgroup path or
// below it, in any hierarchy.
func cgroupProcesses(t testing.TB, path string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		comm, state, _ := parseStat(string(stat))
		if state == "Z" {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 && under(parts[2], path) {
				out = append(out, fmt.Sprintf("pid %d (%s)", pid, comm))
				break
			}
		}
	}
	return out
}

// processRunning tells whether pid is a live process (a zombie has died).
func processRunning(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, state, _ := parseStat(string(stat))
	return state != "Z"
}
