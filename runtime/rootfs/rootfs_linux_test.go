package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/internal/testutil"
)

func requireRoot(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t, "it mounts overlays")
}

// Host ids of root in the test's user namespace.
const (
	rootUID = 100000
	rootGID = 200000
)

// testUserNS returns the path of a user namespace mapping 0-65535 to
// rootUID/rootGID on, held by a stopped child until the test ends.
func testUserNS(t testing.TB) string {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: rootUID, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: rootGID, Size: 65536}},
		// Stopped at its execve, it never runs.
		Ptrace: true,
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot create a user namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid)
}

// reachableDir returns a temp dir that root of a user namespace may search
// (t.TempDir and its parent are mode 0700): the kernel resolves the path of
// a container's rootfs with the container's credentials.
func reachableDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newLayer makes an image layer of host root's files: /etc/conf and a
// private /root.
func newLayer(t *testing.T) string {
	t.Helper()
	l := filepath.Join(t.TempDir(), "layer")
	for _, d := range []string{"etc", "root"} {
		if err := os.MkdirAll(filepath.Join(l, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(l, "root"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l, "etc", "conf"), []byte("image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return l
}

func owner(t *testing.T, path string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	return out
}

func TestMount(t *testing.T) {
	requireRoot(t)
	layer := newLayer(t)
	dir := filepath.Join(t.TempDir(), "gen")
	r, err := Mount([]string{layer}, dir, nil)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	if got := owner(t, filepath.Join(r.Merged, "etc", "conf")); got != "0:0" {
		t.Errorf("owner of /etc/conf = %s, want 0:0", got)
	}
	if err := os.WriteFile(filepath.Join(r.Merged, "new"), nil, 0o644); err != nil {
		t.Fatalf("write to rootfs: %v", err)
	}
	if err := r.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dir left after Remove: %v", err)
	}
}

func TestMountView(t *testing.T) {
	requireRoot(t)
	bottom := newLayer(t)
	top := t.TempDir()
	if err := os.MkdirAll(filepath.Join(top, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(top, "etc", "conf"), []byte("top\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		layers []string
		want   string
	}{
		{"one layer", []string{bottom}, "image\n"},
		{"two layers", []string{bottom, top}, "top\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := t.TempDir()
			if err := MountView(tc.layers, target); err != nil {
				t.Fatalf("MountView: %v", err)
			}
			t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
			got, err := os.ReadFile(filepath.Join(target, "etc", "conf"))
			if err != nil || string(got) != tc.want {
				t.Errorf("etc/conf = %q, %v; want %q", got, err, tc.want)
			}
			if err := os.WriteFile(filepath.Join(target, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
				t.Errorf("write into the view: %v, want EROFS", err)
			}
			if err := unix.Unmount(target, 0); err != nil {
				t.Errorf("unmount view: %v", err)
			}
			if ents, _ := os.ReadDir(tc.layers[0]); len(ents) != 2 {
				t.Errorf("bottom layer changed: %d entries", len(ents))
			}
		})
	}
}

func TestMountUserNS(t *testing.T) {
	requireRoot(t)
	userns := testUserNS(t)
	layer := newLayer(t)
	dir := filepath.Join(reachableDir(t), "gen")
	r, err := Mount([]string{layer}, dir, &UserNS{Path: userns, UID: rootUID, GID: rootGID})
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() { _ = r.Remove() })
	want := fmt.Sprintf("%d:%d", rootUID, rootGID)
	for _, p := range []string{r.Merged, filepath.Join(r.Merged, "etc", "conf"), filepath.Join(r.Merged, "root")} {
		if got := owner(t, p); got != want {
			t.Errorf("owner of %s = %s, want the user namespace's root %s", p, got, want)
		}
	}
	if got := owner(t, filepath.Join(layer, "etc", "conf")); got != "0:0" {
		t.Errorf("the layer itself changed owner to %s", got)
	}
	if ms := mountsUnder(t, dir); len(ms) != 1 || ms[0] != r.Merged {
		t.Errorf("mounts under the rootfs dir = %v, want only the overlay", ms)
	}
	if _, err := os.Stat(filepath.Join(dir, mappedDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("id-mapped layer views left: %v", err)
	}

	// Root of the user namespace writes a new file, changes an image file
	// (copy-up) and enters the private /root.
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Log("not writing as the user namespace's root: nsenter is not installed")
	} else {
		script := fmt.Sprintf("echo new > %[1]s/new && echo more >> %[1]s/etc/conf && mkdir %[1]s/root/x && chown 7:7 %[1]s/root/x", r.Merged)
		if out, err := exec.Command(nsenter, "--user="+userns, "--", "sh", "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("write as the user namespace's root: %v: %s", err, out)
		}
		for p, want := range map[string]string{
			"new":      want,
			"etc/conf": want,
			"root/x":   fmt.Sprintf("%d:%d", rootUID+7, rootGID+7),
		} {
			if got := owner(t, filepath.Join(r.Upper, p)); got != want {
				t.Errorf("owner of %s in the upper dir = %s, want %s", p, got, want)
			}
		}
		if data, _ := os.ReadFile(filepath.Join(layer, "etc", "conf")); string(data) != "image\n" {
			t.Errorf("the write reached the image layer: %q", data)
		}
	}

	if err := r.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dir left after Remove: %v", err)
	}
}

// A failure after some layer views are attached detaches them and deletes
// nothing through them.
func TestMountUserNSRollsBack(t *testing.T) {
	requireRoot(t)
	userns := testUserNS(t)
	layer := newLayer(t)
	for _, tc := range []struct {
		name   string
		layers []string
		userns string
	}{
		{"missing second layer", []string{layer, filepath.Join(t.TempDir(), "missing")}, userns},
		{"not a user namespace", []string{layer}, "/proc/self/ns/net"},
		{"no namespace file", []string{layer}, filepath.Join(t.TempDir(), "none")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "gen")
			_, err := Mount(tc.layers, dir, &UserNS{Path: tc.userns, UID: rootUID, GID: rootGID})
			if err == nil {
				t.Fatal("Mount succeeded")
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("dir left after a failed Mount: %v", err)
			}
			if ms := mountsUnder(t, filepath.Dir(dir)); len(ms) != 0 {
				t.Errorf("mounts left: %v", ms)
			}
			if data, err := os.ReadFile(filepath.Join(layer, "etc", "conf")); err != nil || string(data) != "image\n" {
				t.Errorf("layer damaged: %q, %v", data, err)
			}
		})
	}
}

// Remove copes with a layer view a crash left attached: it detaches it
// rather than deleting the image layer through it.
func TestRemoveDetachesLeftoverViews(t *testing.T) {
	requireRoot(t)
	userns := testUserNS(t)
	layer := newLayer(t)
	r, err := Mount([]string{layer}, filepath.Join(t.TempDir(), "gen"), nil)
	if err != nil {
		t.Fatal(err)
	}
	nsfd, err := unix.Open(userns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(nsfd)
	view := filepath.Join(r.Dir, mappedDir, "0")
	if err := os.MkdirAll(view, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := attachMapped(layer, view, nsfd); err != nil {
		_ = r.Remove()
		t.Fatalf("attach view: %v", err)
	}
	if err := r.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(r.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dir left after Remove: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(layer, "etc", "conf")); err != nil || string(data) != "image\n" {
		t.Errorf("layer damaged: %q, %v", data, err)
	}
}

func TestCheckUserNS(t *testing.T) {
	requireRoot(t)
	userns := testUserNS(t)
	dir := t.TempDir()
	if err := CheckUserNS(dir, &UserNS{Path: userns, UID: rootUID, GID: rootGID}); err != nil {
		t.Fatalf("CheckUserNS: %v", err)
	}
	err := CheckUserNS(dir, &UserNS{Path: userns, UID: rootUID + 1, GID: rootGID})
	if err == nil || !strings.Contains(err.Error(), "owned by") {
		t.Errorf("CheckUserNS with the wrong root = %v, want an ownership error", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("CheckUserNS left %v", entries)
	}
}

func BenchmarkMountRemove(b *testing.B) {
	requireRoot(b)
	l := filepath.Join(b.TempDir(), "layer")
	if err := os.Mkdir(l, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, userns := range []bool{false, true} {
		b.Run(fmt.Sprintf("userns=%v", userns), func(b *testing.B) {
			var u *UserNS
			if userns {
				u = &UserNS{Path: testUserNS(b), UID: rootUID, GID: rootGID}
			}
			dir := filepath.Join(b.TempDir(), "gen")
			for b.Loop() {
				r, err := Mount([]string{l}, dir, u)
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Remove(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
