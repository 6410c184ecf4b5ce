package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	warmpodv1 "github.com/warmpod/warmpod/api/warmpod/v1"
)

// fakeDaemon answers Version and PodStatus on a unix socket.
type fakeDaemon struct {
	runtime.UnimplementedRuntimeServiceServer
	warmpodv1.UnimplementedWarmpodServer
}

func (fakeDaemon) Version(context.Context, *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{RuntimeName: "fake", RuntimeVersion: "1.0", RuntimeApiVersion: "v1"}, nil
}

func (fakeDaemon) PodStatus(_ context.Context, r *warmpodv1.PodStatusRequest) (*warmpodv1.PodStatusResponse, error) {
	return &warmpodv1.PodStatusResponse{PodSandboxId: r.PodSandboxId, ShimPid: 42, Resets: 3, Containers: []*warmpodv1.ContainerStatus{{
		Id: "c1", Name: "worker", State: "CONTAINER_RUNNING", RestartCount: 3, Warm: true, ReadyGenerations: 1, Precreating: true,
		LastTermination: &warmpodv1.Termination{ExitCode: 42, Reason: "Error", StartedAt: time.Now().Add(-time.Hour - 1500*time.Millisecond).UnixNano(), FinishedAt: time.Now().Add(-time.Hour).UnixNano()},
	}, {
		Id: "c2", Name: "init", State: "CONTAINER_EXITED", ExitCode: 0, RestartCount: 3,
	}}}, nil
}

func serveFake(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "fake.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	runtime.RegisterRuntimeServiceServer(g, fakeDaemon{})
	warmpodv1.RegisterWarmpodServer(g, fakeDaemon{})
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	return sock
}

// unsetSocketEnv clears the socket's environment variables for the test.
func unsetSocketEnv(t *testing.T) {
	for _, k := range []string{socketEnv, criEnv} {
		t.Setenv(k, "") // restores the value after the test
		os.Unsetenv(k)
	}
}

// runCtl runs warmpodctl's command line and returns stdout and stderr.
func runCtl(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newCommand()
	cmd.Writer = &out
	cmd.ErrWriter = &errOut
	err := cmd.Run(context.Background(), append([]string{"warmpodctl"}, args...))
	return out.String(), errOut.String(), err
}

func TestGlobalFlagsAnywhere(t *testing.T) {
	sock := serveFake(t)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"before the command", nil, []string{"--socket", sock, "version"}, "runtime fake 1.0"},
		{"after the command", nil, []string{"version", "--socket", sock}, "runtime fake 1.0"},
		{"with =", nil, []string{"version", "--socket=" + sock}, "runtime fake 1.0"},
		{"single dash", nil, []string{"version", "-socket", sock}, "runtime fake 1.0"},
		{"between commands", nil, []string{"pod", "--socket", sock, "status", "p1"}, "shim pid 42, resets 3"},
		{"after the argument", nil, []string{"pod", "status", "p1", "--socket", sock, "--timeout", "10s"}, "shim pid 42, resets 3"},
		{"unix endpoint", nil, []string{"version", "--socket", "unix://" + sock}, "runtime fake 1.0"},
		{"environment", map[string]string{socketEnv: sock}, []string{"version"}, "runtime fake 1.0"},
		{"crictl's environment", map[string]string{criEnv: "unix://" + sock}, []string{"version"}, "runtime fake 1.0"},
		{"flag over environment", map[string]string{socketEnv: "/nonexistent.sock"}, []string{"version", "--socket", sock}, "runtime fake 1.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unsetSocketEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			out, errOut, err := runCtl(t, tc.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output %q lacks %q", out, tc.want)
			}
		})
	}
}

func TestPodStatusShowsRestartsAndLastTermination(t *testing.T) {
	out, _, err := runCtl(t, "--socket", serveFake(t), "pod", "status", "p1")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("output:\n%s", out)
	}
	for i, want := range []string{
		"c1 worker RUNNING 3 exit 42 Error, 1h0m0s ago after 1.5s 1 ready, making more",
		"c2 init EXITED(0) 3 - 0 ready",
	} {
		if got := strings.Join(strings.Fields(lines[3+i]), " "); got != want {
			t.Errorf("container line %q, want %q", got, want)
		}
	}
}

func TestHelpOnStdout(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"pod", "image", "bench", "version", "--socket", "--timeout", "WARMPOD_SOCKET"}},
		{[]string{"--help"}, []string{"pod", "bench", "--socket", "--timeout"}},
		{[]string{"-h"}, []string{"pod", "bench"}},
		{[]string{"help"}, []string{"pod", "bench"}},
		{[]string{"pod", "--help"}, []string{"reset", "status", "--socket"}},
		{[]string{"pod", "status", "--help"}, []string{"POD_ID", "--socket"}},
		{[]string{"bench", "reset", "--help"}, []string{"--endpoint", "-n ", "--sustained-pods", "--json", "--keep", "--progress", "--socket"}},
	} {
		out, errOut, err := runCtl(t, tc.args...)
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
		}
		if errOut != "" {
			t.Errorf("%v: wrote to stderr: %q", tc.args, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: help lacks %q:\n%s", tc.args, w, out)
			}
		}
	}
}

func TestMissingSocket(t *testing.T) {
	unsetSocketEnv(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	// A socket file nothing listens on: what a daemon that died leaves.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"version", "--socket", missing}, []string{"no socket at " + missing, "--socket", "$WARMPOD_SOCKET"}},
		{[]string{"pod", "status", "p1", "--socket", stale}, []string{"nothing serves " + stale, "--socket", "$WARMPOD_SOCKET"}},
		{[]string{"pod", "reset", "p1", "--socket", "unix://" + missing}, []string{"no socket at " + missing}},
		{[]string{"bench", "reset", "--endpoint", missing}, []string{"no socket at " + missing, "--endpoint"}},
	} {
		_, _, err := runCtl(t, tc.args...)
		if err == nil {
			t.Fatalf("%v: no error", tc.args)
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") {
			t.Errorf("%v: message has more than one line: %q", tc.args, msg)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%v: message %q lacks %q", tc.args, msg, w)
			}
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bogus"},
		{"pod", "bogus"},
		{"pod", "status"},
		{"pod", "status", "a", "b"},
		{"--nope", "version"},
		{"version", "--timeout", "soon"},
		{"bench", "reset", "-n", "0"},
		{"bench", "reset", "--shape", "main"},
		{"bench", "reset", "--scenarios", "native,warm"},
	} {
		_, _, err := runCtl(t, args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: error %v, want a usage error", args, err)
		}
	}
}
