package integration

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/warmpod/warmpod/integration/testimages"
	"github.com/warmpod/warmpod/runtime/image"
)

// maxDaemonRSS is what the daemon's peak resident set may reach while it pulls and reads the hostile
// corpus.
const maxDaemonRSS = 256 << 20

// TestHostileImages pulls every image of the hostile corpus (testimages.HostileCorpus) through a registry
// of the test's own and, where the pull succeeds, creates a container of it (issue 12). Each is refused
// where the corpus says, with InvalidArgument naming the entry, file or blob, or succeeds harmlessly;
// nothing outside the image store changes; the store pulls a good image after each; no call blocks (each
// has a deadline); and the daemon's peak RSS stays below maxDaemonRSS.
func TestHostileImages(t *testing.T) {
	begin(t)
	canary := t.TempDir()
	if err := os.WriteFile(filepath.Join(canary, "keep"), []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	corpus := testimages.NewHostileCorpus()
	hreg, err := testimages.StartRegistry(testimages.WithHandler(corpus.Handler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hreg.Close() })
	cases, err := corpus.Push(hreg, testimages.HostileOptions{
		Canary: canary, LayerLimit: image.DefaultMaxLayerSize, ManifestLimit: image.DefaultMaxManifestSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	podCfg := newPodConfig("hostile")
	podID := runPod(t, podCfg)
	outside := outsideState(t, canary)
	resetPeakRSS(t)

	for _, h := range cases {
		t.Run(h.Name, func(t *testing.T) {
			t.Logf("%s: %s", h.Ref, h.Stage)
			used := imageFsUsed(t)
			_, err := d.Image.PullImage(deadline(t, 2*time.Minute), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: h.Ref}})
			switch {
			case h.Stage == testimages.AtPull:
				wantCode(t, err, codes.InvalidArgument, h.Mentions)
			case err != nil:
				t.Fatalf("PullImage: %v", err)
			default:
				hostileContainer(t, podID, podCfg, h)
				if grown := imageFsUsed(t) - used; grown > 32<<20 {
					t.Errorf("the image store grew by %d MiB", grown>>20)
				}
				if _, err := d.Image.RemoveImage(deadline(t, time.Minute), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: h.Ref}}); err != nil {
					t.Errorf("RemoveImage: %v", err)
				}
			}
			if now := outsideState(t, canary); now != outside {
				t.Errorf("outside the image store:\nbefore %s\nafter  %s", outside, now)
			}
			if left, _ := os.ReadDir(filepath.Join(d.Root, "images", "tmp")); len(left) != 0 {
				t.Errorf("the store's tmp/ holds %d entries", len(left))
			}
			goodPull(t, hreg, h.Name)
		})
	}
	peak := peakRSS(t)
	t.Logf("daemon peak RSS over the corpus of %d images: %d MiB", len(cases), peak>>20)
	if peak >= maxDaemonRSS {
		t.Errorf("daemon peak RSS %d MiB, want below %d MiB", peak>>20, maxDaemonRSS>>20)
	}
}

// hostileContainer creates a container of an image that pulled: refused where the corpus says, else
// created, run to its end and removed.
func hostileContainer(t *testing.T, podID string, podCfg *runtimeapi.PodSandboxConfig, h testimages.Hostile) {
	t.Helper()
	cfg := newContainerConfig("hostile-"+h.Name, "true")
	cfg.Image = &runtimeapi.ImageSpec{Image: h.Ref}
	resp, err := d.Runtime.CreateContainer(deadline(t, time.Minute), &runtimeapi.CreateContainerRequest{
		PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg,
	})
	if h.Stage == testimages.AtCreate {
		wantCode(t, err, codes.InvalidArgument, h.Mentions)
		return
	}
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := d.Runtime.StartContainer(deadline(t, time.Minute), &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	if st := waitExited(t, resp.ContainerId); st.ExitCode != 0 {
		t.Errorf("container exited %d: %s", st.ExitCode, st.Message)
	}
	if _, err := d.Runtime.RemoveContainer(deadline(t, time.Minute), &runtimeapi.RemoveContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Errorf("RemoveContainer: %v", err)
	}
}

// goodPull checks the store still works: a fresh image (a layer of its own to unpack) pulls, and is
// removed again.
func goodPull(t *testing.T, reg *testimages.Registry, name string) {
	t.Helper()
	img, err := testimages.Busybox(testimages.WithFile("/after", testimages.File{Content: []byte(name)}))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := reg.Push("good/"+name+":latest", img)
	if err != nil {
		t.Fatal(err)
	}
	spec := &runtimeapi.ImageSpec{Image: ref}
	if _, err := d.Image.PullImage(deadline(t, 2*time.Minute), &runtimeapi.PullImageRequest{Image: spec}); err != nil {
		t.Fatalf("a good pull after the hostile image: %v", err)
	}
	if _, err := d.Image.RemoveImage(deadline(t, time.Minute), &runtimeapi.RemoveImageRequest{Image: spec}); err != nil {
		t.Errorf("RemoveImage of the good image: %v", err)
	}
}

// deadline is a context for one call: a call that blocks fails the test instead of hanging it.
func deadline(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// outsideState describes what a hostile layer could try to change outside the image store: the canary
// directory the images aim at, the entries of the run's directory and of the daemon's root, /escaped, and
// the link count of /etc/shadow.
func outsideState(t *testing.T, canary string) string {
	t.Helper()
	var parts []string
	err := filepath.WalkDir(canary, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		parts = append(parts, fmt.Sprintf("%s %v %d", strings.TrimPrefix(p, canary), info.Mode(), info.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{d.base, d.Root} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		parts = append(parts, dir+": "+strings.Join(names, ","))
	}
	// Of /, only what the corpus aims at: other work on the machine may change the rest.
	if _, err := os.Lstat("/escaped"); err == nil {
		parts = append(parts, "/escaped exists")
	}
	var st syscall.Stat_t
	if syscall.Stat("/etc/shadow", &st) == nil {
		parts = append(parts, "/etc/shadow links "+strconv.FormatUint(uint64(st.Nlink), 10))
	}
	return strings.Join(parts, "; ")
}

// imageFsUsed is what the image store uses, as the kubelet sees it.
func imageFsUsed(t *testing.T) int64 {
	t.Helper()
	resp, err := d.Image.ImageFsInfo(deadline(t, time.Minute), &runtimeapi.ImageFsInfoRequest{})
	if err != nil || len(resp.ImageFilesystems) == 0 {
		t.Fatalf("ImageFsInfo: %v, %v", resp, err)
	}
	return int64(resp.ImageFilesystems[0].GetUsedBytes().GetValue())
}

// resetPeakRSS starts the daemon's peak resident set (VmHWM) afresh.
func resetPeakRSS(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", d.PID()), []byte("5"), 0); err != nil {
		t.Fatalf("reset the daemon's peak RSS: %v", err)
	}
}

// peakRSS reads the daemon's peak resident set (VmHWM) in bytes.
func peakRSS(t *testing.T) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.PID()))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in the daemon's status")
	return 0
}
