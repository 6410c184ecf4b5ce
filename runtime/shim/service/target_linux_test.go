package service

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/warmpod/warmpod/runtime/shim"
)

// createTargeting creates container id, whose pid namespace is target's.
func (f *fixture) createTargeting(id, name, target string, args ...string) error {
	f.t.Helper()
	var spec specs.Spec
	if err := json.Unmarshal(f.spec(args...), &spec); err != nil {
		f.t.Fatal(err)
	}
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			spec.Linux.Namespaces[i].Path = shim.TargetPIDNamespace(target)
		}
	}
	data, err := json.Marshal(&spec)
	if err != nil {
		f.t.Fatal(err)
	}
	_, _, err = f.s.Create(context.Background(), &CreateRequest{
		ID: id, Name: name, Spec: data, Layers: []string{f.layer}, LogPath: filepath.Join(f.logDir, id+".log"),
	})
	return err
}

// pidNS is the pid namespace of container id's current process.
func (f *fixture) pidNS(id string) string {
	f.t.Helper()
	r, err := f.s.Get(id)
	if err != nil {
		f.t.Fatal(err)
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", r.Pid))
	if err != nil {
		f.t.Fatal(err)
	}
	return ns
}

// A debug container joins the pid namespace of its target as the target
// runs at the moment; a reset terminates it, and restarts only the target,
// whose next debug container joins its new namespace. An ephemeral
// container is never pre-created.
func TestTargetPIDNamespace(t *testing.T) {
	f := newFixture(t, nil)
	f.create("m", "main", "sleep", "1001")
	f.start("m")
	if err := f.createTargeting("d1", "debug1", "m", "sleep", "1002"); err != nil {
		t.Fatal(err)
	}
	f.start("d1")
	if got, want := f.pidNS("d1"), f.pidNS("m"); got != want {
		t.Fatalf("debug container in pid namespace %s, its target in %s", got, want)
	}
	out, _, _, err := f.s.ExecSync(context.Background(), "d1", []string{"cat", "/proc/1/cmdline"}, 0)
	if err != nil || string(out) != "sleep\x001001\x00" {
		t.Fatalf("pid 1 seen from the debug container: %q, %v; want the target's sleep 1001", out, err)
	}
	f.waitWarm("m")
	if r, _ := f.s.Get("d1"); r.Warm {
		t.Error("the ephemeral container has a pre-created next generation")
	}

	recs, _, err := f.s.Reset(context.Background())
	if err != nil {
		t.Fatalf("reset: %v", err)
	}
	for _, r := range recs {
		switch r.ID {
		case "m":
			if r.State != shim.StateRunning || r.RestartCount != 1 {
				t.Errorf("target after the reset: %v restarts %d, want running again", r.State, r.RestartCount)
			}
		case "d1":
			if r.RestartCount != 0 {
				t.Errorf("the reset restarted the debug container (%v, restarts %d)", r.State, r.RestartCount)
			}
		}
	}
	if r := f.waitExited("d1"); r.RestartCount != 0 || r.ExitCode != 137 {
		t.Errorf("debug container after the reset: exit %d restarts %d, want killed (137), not restarted", r.ExitCode, r.RestartCount)
	}

	if err := f.createTargeting("d2", "debug2", "m", "sleep", "1003"); err != nil {
		t.Fatal(err)
	}
	f.start("d2")
	if got, want := f.pidNS("d2"), f.pidNS("m"); got != want {
		t.Errorf("debug container after the reset in pid namespace %s, its target's new one is %s", got, want)
	}

	if _, err := f.s.Stop(context.Background(), "m", 0); err != nil {
		t.Fatal(err)
	}
	err = f.createTargeting("d3", "debug3", "m", "sleep", "1004")
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), `target container "m"`) {
		t.Errorf("create targeting an exited container = %v, want FailedPrecondition naming it", err)
	}
	err = f.createTargeting("d4", "debug4", "nope", "sleep", "1005")
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "is gone") {
		t.Errorf("create targeting no container = %v, want FailedPrecondition", err)
	}
}
