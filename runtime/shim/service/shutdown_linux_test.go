package service

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/warmpod/warmpod/runtime/shim"
)

// Shutdown fences the operations that start generations. Each test holds
// one such operation in the middle of a generation's creation, shuts the
// shim down meanwhile, then lets the creation finish: Shutdown must wait
// for it, and nothing may be left running once it returns (the fixture's
// cleanup checks the pod cgroup after every test).

// shutDownWhileHeld starts Shutdown, waits until it has begun, lets the
// held creations go and waits for Shutdown to return.
func (f *fixture) shutDownWhileHeld(release func()) {
	f.t.Helper()
	done := make(chan error, 1)
	go func() { done <- f.s.Shutdown(context.Background()) }()
	f.waitFor("Shutdown to begin", func() bool {
		f.s.mu.Lock()
		defer f.s.mu.Unlock()
		return f.s.closed
	})
	release()
	if err := <-done; err != nil {
		f.t.Fatalf("Shutdown: %v", err)
	}
	if left := f.podProcesses(); len(left) > 0 {
		f.t.Errorf("Shutdown returned with processes left in the pod cgroup: %v", left)
	}
}

func TestShutdownFencesCreate(t *testing.T) {
	f := newFixture(t, nil)
	entered, release := f.holdNewGen(func(_ string, idle bool) bool { return !idle })
	created := make(chan error, 1)
	go func() {
		_, _, err := f.s.Create(context.Background(), &CreateRequest{
			ID: "c1", Name: "main", Spec: f.spec("sleep", "1000"), Layers: []string{f.layer},
			LogPath: filepath.Join(f.logDir, "c1.log"),
		})
		created <- err
	}()
	<-entered
	f.shutDownWhileHeld(release)
	if err := <-created; !errdefs.IsFailedPrecondition(err) {
		t.Errorf("create during Shutdown = %v, want FailedPrecondition", err)
	}
}

func TestShutdownFencesReset(t *testing.T) {
	for _, tc := range []struct {
		name string
		// cancel ends the reset's own context before Shutdown begins, as
		// the daemon's does when its caller gives up.
		cancel bool
	}{
		{"reset", false},
		{"reset whose context ended", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			var armed atomic.Bool
			entered, release := f.holdNewGen(func(string, bool) bool { return armed.Load() })
			f.create("s1", "sidecar", "sleep", "1000")
			f.start("s1")
			f.create("m1", "main", "sleep", "1000")
			f.start("m1")
			armed.Store(true)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			reset := make(chan error, 1)
			go func() {
				_, _, err := f.s.Reset(ctx)
				reset <- err
			}()
			// A pre-creation or the reset's own creation; either holds the
			// reset up.
			<-entered
			f.waitFor("the reset to kill", func() bool { return f.s.Info().Resets == 1 })
			if tc.cancel {
				cancel()
			}
			f.shutDownWhileHeld(release)
			if err := <-reset; !errdefs.IsFailedPrecondition(err) {
				t.Errorf("reset during Shutdown = %v, want FailedPrecondition", err)
			}
		})
	}
}

func TestShutdownFencesRuleRestart(t *testing.T) {
	f := newFixture(t, func(c *shim.Config) {
		c.RestartRules = map[string][]shim.RestartRule{
			"main": {{Action: shim.ActionRestart, ExitCodes: &shim.ExitCodes{Operator: "In", Values: []int32{3}}}},
		}
	})
	var armed atomic.Bool
	entered, release := f.holdNewGen(func(string, bool) bool { return armed.Load() })
	f.create("m", "main", "sh", "-c", "exit 3")
	armed.Store(true)
	f.start("m")
	<-entered
	f.waitExited("m")
	f.waitFor("the restart by the rule", func() bool {
		f.s.mu.Lock()
		defer f.s.mu.Unlock()
		return f.s.foreground > 0
	})
	f.shutDownWhileHeld(release)
	if r, _ := f.s.Get("m"); r.State != shim.StateExited || r.ExitCode != 3 || r.RestartCount != 0 {
		t.Errorf("after Shutdown: %v exit %d restarts %d, want the exit 3 unrestarted", r.State, r.ExitCode, r.RestartCount)
	}
}

func TestShutdownFencesPrecreation(t *testing.T) {
	f := newFixture(t, nil)
	entered, release := f.holdNewGen(func(_ string, idle bool) bool { return idle })
	f.create("m", "main", "sleep", "1000")
	f.start("m")
	<-entered
	f.shutDownWhileHeld(release)
}
