// Command gpubench measures pod resets with and without a GPU bound, for
// integration/gpu/run.sh:
//
//	gpubench write-image FILE
//	    write a busybox docker archive (from the host's busybox-static) to
//	    FILE, to import where no registry is reachable
//	gpubench run --socket S --import FILE --gpu-devices NAMES [--resets N]
//	    run a bare pod and a pod whose container is bound to the CDI devices
//	    NAMES and runs --cmd (nvidia-smi), reset each N times through
//	    warmpod's ResetPod, and print the reset latency of both
//
// Pods run on the host network, so no pod network is set up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
	"github.com/warmpod/warmpod/integration/testimages"
)

// imageRef is the name the written archive gives the image.
const imageRef = "warmpod.test/busybox:gpu"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gpubench write-image FILE | gpubench run [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "write-image":
		if len(os.Args) != 3 {
			err = errors.New("usage: gpubench write-image FILE")
			break
		}
		err = writeImage(os.Args[2])
	case "run":
		err = run(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gpubench:", err)
		os.Exit(1)
	}
}

func writeImage(path string) error {
	img, err := testimages.Busybox()
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := testimages.WriteDockerArchive(f, map[string]v1.Image{imageRef: img}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

type options struct {
	socket     string
	importFile string
	devices    []string
	cmd        string
	resets     int
	logDir     string
}

func run(args []string) error {
	var o options
	fs := flag.NewFlagSet("gpubench run", flag.ContinueOnError)
	fs.StringVar(&o.socket, "socket", "/run/warmpod/warmpod.sock", "warmpod socket")
	fs.StringVar(&o.importFile, "import", "", "image archive to import (gpubench write-image)")
	devs := fs.String("gpu-devices", "", "CDI devices of the GPU pod, comma separated")
	fs.StringVar(&o.cmd, "cmd", "nvidia-smi -L", "command the GPU pod's container runs at each start and that checks the GPU")
	fs.IntVar(&o.resets, "resets", 100, "resets per pod")
	fs.StringVar(&o.logDir, "log-dir", "", "pod log directory (default: a temp dir)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.importFile == "" || *devs == "" {
		return errors.New("--import and --gpu-devices are required")
	}
	o.devices = strings.Split(*devs, ",")
	if o.logDir == "" {
		dir, err := os.MkdirTemp("", "gpubench-logs-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.logDir = dir
	}
	conn, err := grpc.NewClient("unix://"+o.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	b := &bench{o: o, rt: runtime.NewRuntimeServiceClient(conn), wp: warmpodv1.NewWarmpodClient(conn)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	imp, err := b.wp.ImportImage(ctx, &warmpodv1.ImportImageRequest{Path: o.importFile})
	if err != nil {
		return fmt.Errorf("import %s: %w", o.importFile, err)
	}
	if !slices.Contains(imp.Images, imageRef) && len(imp.Images) > 0 {
		b.image = imp.Images[0]
	} else {
		b.image = imageRef
	}

	bare, err := b.measure(ctx, "bare", nil, []string{"sleep", "2147483647"})
	if err != nil {
		return err
	}
	// The command runs at every start (each generation), then the
	// container sleeps, so a reset restarts a process that used the GPU.
	gpu, err := b.measure(ctx, "gpu", o.devices, []string{"sh", "-c", o.cmd + " > /dev/null; exec sleep 2147483647"})
	if err != nil {
		return err
	}
	fmt.Printf("\nreset latency over %d resets each (ResetPod as the client sees it; the shim's own time in brackets):\n", o.resets)
	for _, r := range []result{bare, gpu} {
		fmt.Printf("  %-5s p50 %-10s p90 %-10s [shim p50 %s, p90 %s]\n", r.name,
			pct(r.client, 50), pct(r.client, 90), pct(r.shim, 50), pct(r.shim, 90))
	}
	return nil
}

type bench struct {
	o     options
	rt    runtime.RuntimeServiceClient
	wp    warmpodv1.WarmpodClient
	image string
}

type result struct {
	name         string
	client, shim []time.Duration
}

// measure runs a pod of one container bound to devices, resets it, and
// removes it.
func (b *bench) measure(ctx context.Context, name string, devices []string, cmd []string) (result, error) {
	res := result{name: name}
	uid := fmt.Sprintf("gpubench-%s-%d", name, time.Now().UnixNano())
	podCfg := &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: "gpubench-" + name, Namespace: "gpubench", Uid: uid},
		LogDirectory: filepath.Join(b.o.logDir, uid),
		Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE},
		}},
	}
	pod, err := b.rt.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		return res, fmt.Errorf("%s pod: %w", name, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = b.rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		_, _ = b.rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	}()
	ctrCfg := &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "main"},
		Image:    &runtime.ImageSpec{Image: b.image},
		Command:  cmd,
		LogPath:  "main.log",
		// The kubelet repeats the pod's namespace modes for each container.
		Linux: &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
			NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE},
		}},
	}
	for _, d := range devices {
		ctrCfg.CDIDevices = append(ctrCfg.CDIDevices, &runtime.CDIDevice{Name: d})
	}
	ctr, err := b.rt.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: ctrCfg, SandboxConfig: podCfg})
	if err != nil {
		return res, fmt.Errorf("%s container: %w", name, err)
	}
	if _, err := b.rt.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		return res, fmt.Errorf("start %s container: %w", name, err)
	}
	if len(devices) > 0 {
		if err := b.check(ctx, ctr.ContainerId, "before the resets"); err != nil {
			return res, err
		}
	}
	for i := range b.o.resets {
		// Each reset starts from the steady state: the next generation
		// pre-created.
		if err := b.waitWarm(ctx, pod.PodSandboxId); err != nil {
			return res, fmt.Errorf("%s pod before reset %d: %w", name, i+1, err)
		}
		start := time.Now()
		r, err := b.wp.ResetPod(ctx, &warmpodv1.ResetPodRequest{PodSandboxId: pod.PodSandboxId})
		if err != nil {
			return res, fmt.Errorf("reset %d of the %s pod: %w", i+1, name, err)
		}
		res.client = append(res.client, time.Since(start))
		res.shim = append(res.shim, time.Duration(r.DurationNs))
	}
	if len(devices) > 0 {
		if err := b.check(ctx, ctr.ContainerId, fmt.Sprintf("after %d resets", b.o.resets)); err != nil {
			return res, err
		}
	}
	return res, nil
}

// check runs the GPU command in the container and prints what it said.
func (b *bench) check(ctx context.Context, ctrID, when string) error {
	out, err := b.rt.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: ctrID, Cmd: []string{"sh", "-c", b.o.cmd}, Timeout: 60})
	if err != nil {
		return fmt.Errorf("%s in the GPU container %s: %w", b.o.cmd, when, err)
	}
	fmt.Printf("%s in the GPU container %s (exit %d):\n%s%s", b.o.cmd, when, out.ExitCode, out.Stdout, out.Stderr)
	if out.ExitCode != 0 {
		return fmt.Errorf("%s exited %d %s", b.o.cmd, out.ExitCode, when)
	}
	return nil
}

// waitWarm waits until every container of the pod has a pre-created
// next generation.
func (b *bench) waitWarm(ctx context.Context, podID string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := b.wp.PodStatus(ctx, &warmpodv1.PodStatusRequest{PodSandboxId: podID})
		if err != nil {
			return err
		}
		warm := len(st.Containers) > 0
		for _, c := range st.Containers {
			warm = warm && c.Warm
		}
		if warm {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("no pre-created generation after a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pct is the p-th percentile of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i].Round(10 * time.Microsecond)
}
