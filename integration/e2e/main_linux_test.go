package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/warmpod/warmpod/integration/testimages"
)

// cl is the run's cluster, shared by every test. Tests run one at a time.
var cl *cluster

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Println("skipping warmpod e2e tests: they start a kubelet and the warmpod daemon, which need root")
		os.Exit(0)
	}
	if _, err := testimages.BusyboxLayer(); errors.Is(err, testimages.ErrNoBusybox) {
		fmt.Println("skipping warmpod e2e tests:", err)
		os.Exit(0)
	}
	os.Exit(run(m))
}

// pleg is the kubelet's pod lifecycle event generator of the run: "generic" (its 1 s relist, the default)
// or "evented" (the EventedPLEG gate: CRI container events trigger relists).
func pleg() string {
	if v := os.Getenv("E2E_PLEG"); v != "" {
		return v
	}
	return "generic"
}

func run(m *testing.M) (code int) {
	start := time.Now()
	bin, err := clusterBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		return 1
	}
	if p := pleg(); p != "generic" && p != "evented" {
		fmt.Fprintf(os.Stderr, "e2e setup: E2E_PLEG=%q: want generic or evented\n", p)
		return 1
	}
	cl, err = newCluster(bin, pleg() == "evented")
	defer func() {
		if cl == nil {
			return
		}
		if err := cl.tearDown(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e teardown:", err)
			code = 1
		}
		fmt.Printf("e2e run (%s PLEG) took %s\n", pleg(), time.Since(start).Round(time.Second))
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := cl.start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		return 1
	}
	fmt.Printf("e2e run: cluster up in %s\n", time.Since(t0).Round(time.Millisecond))
	return m.Run()
}

// clusterBinaries returns the directory of etcd and the Kubernetes binaries: $E2E_K8S_BIN, or what
// build-cluster.sh builds (or finds in its cache).
func clusterBinaries() (string, error) {
	if dir := os.Getenv("E2E_K8S_BIN"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command("./build-cluster.sh")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("build-cluster.sh: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}
