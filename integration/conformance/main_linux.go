package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/integration/launch"
)

type skipFlags struct {
	patterns []string
	reasons  map[string]string
}

func (s *skipFlags) String() string { return strings.Join(s.patterns, "|") }

// Set takes "PATTERN => REASON"; a skip without a reason is refused.
func (s *skipFlags) Set(v string) error {
	pat, why, ok := strings.Cut(v, " => ")
	if !ok || strings.TrimSpace(pat) == "" || strings.TrimSpace(why) == "" {
		return fmt.Errorf("want \"PATTERN => REASON\", got %q", v)
	}
	if s.reasons == nil {
		s.reasons = map[string]string{}
	}
	s.patterns = append(s.patterns, strings.TrimSpace(pat))
	s.reasons[strings.TrimSpace(pat)] = strings.TrimSpace(why)
	return nil
}

type options struct {
	warmpod, critest, busybox string
	skips                     skipFlags
	benchmark                 bool
	benchmarkParams           string
	artifacts                 string
	critestTimeout            time.Duration
	extra                     []string
}

func main() {
	var o options
	flag.StringVar(&o.warmpod, "warmpod", "bin/warmpod", "warmpod binary to run")
	flag.StringVar(&o.critest, "critest", "critest", "critest binary")
	flag.StringVar(&o.busybox, "busybox", "/bin/busybox", "busybox binary the test images are built from")
	flag.Var(&o.skips, "skip", `"PATTERN => REASON": skip the specs PATTERN (a ginkgo skip regexp) matches, saying why (repeatable)`)
	flag.BoolVar(&o.benchmark, "benchmark", false, "run critest's benchmarks instead of its validation specs")
	flag.StringVar(&o.benchmarkParams, "benchmark-params", "", "critest benchmarking parameters (YAML)")
	flag.StringVar(&o.artifacts, "artifacts", "", "directory to keep the daemon log, critest's output and reports in (default: removed with the run)")
	flag.DurationVar(&o.critestTimeout, "critest-timeout", 40*time.Minute, "how long critest may run")
	flag.Parse()
	o.extra = flag.Args()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "conformance: needs root (the daemon creates namespaces, cgroups, mounts, a bridge and iptables rules)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// run sets up, runs critest and tears down; the exit code is 1 when a spec or a check failed.
func run(ctx context.Context, o options) (code int, retErr error) {
	for _, p := range []*string{&o.warmpod, &o.busybox, &o.benchmarkParams} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return 2, err
		}
		*p = abs
	}
	critest, err := exec.LookPath(o.critest)
	if err != nil {
		return 2, fmt.Errorf("critest: %w (make conformance installs it)", err)
	}
	dir, err := os.MkdirTemp("", "warmpod-conformance-")
	if err != nil {
		return 2, err
	}
	// Like /var/lib, the daemon's root must be searchable by others: a
	// container's root in a user namespace is an unprivileged host user,
	// and the kernel walks to its rootfs with its credentials (warmpod
	// declares user namespace support only then).
	if err := os.Chmod(dir, 0o711); err != nil {
		return 2, err
	}
	// Until the daemon's teardown takes over, a failed setup removes the run's directory itself.
	tornDown := false
	defer func() {
		if !tornDown {
			_ = os.RemoveAll(dir)
		}
	}()
	artifacts := o.artifacts
	if artifacts == "" {
		artifacts = filepath.Join(dir, "artifacts")
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		return 2, err
	}
	regLog, err := os.Create(filepath.Join(artifacts, "registry.log"))
	if err != nil {
		return 2, err
	}
	defer regLog.Close()

	start := time.Now()
	fmt.Printf("==== building critest's test images from %s\n", o.busybox)
	imgs, err := serveImages(o.busybox, regLog)
	if err != nil {
		return 2, err
	}
	d, err := newDaemon(o.warmpod, dir, imgs.reg.Addr(), imgs.hosts)
	if err != nil {
		_ = imgs.reg.Close()
		return 2, err
	}
	d.LogPath = filepath.Join(artifacts, "warmpod.log")
	tornDown = true
	defer func() {
		if err := teardown(d, imgs, dir, o.artifacts != ""); err != nil {
			fmt.Fprintln(os.Stderr, "conformance: teardown:", err)
			if code == 0 {
				code = 1
			}
		}
		fmt.Printf("==== conformance run took %s\n", time.Since(start).Round(time.Second))
	}()
	fmt.Printf("==== registry %s mirrors %s\n", imgs.reg.Addr(), strings.Join(imgs.hosts, ", "))
	fmt.Printf("==== daemon: config %s, socket %s, bridge %s, subnet %s, chains %s-*, cgroup parent %s, log %s\n",
		d.ConfigPath, d.SocketPath(), d.Bridge, d.Subnet, d.ChainPrefix, d.CgroupParent, d.LogPath)
	if err := d.Start(); err != nil {
		return 2, err
	}

	if o.benchmark {
		// The skip list names validation specs, which a benchmark run does not select anyway.
		o.skips = skipFlags{}
	}
	report := filepath.Join(artifacts, "critest-report.json")
	critestErr := runCritest(ctx, critest, d.SocketPath(), report, artifacts, o)
	if ctx.Err() != nil {
		return 1, errors.New("interrupted")
	}
	t, err := readTally(report, o.skips.patterns)
	if err != nil {
		return 1, fmt.Errorf("%w (critest: %v)", err, critestErr) //nolint:errorlint // critestErr may be nil: it only adds to the message
	}
	t.print(os.Stdout, o.skips.reasons)
	failed := len(t.failed) > 0
	if o.benchmark {
		if err := printBenchmarks(os.Stdout, filepath.Join(artifacts, "benchmarks")); err != nil {
			fmt.Println("benchmark summary:", err)
		}
	}
	if !o.benchmark {
		if err := checkDigestPull(d, imgs); err != nil {
			fmt.Printf("FAILED   digest-pinned pull of a look-alike: %v\n", err)
			failed = true
		} else {
			fmt.Println("PASSED   digest-pinned pull of a look-alike (stands in for the skipped upstream digest spec)")
		}
	}
	if failed {
		fmt.Printf("daemon log tail:\n%s\n", d.LogTail(6000))
		return 1, nil
	}
	if critestErr != nil {
		return 1, fmt.Errorf("critest: %w", critestErr)
	}
	return 0, nil
}

