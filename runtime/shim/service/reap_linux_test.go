package service

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/warmpod/warmpod/runtime/shim"
)

// zombieChildren lists this process's children that have exited and not
// been waited for (in the tests the shim is the test process).
func zombieChildren() []string {
	var out []string
	for _, pid := range children() {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(stat)
		if i := strings.LastIndexByte(s, ')'); i > 0 && strings.HasPrefix(s[i+1:], " Z") {
			out = append(out, strings.TrimSpace(s[:i+1]))
		}
	}
	return out
}

// A process a container leaves behind becomes the shim's child (the shim is
// its pod's subreaper) when its parent dies, or the pause process's in a pod
// that shares its pid namespace. Once it exits, nothing of it may remain:
// the shim reaps what nobody else waits for, and takes no exit status from
// those that are waited for (the container's own, an exec's).
func TestOrphansAreReaped(t *testing.T) {
	for _, tc := range []struct {
		name      string
		sharedPID bool
	}{
		{"host pid namespace", false},
		{"shared pid namespace", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *shim.Config) { c.SharedPID = tc.sharedPID })
			var spec specs.Spec
			// A subshell starts a process and exits at once: its child is
			// orphaned, and exits a moment later. The container's own
			// process runs on, so its pid namespace (when it has one) stays.
			orphan := "(sh -c 'sleep 0.2; touch /vol/orphan-$0-done' %s &); exec sleep 1000"
			if err := json.Unmarshal(f.spec("sh", "-c", fmt.Sprintf(orphan, "init")), &spec); err != nil {
				t.Fatal(err)
			}
			spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
				return ns.Type == specs.PIDNamespace
			})
			if tc.sharedPID {
				spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: shim.PIDNamespacePath(f.s.cfg.StateDir)})
			}
			data, err := json.Marshal(&spec)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := f.s.Create(context.Background(), &CreateRequest{
				ID: "c1", Name: "main", Spec: data, Layers: []string{f.layer}, LogPath: filepath.Join(f.logDir, "c1.log"),
			}); err != nil {
				t.Fatal(err)
			}
			f.start("c1")
			// An exec leaves one too, and exits with a status of its own.
			out, _, code, err := f.s.ExecSync(context.Background(), "c1", []string{"sh", "-c", fmt.Sprintf(strings.TrimSuffix(orphan, "; exec sleep 1000"), "exec") + "; exit 7"}, 0)
			if err != nil || code != 7 {
				t.Fatalf("exec: %q exit %d, %v; want exit 7", out, code, err)
			}
			for _, who := range []string{"init", "exec"} {
				f.waitFor("the orphan of "+who+" to exit", func() bool {
					_, err := os.Stat(filepath.Join(f.vol, "orphan-"+who+"-done"))
					return err == nil
				})
			}
			var zombies []string
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				if zombies = zombieChildren(); len(zombies) == 0 {
					break
				}
			}
			if len(zombies) > 0 {
				t.Fatalf("zombies left: %v", zombies)
			}
			if r, _ := f.s.Get("c1"); r.State != shim.StateRunning {
				t.Fatalf("container is %v, want running", r.State)
			}
			if _, err := f.s.Stop(context.Background(), "c1", 0); err != nil {
				t.Fatal(err)
			}
			if r, _ := f.s.Get("c1"); r.ExitCode != 137 {
				t.Errorf("container exit code %d, want its own 137", r.ExitCode)
			}
		})
	}
}
