package service

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/warmpod/warmpod/runtime/shim"
)

// A container being created has neither log nor generation yet. Nothing may
// start a generation for it meanwhile: bound without a log, its first
// output would crash the shim (a ghost generation), and one that Create
// then replaces would run on with nobody to stop it. Each test holds the
// create in the middle of its generation's creation.

// holdCreate starts Create of container id (name side) and returns once it
// is held making its generation; created receives its result.
func (f *fixture) holdCreate(id string) (created <-chan error, release func()) {
	f.t.Helper()
	var first atomic.Bool
	entered, release := f.holdNewGen(func(name string, idle bool) bool {
		return name == "side" && !idle && first.CompareAndSwap(false, true)
	})
	ch := make(chan error, 1)
	go func() {
		_, _, err := f.s.Create(context.Background(), &CreateRequest{
			ID: id, Name: "side", Spec: f.spec("sh", "-c", "echo side-started; exec sleep 1000"), Layers: []string{f.layer},
			LogPath: filepath.Join(f.logDir, id+".log"),
		})
		ch <- err
	}()
	<-entered
	return ch, release
}

func TestResetDuringCreate(t *testing.T) {
	f := newFixture(t, nil)
	f.create("m1", "main", "sleep", "1000")
	f.start("m1")
	created, release := f.holdCreate("s1")
	recs, _, err := f.s.Reset(context.Background())
	if err != nil {
		t.Fatalf("reset: %v", err)
	}
	for _, r := range recs {
		if r.ID == "s1" {
			t.Errorf("the reset restarted a container still being created: %+v", r)
		}
	}
	release()
	if err := <-created; err != nil {
		t.Fatalf("create: %v", err)
	}
	if rec := f.start("s1"); rec.RestartCount != 0 {
		t.Errorf("s1 started with restart count %d", rec.RestartCount)
	}
	f.waitFor("s1's output in its log", func() bool {
		data, _ := os.ReadFile(filepath.Join(f.logDir, "s1.log"))
		return strings.Contains(string(data), "side-started")
	})
	// Created now, the next reset restarts it.
	recs, _, err = f.s.Reset(context.Background())
	if err != nil {
		t.Fatalf("second reset: %v", err)
	}
	for _, r := range recs {
		if r.ID == "s1" && (r.State != shim.StateRunning || r.RestartCount != 1) {
			t.Errorf("s1 after the second reset: %v restarts %d", r.State, r.RestartCount)
		}
	}
}

func TestRemoveDuringCreate(t *testing.T) {
	f := newFixture(t, nil)
	created, release := f.holdCreate("s1")
	if err := f.s.Remove(context.Background(), "s1"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	release()
	if err := <-created; !errdefs.IsNotFound(err) {
		t.Errorf("create of a container removed meanwhile = %v, want NotFound", err)
	}
	if _, err := f.s.Get("s1"); err == nil {
		t.Error("the removed container is listed")
	}
	// Its generation was released, not left to Shutdown: nothing of it
	// runs (not even blocked before its execve).
	f.waitFor("the generation to go", func() bool { return len(f.podProcesses()) == 0 })
}