// runCritest runs critest against the daemon's socket, its output going to the terminal and to a file
// among the artifacts.
func runCritest(ctx context.Context, critest, socket, report, artifacts string, o options) error {
	args := []string{
		"-runtime-endpoint", "unix://" + socket,
		"-image-endpoint", "unix://" + socket,
		"-ginkgo.no-color",
		"-ginkgo.json-report", report,
		"-test.timeout", o.critestTimeout.String(),
	}
	if !o.benchmark {
		// critest makes a benchmark run succinct itself, and ginkgo refuses both.
		args = append(args, "-ginkgo.v")
	}
	if len(o.skips.patterns) > 0 {
		args = append(args, "-ginkgo.skip", strings.Join(o.skips.patterns, "|"))
	}
	if o.benchmark {
		args = append(args, "-benchmark", "-benchmarking-output-dir", filepath.Join(artifacts, "benchmarks"))
		if err := os.MkdirAll(filepath.Join(artifacts, "benchmarks"), 0o755); err != nil {
			return err
		}
		if o.benchmarkParams != "" {
			args = append(args, "-benchmarking-params-file", o.benchmarkParams)
		}
	}
	args = append(args, o.extra...)
	out, err := os.Create(filepath.Join(artifacts, "critest.log"))
	if err != nil {
		return err
	}
	defer out.Close()
	fmt.Printf("==== %s %s\n", critest, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, critest, args...)
	// critest reads /etc/crictl.yaml and the working directory's crictl.yaml; neither may steer the run.
	cmd.Dir = artifacts
	// Specs that fail midway leave their temporary pod log dirs; keep them among the artifacts.
	tmp := filepath.Join(artifacts, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.Stdout = io.MultiWriter(os.Stdout, out)
	cmd.Stderr = cmd.Stdout
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	return cmd.Run()
}

// checkDigestPull pulls the test-image-digest look-alike pinned to its own digest and checks what critest's
// digest spec checks of the upstream image: the image lists no tag and exactly that digest, and removing
// it by id removes it.
func checkDigestPull(d *launch.Daemon, imgs *servedImages) error {
	const repo = "gcr.io/k8s-staging-cri-tools/test-image-digest"
	digest, ok := imgs.digests[repo+":latest"]
	if !ok {
		return errors.New("no test-image-digest look-alike was served")
	}
	ref := repo + "@" + digest
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := d.Image.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	st, err := d.Image.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return fmt.Errorf("image status %s: %w", ref, err)
	}
	img := st.GetImage()
	switch {
	case img == nil:
		return fmt.Errorf("%s is not listed after its pull", ref)
	case len(img.RepoTags) != 0:
		return fmt.Errorf("%s has repo tags %v, want none", ref, img.RepoTags)
	case len(img.RepoDigests) != 1 || img.RepoDigests[0] != ref:
		return fmt.Errorf("%s has repo digests %v, want exactly it", ref, img.RepoDigests)
	case img.GetSize() == 0:
		return fmt.Errorf("%s has no size", ref)
	}
	if _, err := d.Image.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: img.Id}}); err != nil {
		return fmt.Errorf("remove %s: %w", img.Id, err)
	}
	st, err = d.Image.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return fmt.Errorf("image status %s after removal: %w", ref, err)
	}
	if st.GetImage() != nil {
		return fmt.Errorf("%s is still listed after its removal", ref)
	}
	return nil
}

// teardown removes what the run made: pods (over CRI, while the daemon runs), the daemon and what it left
// (launch.Daemon.Remove: processes, mounts, its bridge and chains, its cgroups, its directories), the
// registry and the run's directory (the artifacts are kept when asked for).
func teardown(d *launch.Daemon, imgs *servedImages, dir string, keepArtifacts bool) error {
	var errs []error
	if d.PID() > 0 {
		n, err := removePods(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("remove pods: %w", err))
		}
		if n > 0 {
			fmt.Printf("==== removed %d pods the specs left behind\n", n)
		}
	}
	if err := d.Stop(); err != nil {
		errs = append(errs, err)
	}
	if err := d.Remove(); err != nil {
		errs = append(errs, err)
	}
	if err := imgs.reg.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	if keepArtifacts {
		fmt.Println("==== daemon log, critest output and reports kept in the artifacts directory")
	}
	return errors.Join(errs...)
}
