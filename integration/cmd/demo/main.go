// Command demo shows warmpod's main job on a running daemon: a pod whose
// worker exits with code 42 after each task, and a Kubernetes restart rule
// (KEP-5532, RestartAllContainers on exit code 42) that makes the pod's shim
// restart every container of the pod in place. The pod keeps its IP, its
// volume and its sandbox; only the containers are replaced.
//
//	demo --socket /run/warmpod/warmpod.sock --resets 5
//
// It pulls busybox (through whatever mirror the daemon has), runs the pod,
// prints each reset as it happens, times one reset requested through
// warmpod's ResetPod, and removes the pod again unless --keep is given.
// "make run" runs it against a freshly started daemon.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

// worker does one "task" per run: it counts its runs in the pod's volume,
// which outlives every reset, and exits 42 to ask for the next one.
const worker = `n=$(cat /work/runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > /work/runs
echo "task $n on $(hostname), pod IP $(ip -4 -o addr show eth0 | awk '{print $4}')"
sleep 0.3
exit 42`

// restartRules is the pod annotation carrying the worker's restart rule.
const restartRules = `{"worker":[{"action":"RestartAllContainers","exitCodes":{"operator":"In","values":[42]}}]}`

func main() {
	socket := flag.String("socket", "/run/warmpod/warmpod.sock", "warmpod's CRI socket")
	image := flag.String("image", "busybox", "image of the demo's containers")
	resets := flag.Int("resets", 5, "in-place resets to watch")
	keep := flag.Bool("keep", false, "leave the demo pod running")
	flag.Parse()
	if err := run(*socket, *image, *resets, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(socket, image string, resets int, keep bool) error {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	img := runtimeapi.NewImageServiceClient(conn)
	wp := warmpodv1.NewWarmpodClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	v, err := waitVersion(ctx, rt)
	if err != nil {
		return err
	}
	fmt.Printf("connected to %s %s on %s\n", v.RuntimeName, v.RuntimeVersion, socket)
	pulled, err := img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}})
	if err != nil {
		return fmt.Errorf("pull %s: %w", image, err)
	}
	fmt.Printf("pulled %s: %s\n", image, pulled.ImageRef)

	work, err := os.MkdirTemp("", "warmpod-demo-")
	if err != nil {
		return err
	}
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "demo", Namespace: "default", Uid: fmt.Sprintf("demo-%d", time.Now().UnixNano())},
		Hostname:     "demo",
		LogDirectory: filepath.Join(work, "logs"),
		Annotations:  map[string]string{"warmpod.io/restart-policy-rules": restartRules},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		return fmt.Errorf("run pod: %w", err)
	}
	podID := pod.PodSandboxId
	if !keep {
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, _ = rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
			_, _ = rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
			_ = os.RemoveAll(work)
			fmt.Printf("removed pod %.12s\n", podID)
		}()
	}
	st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		return err
	}
	fmt.Printf("pod %.12s is ready with IP %s\n", podID, st.Status.GetNetwork().GetIp())

	vol := []*runtimeapi.Mount{{ContainerPath: "/work", HostPath: work}}
	for _, c := range []struct {
		name string
		cmd  []string
	}{
		{"helper", []string{"sleep", "3600"}},
		{"worker", []string{"sh", "-c", worker}},
	} {
		id, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, SandboxConfig: podCfg, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: c.name},
			Image:    &runtimeapi.ImageSpec{Image: image},
			Command:  c.cmd,
			LogPath:  c.name + ".log",
			Mounts:   vol,
		}})
		if err != nil {
			return fmt.Errorf("create %s: %w", c.name, err)
		}
		if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id.ContainerId}); err != nil {
			return fmt.Errorf("start %s: %w", c.name, err)
		}
	}
	fmt.Printf("started helper and worker; the worker exits 42 after each task, and its restart rule resets the pod in place\n")

	seen := uint64(0)
	for seen < uint64(resets) {
		ps, err := wp.PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: podID})
		if err != nil {
			return err
		}
		if ps.Resets > seen {
			seen = ps.Resets
			fmt.Printf("reset %d: %s\n", seen, describe(ps.Containers))
		}
		time.Sleep(20 * time.Millisecond)
	}

	res, err := wp.ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: podID})
	if err != nil {
		return fmt.Errorf("reset pod: %w", err)
	}
	fmt.Printf("ResetPod restarted every container in place in %s\n", time.Duration(res.DurationNs))

	st, err = rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		return err
	}
	fmt.Printf("pod IP after %d resets: %s (same sandbox, same network namespace)\n", seen+1, st.Status.GetNetwork().GetIp())
	if data, err := os.ReadFile(filepath.Join(podCfg.LogDirectory, "worker.log")); err == nil {
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		fmt.Printf("worker log (%s), last lines:\n", filepath.Join(podCfg.LogDirectory, "worker.log"))
		for _, l := range lines[max(0, len(lines)-3):] {
			fmt.Println("  " + l)
		}
	}
	if keep {
		fmt.Printf("keeping pod %s (crictl stopp/rmp it when done)\n", podID)
	}
	return nil
}

func describe(cs []*warmpodv1.ContainerStatus) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s restarts=%d %s", c.Name, c.RestartCount, strings.TrimPrefix(c.State, "CONTAINER_")))
	}
	return strings.Join(parts, ", ")
}

// waitVersion waits for the daemon to answer, for up to a minute.
func waitVersion(ctx context.Context, rt runtimeapi.RuntimeServiceClient) (*runtimeapi.VersionResponse, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		v, err := rt.Version(c, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return v, nil
		}
		if time.Now().After(deadline) {
			return nil, errors.Join(errors.New("the daemon did not answer within a minute"), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
