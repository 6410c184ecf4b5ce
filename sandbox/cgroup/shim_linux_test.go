package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3"
)

// TestPlaceShimOnHost moves a process into the shim cgroup of a pod cgroup
// under the cgroupfs driver: in every hierarchy (on a hybrid host the
// unified one systemd tracks units in too), and gone with the pod cgroup.
func TestPlaceShimOnHost(t *testing.T) {
	requireRoot(t)
	parent := uniqueParent(t)
	t.Cleanup(func() {
		if err := Delete(parent); err != nil {
			t.Errorf("cleanup parent: %v", err)
		}
	})
	pod, err := Create(parent, "pod", nil)
	if err != nil {
		t.Fatal(err)
	}
	w := startWorker(t)
	pid := w.cmd.Process.Pid
	got, err := PlaceShim(pod, "pod", pid)
	if err != nil {
		t.Fatal(err)
	}
	if want := pod + "/" + ShimCgroup; got != want {
		t.Fatalf("PlaceShim = %q, want %q", got, want)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && cgroups.Mode() == cgroups.Hybrid {
			if _, err := os.Stat("/sys/fs/cgroup/unified"); err != nil {
				continue
			}
		}
		if parts[2] != got {
			t.Errorf("in hierarchy %s:%s the shim is in %s, want %s", parts[0], parts[1], parts[2], got)
		}
	}
	if pids, err := Procs(pod); err != nil || !reflect.DeepEqual(pids, []int{pid}) {
		t.Errorf("pod cgroup processes %v, %v; want the shim's", pids, err)
	}
	if err := Delete(pod); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("Delete with the shim running = %v, want ErrNotEmpty", err)
	}
	w.stop()
	if err := Delete(pod); err != nil {
		t.Fatalf("Delete once the shim is gone: %v", err)
	}
	for _, h := range []string{"memory", "pids", "systemd", "unified", ""} {
		dir := filepath.Join("/sys/fs/cgroup", h, pod)
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s left after Delete", dir)
		}
	}
	if _, err := PlaceShim(pod, "pod", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("PlaceShim of pid 0 = %v, want ErrInvalid", err)
	}
}

func TestPlaceShimSystemdOnFakeTree(t *testing.T) {
	requireRootForFakeTree(t)
	m := fakeV2(t)
	u := newFakeUnits(m.mountpoint)
	s := sliceDriver{u: u, m: m, v2: true}
	got, err := s.placeShim("kubepods-burstable-pod1-abc.slice", "/kubepods.slice/x", "abc", 42)
	if err != nil || got != "warmpod-shim-abc.scope" {
		t.Fatalf("placeShim = %q, %v", got, err)
	}
	if want := []string{"scope warmpod-shim-abc.scope in kubepods-burstable-pod1-abc.slice"}; !reflect.DeepEqual(u.calls, want) {
		t.Errorf("calls %v, want %v", u.calls, want)
	}
}
