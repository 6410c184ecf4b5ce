package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/integration/launch"
	"github.com/warmpod/warmpod/integration/testimages"
)

// The run's daemon and registry, shared by every test. Tests run one at a
// time (none calls t.Parallel): several compare host state before and
// after a request, which a concurrent test would disturb.
var (
	d      *daemon
	reg    *testimages.Registry
	images imageSet
	// binDir holds the binaries the run builds.
	binDir string
)

// imageSet names the images the registry serves.
type imageSet struct {
	// busybox is the everyday test image, pulled through the docker.io
	// mirror as a kubelet would name it.
	busybox string
	// busyboxDirect names the same image on the registry itself.
	busyboxDirect string
	// busyboxDigest is its manifest digest, busyboxID its config digest
	// (the image id).
	busyboxDigest, busyboxID string
	// noCmd has neither Entrypoint nor Cmd.
	noCmd string
}

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Println("skipping warmpod integration tests: they start the daemon, which needs root")
		os.Exit(0)
	}
	if _, err := testimages.BusyboxLayer(); errors.Is(err, testimages.ErrNoBusybox) {
		fmt.Println("skipping warmpod integration tests:", err)
		os.Exit(0)
	}
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) (code int) {
	start := time.Now()
	s, err := setUp()
	defer func() {
		if err := s.tearDown(); err != nil {
			fmt.Fprintln(os.Stderr, "integration teardown:", err)
			code = 1
		}
		fmt.Printf("integration suite took %s\n", time.Since(start).Round(time.Second))
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration setup:", err)
		return 1
	}
	code = m.Run()
	if err := s.checkLeaks(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	return code
}

// suite owns what setUp made, for tearDown.
type suite struct {
	base     string
	baseline snapshot
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func setUp() (*suite, error) {
	s := &suite{}
	base, err := os.MkdirTemp("", "warmpod-it-")
	if err != nil {
		return s, err
	}
	s.base = base
	// Searchable by others, like /var/lib: a user namespace pod's root is
	// an unprivileged host user that must reach its rootfs.
	if err := os.Chmod(base, 0o711); err != nil {
		return s, err
	}
	binDir = filepath.Join(base, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		return s, err
	}
	bin, err := launch.Binary("", binDir)
	if err != nil {
		return s, err
	}
	// The state directory, <base>/state, is deep on purpose: each pod's
	// shim socket, <state>/pods/<64-hex id>/shim.sock, is then longer than
	// a unix socket address holds, which the daemon and shims must cope
	// with.
	cfg, err := launch.Private(bin, base, "it")
	if err != nil {
		return s, err
	}
	d = &daemon{Daemon: &launch.Daemon{Config: cfg}, base: base}
	if err := startRegistry(); err != nil {
		return s, err
	}
	// The registry settings go to the configuration file, the rest are
	// flags, so both are exercised.
	d.Mirrors = map[string][]string{"docker.io": {"http://" + reg.Addr()}}
	d.Insecure = []string{reg.Addr()}
	// Metrics on a free port; the daemon logs which (see metricsURL).
	d.Args = append(d.Args, "--metrics-address", "127.0.0.1:0")
	fmt.Printf("integration run: dirs %s and %s, bridge %s, subnet %s, chains %s-*, cgroup parent %s, registry %s\n",
		base, d.State, d.Bridge, d.Subnet, d.ChainPrefix, d.CgroupParent, reg.Addr())
	if err := d.Start(); err != nil {
		return s, err
	}
	if s.baseline, err = d.takeSnapshot(); err != nil {
		return s, fmt.Errorf("baseline snapshot: %w", err)
	}
	if err := warmUp(); err != nil {
		return s, fmt.Errorf("warm-up pod: %w\ndaemon log:\n%s", err, d.LogTail(8000))
	}
	// The daemon's fds are compared with their state after the warm-up;
	// everything else with the host before the first pod.
	warm, err := d.takeSnapshot()
	if err != nil {
		return s, fmt.Errorf("baseline snapshot: %w", err)
	}
	s.baseline[kindFDs] = warm[kindFDs]
	return s, nil
}

func startRegistry() error {
	var err error
	reg, err = testimages.StartRegistry()
	if err != nil {
		return err
	}
	busybox, err := testimages.Busybox()
	if err != nil {
		return err
	}
	noCmd, err := testimages.Busybox(testimages.WithCmd())
	if err != nil {
		return err
	}
	for ref, img := range map[string]v1.Image{
		"library/busybox:latest": busybox,
		"library/busybox:stable": busybox,
		"library/nocmd:latest":   noCmd,
	} {
		if _, err := reg.Push(ref, img); err != nil {
			return err
		}
	}
	digest, err := busybox.Digest()
	if err != nil {
		return err
	}
	id, err := busybox.ConfigName()
	if err != nil {
		return err
	}
	images = imageSet{
		busybox:       "docker.io/library/busybox:latest",
		busyboxDirect: reg.Ref("library/busybox:latest"),
		busyboxDigest: digest.String(),
		busyboxID:     id.String(),
		noCmd:         "docker.io/library/nocmd:latest",
	}
	return nil
}

func registryPort() string {
	if reg == nil {
		return ""
	}
	_, port, _ := net.SplitHostPort(reg.Addr())
	return port
}

// warmUp runs one pod through its whole life before the daemon's fds are
// recorded, so what the daemon opens once and keeps (netlink and iptables
// handles, the image store's files) is not taken for a leak.
func warmUp() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := d.Image.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: images.busybox}}); err != nil {
		return err
	}
	podCfg := newPodConfig("warm-up")
	pod, err := d.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		return err
	}
	ctr, err := d.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.PodSandboxId, Config: newContainerConfig("main", "sleep", "60"), SandboxConfig: podCfg,
	})
	if err != nil {
		return err
	}
	if _, err := d.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		return err
	}
	if _, err := d.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr.ContainerId, Cmd: []string{"true"}, Timeout: 10}); err != nil {
		return err
	}
	if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		return err
	}
	if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		return err
	}
	return os.RemoveAll(podCfg.LogDirectory)
}

