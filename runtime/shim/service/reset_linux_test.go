package service

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warmpod/warmpod/runtime/shim"
)

// createWithLayer creates container id from a layer of its own.
func (f *fixture) createWithLayer(id, name, layer string, args ...string) {
	f.t.Helper()
	if _, _, err := f.s.Create(context.Background(), &CreateRequest{
		ID: id, Name: name, Spec: f.spec(args...), Layers: []string{layer},
		LogPath: filepath.Join(f.logDir, id+".log"),
	}); err != nil {
		f.t.Fatalf("create %s: %v", id, err)
	}
}

// loseLayer makes a layer unusable for new generations: those mounted
// already keep it.
func loseLayer(t *testing.T, layer string) {
	t.Helper()
	if err := os.Rename(layer, layer+".gone"); err != nil {
		t.Fatal(err)
	}
}

// A sidecar that cannot be started again (its image layer is gone) is
// recorded as such, and the main containers after it are restarted all the
// same.
func TestResetContinuesPastFailedStart(t *testing.T) {
	// Made before the shim reaps this process's children.
	sideLayer := busyboxLayer(t)
	f := newFixture(t, nil)
	f.createWithLayer("s", "sidecar", sideLayer, "sleep", "1000")
	f.start("s")
	for _, id := range []string{"m1", "m2"} {
		f.create(id, id, "sleep", "1000")
		f.start(id)
	}
	for _, id := range []string{"s", "m1", "m2"} {
		f.waitWarm(id)
	}
	loseLayer(t, sideLayer)
	// The first resets take the generations made before (one per container
	// with libcontainer, up to the pipeline's depth with the fast spawner);
	// the sidecar's next ones cannot be made any more.
	resets := 0
	for {
		if _, _, err := f.s.Reset(context.Background()); err != nil {
			t.Fatalf("reset %d: %v", resets+1, err)
		}
		resets++
		f.waitWarm("m2")
		if r, _ := f.s.Get("s"); !r.Warm {
			break
		}
		if resets >= f.s.pipeline.depth {
			t.Fatal("the sidecar has a next generation without its layer")
		}
	}

	recs, _, err := f.s.Reset(context.Background())
	resets++
	if err == nil || !strings.Contains(err.Error(), `"sidecar"`) {
		t.Fatalf("reset %d = %v, want an error naming the sidecar", resets, err)
	}
	byID := map[string]shim.Record{}
	for _, r := range recs {
		byID[r.ID] = r
	}
	if r := byID["s"]; r.State != shim.StateExited || r.Reason != shim.ReasonStartError || r.ExitCode != shim.StartErrorExitCode ||
		r.RestartCount != uint32(resets) || r.Message == "" || r.LastTermination == nil || r.LastTermination.ExitCode != 137 {
		t.Errorf("sidecar after the reset: %+v, want exited with StartError, restart %d, its killed run last", r, resets)
	}
	for _, id := range []string{"m1", "m2"} {
		if r := byID[id]; r.State != shim.StateRunning || r.RestartCount != uint32(resets) {
			t.Errorf("%s after the reset: %v restarts %d, want running again (%d)", id, r.State, r.RestartCount, resets)
		}
	}
	// Recorded on disk as it was told.
	disk, err := shim.ReadRecords(f.s.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range disk {
		if r.ID == "s" && r.Reason != shim.ReasonStartError {
			t.Errorf("sidecar's record on disk: %+v", r)
		}
	}
}

// An init container that cannot be started again ends the reset of a pod
// that never restarts failed containers; the main container stays exited.
func TestResetInitFailsToStart(t *testing.T) {
	initLayer := busyboxLayer(t)
	f := newFixture(t, func(c *shim.Config) {
		c.RestartPolicy = "Never"
		c.InitContainers = []string{"init"}
	})
	f.createWithLayer("i", "init", initLayer, "true")
	f.start("i")
	f.waitExited("i")
	f.create("m", "main", "sleep", "1000")
	f.start("m")
	// Once no pre-creation is wanted or in flight, none can make a next
	// generation of init again; the one it may have made goes.
	loseLayer(t, initLayer)
	f.waitFor("pre-creation to settle", func() bool {
		f.s.mu.Lock()
		defer f.s.mu.Unlock()
		for _, sl := range f.s.order {
			if sl.preparing > 0 || sl.wanted {
				return false
			}
		}
		return true
	})
	f.s.mu.Lock()
	next := f.s.slots["init"].dropNext()
	f.s.mu.Unlock()
	for _, g := range next {
		f.s.discard(g)
	}
	_, _, err := f.s.Reset(context.Background())
	if err == nil || !strings.Contains(err.Error(), `init container "init" failed to start`) {
		t.Fatalf("reset = %v, want the init container's start failure", err)
	}
	if r, _ := f.s.Get("i"); r.Reason != shim.ReasonStartError {
		t.Errorf("init after the reset: %+v, want StartError", r)
	}
	if r, _ := f.s.Get("m"); r.State != shim.StateExited {
		t.Errorf("main after a failed init: %v, want it not started", r.State)
	}
}
