package integration

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/integration/launch"
)

// TestFullDisk fills the daemon's root (images, metadata, writable
// layers), and then its state dir (shims' records, sockets, pod files), to
// the brim, each a small tmpfs of its own. The kubelet frees a full disk
// through image garbage collection, so on it a daemon must start, report
// the image filesystem and remove images; what fails for want of space
// fails clearly; and once space returns, no record of a pod or container is
// lost, across restarts of the daemon (SIGKILL, as a crash) and, for the
// shims' records, the death of a shim.
func TestFullDisk(t *testing.T) {
	t.Run("root", func(t *testing.T) { testFullDisk(t, true) })
	t.Run("state", func(t *testing.T) { testFullDisk(t, false) })
}

func testFullDisk(t *testing.T, root bool) {
	var fs string
	x := startExtraDaemonWith(t, "full-disk", func(cfg *launch.Config) {
		// Outside the daemon's own directories, which its leak check
		// compares and its cleanup removes.
		fs = "/run/wpx-full-" + randomHex(6)
		if err := os.Mkdir(fs, 0o711); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("tmpfs", fs, "tmpfs", 0, "size=64m,mode=0711"); err != nil {
			os.Remove(fs)
			t.Skipf("mount a tmpfs: %v", err)
		}
		t.Cleanup(func() {
			if err := syscall.Unmount(fs, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", fs, err)
			}
			os.Remove(fs)
		})
		if root {
			cfg.Root = filepath.Join(fs, "root")
		} else {
			cfg.State = filepath.Join(fs, "state")
		}
	})
	ctx := testCtx(t)
	for _, ref := range []string{images.busybox, images.noCmd} {
		if _, err := x.Image.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			t.Fatalf("PullImage %s: %v", ref, err)
		}
	}
	podCfg := newPodConfig("full-disk")
	podID := runPod(t, podCfg)
	main := runContainer(t, podID, podCfg, newContainerConfig("main", "sleep", "3600"))
	done := runContainer(t, podID, podCfg, newContainerConfig("done", "sh", "-c", "exit 3"))
	waitExited(t, done)
	want := map[string]string{main: "running", done: "exited 3"}

	unfill := fillFS(t, fs)
	if root {
		// A create may need room on the root (its metadata, at least):
		// then it fails clearly and leaves nothing behind.
		resp, err := x.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: podID, Config: newContainerConfig("on-full", "sleep", "3600"), SandboxConfig: podCfg,
		})
		switch {
		case err == nil:
			want[resp.ContainerId] = "created"
		case !strings.Contains(err.Error(), "no space left on device"):
			t.Errorf("CreateContainer on a full root: %v, want an error that says the disk is full", err)
		default:
			for id := range containerStates(t, podID) {
				if _, ok := want[id]; !ok {
					t.Errorf("the failed create left container %s", id)
				}
			}
		}
	} else {
		// The shim records the exit on the full state dir, or would.
		if _, err := x.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: main, Timeout: 0}); err != nil {
			t.Fatalf("StopContainer on a full state dir: %v", err)
		}
		waitExited(t, main)
		want[main] = "exited 137"
	}

	// A daemon that died meanwhile starts again on the full disk, and
	// serves what frees space.
	x.Kill()
	if err := x.Start(); err != nil {
		t.Fatalf("start the daemon on a full %s: %v", map[bool]string{true: "root", false: "state dir"}[root], err)
	}
	fsInfo, err := x.Image.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil || len(fsInfo.ImageFilesystems) == 0 {
		t.Errorf("ImageFsInfo on a full disk: %v, %v", fsInfo, err)
	}
	if _, err := x.Image.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: images.noCmd}}); err != nil {
		t.Errorf("RemoveImage on a full disk: %v", err)
	}
	if st, err := x.Image.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: images.noCmd}}); err != nil || st.Image != nil {
		t.Errorf("removed image still there: %v, %v", st.GetImage(), err)
	}
	checkStates(t, podID, want)

	// Space returns: everything works again, and nothing was lost.
	unfill()
	after := runContainer(t, podID, podCfg, newContainerConfig("after", "sleep", "3600"))
	want[after] = "running"
	x.Kill()
	if err := x.Start(); err != nil {
		t.Fatalf("start the daemon again: %v", err)
	}
	checkStates(t, podID, want)
	if root {
		return
	}
	// The shim's records, read once it is gone, hold what happened on the
	// full state dir.
	shimPid, _ := podVerboseInfo(t, podID)["pid"].(float64)
	if err := syscall.Kill(int(shimPid), syscall.SIGKILL); err != nil {
		t.Fatalf("kill shim %d: %v", int(shimPid), err)
	}
	waitExited(t, after)
	want[after] = "exited 255"
	checkStates(t, podID, want)
}

// fillFS writes a file in dir until its filesystem is full and returns the
// function that deletes it again (run at the end of the test if not
// before).
func fillFS(t *testing.T, dir string) func() {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(f, io.LimitReader(zeroReader{}, 1<<40))
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fill %s: %v, want ENOSPC", dir, err)
	}
	var once sync.Once
	unfill := func() {
		once.Do(func() {
			if err := os.Remove(path); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(unfill)
	return unfill
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// containerStates maps the pod's containers to "running", "created" or
// "exited N".
func containerStates(t testing.TB, podID string) map[string]string {
	t.Helper()
	resp, err := d.Runtime.ListContainers(testCtx(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
	if err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	out := map[string]string{}
	for _, c := range resp.Containers {
		switch c.State {
		case runtimeapi.ContainerState_CONTAINER_RUNNING:
			out[c.Id] = "running"
		case runtimeapi.ContainerState_CONTAINER_CREATED:
			out[c.Id] = "created"
		default:
			out[c.Id] = fmt.Sprintf("exited %d", containerStatus(t, c.Id).ExitCode)
		}
	}
	return out
}

func checkStates(t testing.TB, podID string, want map[string]string) {
	t.Helper()
	got := containerStates(t, podID)
	for id, w := range want {
		if got[id] != w {
			t.Errorf("container %s is %q, want %q", short(id), got[id], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("containers %v, want %v", got, want)
	}
}
