package integration

import (
	"fmt"
	"slices"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

// latencyRounds is how many pods TestLatencyReport times.
const latencyRounds = 25

// TestLatencyReport times, over the socket, RunPodSandbox, the first
// Create+Start of a container in a fresh pod, and the Create+Start the
// kubelet makes when it restarts that container in place (StopContainer
// with timeout 0 and RemoveContainer first, untimed) after giving the shim
// time to pre-create the container's next generation. It reports medians
// and asserts nothing about them: the machine is shared and noisy. For
// numbers to compare, run BenchmarkRunPodSandboxNetworks and
// BenchmarkCreateStartContainer.
func TestLatencyReport(t *testing.T) {
	ctx := begin(t)
	pullImage(t, images.busybox)
	var runPodTimes, coldTimes, restartTimes []time.Duration
	cold := 0 // restarts that found no pre-created generation
	for i := range latencyRounds {
		podCfg := newPodConfig(fmt.Sprintf("latency-%d", i))
		start := time.Now()
		resp, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
		runPodTimes = append(runPodTimes, time.Since(start))
		if err != nil {
			t.Fatalf("RunPodSandbox: %v", err)
		}
		podID := resp.PodSandboxId
		ctrCfg := newContainerConfig("main", "sleep", "3600")
		coldTimes = append(coldTimes, timeCreateStart(t, podID, podCfg, ctrCfg))

		list, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
		if err != nil || len(list.Containers) != 1 {
			t.Fatalf("ListContainers: %v, %v", list, err)
		}
		old := list.Containers[0].Id
		// The shim pre-creates the container's next generation in the
		// background; the kubelet's restart is meant to find it ready.
		// If the first never gets one, the rest are not waited for.
		wait := 10 * time.Second
		if cold == i && i > 0 {
			wait = 0
		}
		if !pollWarm(t, podID, old, wait) {
			cold++
		}
		if _, err := d.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: old, Timeout: 0}); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: old}); err != nil {
			t.Fatal(err)
		}
		ctrCfg.Metadata.Attempt = 1
		restartTimes = append(restartTimes, timeCreateStart(t, podID, podCfg, ctrCfg))
		removePod(t, podID, podCfg)
	}
	t.Logf("latency over %d pods: RunPodSandbox median %s (p90 %s); Create+Start, first container median %s (p90 %s); "+
		"Create+Start, restart in place median %s (p90 %s), %d of %d restarts found a pre-created generation",
		latencyRounds, median(runPodTimes), p90(runPodTimes), median(coldTimes), p90(coldTimes),
		median(restartTimes), p90(restartTimes), latencyRounds-cold, latencyRounds)
}

// waitWarm waits until the next generation of container id, of pod podID,
// is pre-created, as warmpod's PodStatus reports it.
func waitWarm(t testing.TB, podID, id string) {
	t.Helper()
	if !pollWarm(t, podID, id, time.Minute) {
		t.Fatalf("no pre-created generation of %s within a minute", short(id))
	}
}

// pollWarm reports whether the next generation of container id, of pod
// podID, is pre-created within timeout, and pre-creation has settled: the
// shim makes no more of them (the fast spawner keeps two ready), so the
// host is quiet for a before-and-after comparison.
func pollWarm(t testing.TB, podID, id string, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := wp().PodStatus(testCtx(t), &warmpodv1.PodStatusRequest{PodSandboxId: podID})
		if err != nil {
			t.Fatalf("PodStatus: %v", err)
		}
		for _, c := range st.Containers {
			if c.Id == id && c.Warm && !c.Precreating {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func timeCreateStart(t testing.TB, podID string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) time.Duration {
	t.Helper()
	ctx := testCtx(t)
	start := time.Now()
	resp, err := d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	return time.Since(start)
}

func sorted(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}

func median(ds []time.Duration) time.Duration {
	s := sorted(ds)
	return s[len(s)/2].Round(10 * time.Microsecond)
}

func p90(ds []time.Duration) time.Duration {
	s := sorted(ds)
	return s[len(s)*9/10].Round(10 * time.Microsecond)
}

// BenchmarkCreateStartContainer times Create+Start of the first container
// of a fresh pod.
func BenchmarkCreateStartContainer(b *testing.B) {
	d.watchLogs(b)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		podCfg := newPodConfig(fmt.Sprintf("bench-%d", i))
		podID := runPodNoCleanup(b, podCfg)
		b.StartTimer()
		timeCreateStart(b, podID, podCfg, newContainerConfig("main", "sleep", "3600"))
		b.StopTimer()
		removePod(b, podID, podCfg)
		b.StartTimer()
	}
}

func runPodNoCleanup(b *testing.B, cfg *runtimeapi.PodSandboxConfig) string {
	b.Helper()
	resp, err := d.Runtime.RunPodSandbox(testCtx(b), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	return resp.PodSandboxId
}
