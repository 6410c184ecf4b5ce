package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// daemon is one warmpod daemon under test. Its directories, bridge,
// subnet, chain prefix and cgroup parent belong to this test run alone, so
// it never meets a daemon running on the defaults or another test run.
//
// The tests run one at a time; rt and img are replaced by every start, so
// callers read them afresh after a restart.
type daemon struct {
	bin          string
	base         string
	root, state  string
	socket       string
	logPath      string
	configPath   string
	bridge       string
	subnet       string
	chainPrefix  string
	cgroupParent string
	// extraArgs follow the flags every daemon gets (--cdi-spec-dirs,
	// --network-mode cni ...).
	extraArgs []string

	cmd    *exec.Cmd
	exited chan struct{}
	conn   *grpc.ClientConn
	rt     runtimeapi.RuntimeServiceClient
	img    runtimeapi.ImageServiceClient
}

// goBuild compiles the module's package pkg into dir, named after the
// package's last element, with flags before the package as the Makefile
// gives them, and returns the binary's path.
func goBuild(dir, pkg string, flags ...string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	name := path.Base(pkg)
	out := filepath.Join(dir, name)
	args := append([]string{"build"}, flags...)
	cmd := exec.Command(goBin, append(args, "-o", out, pkg)...)
	// The test runs in integration/; the module root is its parent.
	cmd.Dir = ".."
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", name, err, msg)
	}
	return out, nil
}

// writeConfig puts the registry settings in a TOML file, so both the file
// and the flags are exercised; everything else is given as flags.
func (d *daemon) writeConfig(registry string) error {
	cfg := fmt.Sprintf(`# written by warmpod's integration tests
[registry]
insecure = [%q]

[registry.mirrors]
"docker.io" = ["http://%s"]
`, registry, registry)
	return os.WriteFile(d.configPath, []byte(cfg), 0o644)
}

func (d *daemon) args() []string {
	args := []string{
		"--config", d.configPath,
		"--root", d.root,
		"--state", d.state,
		"--socket", d.socket,
		"--log-level", "debug",
		"--network-bridge", d.bridge,
		"--network-subnet", d.subnet,
		"--network-chain-prefix", d.chainPrefix,
		"--cgroup-parent", d.cgroupParent,
	}
	return append(args, d.extraArgs...)
}

// start runs the daemon and waits until its socket answers Version.
func (d *daemon) start() error {
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "==== starting %s %s\n", d.bin, strings.Join(d.args(), " "))
	cmd := exec.Command(d.bin, d.args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	d.cmd = cmd
	d.exited = make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(d.exited)

	conn, err := grpc.NewClient("unix://"+d.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		d.kill()
		return fmt.Errorf("dial daemon: %w", err)
	}
	d.conn = conn
	d.rt = runtimeapi.NewRuntimeServiceClient(conn)
	d.img = runtimeapi.NewImageServiceClient(conn)
	if err := d.waitReady(); err != nil {
		d.kill()
		return err
	}
	return nil
}

// waitReady polls Version until it answers, the daemon exits or a minute
// passes (recovery of many pods runs before the socket is served).
func (d *daemon) waitReady() error {
	deadline := time.Now().Add(time.Minute)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			return fmt.Errorf("daemon exited during startup (%s); log:\n%s", d.cmd.ProcessState, d.logTail(4000))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, lastErr = d.rt.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if lastErr == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("daemon not ready after a minute: %w; log:\n%s", lastErr, d.logTail(4000))
}

// pid is the running daemon's process id (0 when none runs).
func (d *daemon) pid() int {
	if d.cmd == nil || d.cmd.Process == nil || d.isExited() {
		return 0
	}
	return d.cmd.Process.Pid
}

func (d *daemon) isExited() bool {
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

func (d *daemon) closeConn() {
	if d.conn != nil {
		_ = d.conn.Close()
		d.conn = nil
	}
}

// stop sends SIGTERM and waits; after 30 s it kills the daemon.
func (d *daemon) stop() error {
	if d.cmd == nil || d.isExited() {
		d.closeConn()
		return nil
	}
	d.closeConn()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.kill()
		return errors.New("daemon did not stop within 30 s of SIGTERM; killed it")
	}
	if ws, ok := d.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.ExitStatus() != 0 {
		return fmt.Errorf("daemon exited with %s after SIGTERM", d.cmd.ProcessState)
	}
	return nil
}

// kill ends the daemon with SIGKILL, as a crash would; pods keep running in
// their shims.
func (d *daemon) kill() {
	d.closeConn()
	if d.cmd == nil || d.isExited() {
		return
	}
	_ = d.cmd.Process.Kill()
	<-d.exited
}

// restart stops the daemon with SIGKILL (kill true) or SIGTERM and starts
// it again on the same directories.
func (d *daemon) restart(kill bool) error {
	if kill {
		d.kill()
	} else if err := d.stop(); err != nil {
		return err
	}
	return d.start()
}

// logSize is the daemon log's length, a mark for logSince.
func (d *daemon) logSize() int64 {
	st, err := os.Stat(d.logPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logSince returns the daemon log from offset on.
func (d *daemon) logSince(offset int64) string {
	f, err := os.Open(d.logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err.Error()
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

func (d *daemon) logTail(n int64) string {
	off := d.logSize() - n
	if off < 0 {
		off = 0
	}
	return d.logSince(off)
}

// shimLogs returns the logs of every pod's shim still on disk.
func (d *daemon) allShimLogs() string {
	paths, _ := filepath.Glob(filepath.Join(d.state, "pods", "*", "shim.log"))
	var b strings.Builder
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "==== %s\n%s\n", p, data)
	}
	return b.String()
}

// shimLog returns the log of one pod's shim ("" once the pod is removed).
func (d *daemon) shimLog(podID string) string {
	data, err := os.ReadFile(filepath.Join(d.state, "pods", podID, "shim.log"))
	if err != nil {
		return ""
	}
	return string(data)
}

// watchLogs prints the daemon log written during t when t fails. Call it
// first in a test: cleanups run last-in first-out, so this one runs after
// the test's pods are removed and shows their removal too. Each pod's shim
// log is printed by the cleanup that removes the pod (see runPod).
func (d *daemon) watchLogs(t testing.TB) {
	t.Helper()
	mark := d.logSize()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log during %s:\n%s", t.Name(), d.logSince(mark))
		}
	})
}