// checkLeaks removes whatever pods the tests left, then compares the host
// with the baseline taken before the first test.
func (s *suite) checkLeaks() error {
	if d == nil || d.PID() == 0 {
		return errors.New("leak check: the daemon is not running at the end of the suite")
	}
	if err := removeAllPods(); err != nil {
		return fmt.Errorf("leak check: remove pods: %w", err)
	}
	diff, err := d.awaitNoLeaks(s.baseline)
	if err != nil {
		return fmt.Errorf("leak check: %w", err)
	}
	if len(diff) > 0 {
		return fmt.Errorf("leak check: the host differs from before the first test:\n  %s\ndaemon log tail:\n%s",
			strings.Join(diff, "\n  "), d.LogTail(8000))
	}
	fmt.Println("leak check: no mounts, links, pinned namespaces, cgroups, processes, pod dirs or daemon fds left")
	return nil
}

// removeAllPods stops and removes every pod and container the daemon
// lists.
func removeAllPods() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctrs, err := d.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range ctrs.Containers {
		fmt.Printf("removing container %s (%s) left by a test\n", c.Id, c.Metadata.GetName())
		if _, err := d.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.Id}); err != nil {
			errs = append(errs, err)
		}
	}
	pods, err := d.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		fmt.Printf("removing pod %s (%s) left by a test\n", p.Id, p.Metadata.GetName())
		if _, err := d.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			errs = append(errs, err)
		}
		if _, err := d.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// tearDown stops the daemon and removes everything the run made: whatever
// the tests left (after a failure), the bridge and iptables chains, the
// cgroup parent, the registry and the run's directory.
func (s *suite) tearDown() error {
	var errs []error
	if d != nil {
		if d.PID() > 0 {
			if err := removeAllPods(); err != nil {
				errs = append(errs, fmt.Errorf("remove pods: %w", err))
			}
			if err := d.Stop(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := d.Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	if reg != nil {
		if err := reg.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if s != nil && s.base != "" {
		if err := os.RemoveAll(s.base); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
