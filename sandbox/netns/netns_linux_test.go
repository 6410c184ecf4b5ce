package netns

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/moby/sys/mountinfo"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/internal/testutil"
)

const nsfsMagic = 0x6e736673

func requireRoot(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t, "it creates namespaces and mounts")
}

// nsDir returns a fresh namespace dir whose contents are removed when the
// test ends, before the temp dir itself.
func nsDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ns")
	t.Cleanup(func() {
		if err := Remove(dir); err != nil {
			t.Errorf("cleanup Remove: %v", err)
		}
	})
	return dir
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

func TestValidate(t *testing.T) {
	long := string(make([]byte, 65))
	for _, tc := range []struct {
		name string
		dir  string
		opts Options
	}{
		{"relative dir", "ns", Options{Net: true}},
		{"unclean dir", "/run/x/../ns", Options{Net: true}},
		{"empty dir", "", Options{Net: true}},
		{"hostname without uts", "/run/ns", Options{Net: true, Hostname: "a"}},
		{"hostname too long", "/run/ns", Options{UTS: true, Hostname: long}},
		{"hostname with slash", "/run/ns", Options{UTS: true, Hostname: "a/b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Create(tc.dir, tc.opts)
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("Create = %v, want ErrInvalidOptions", err)
			}
		})
	}
}

func TestCreateNothingRequested(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ns")
	p, err := Create(dir, Options{})
	if err != nil || p != (Paths{}) {
		t.Fatalf("Create = %+v, %v; want empty paths", p, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("dir created for no namespaces: %v", err)
	}
}

func TestCreateRemove(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"all", Options{Net: true, IPC: true, UTS: true, Hostname: "pod-a"}},
		{"net only", Options{Net: true}},
		{"ipc and uts", Options{IPC: true, UTS: true, Hostname: "pod-b"}},
		{"uts without hostname", Options{UTS: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := nsDir(t)
			p, err := Create(dir, tc.opts)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			checks := []struct {
				want bool
				path string
				file string
				host string
			}{
				{tc.opts.Net, p.Net, netFile, "/proc/self/ns/net"},
				{tc.opts.IPC, p.IPC, ipcFile, "/proc/self/ns/ipc"},
				{tc.opts.UTS, p.UTS, utsFile, "/proc/self/ns/uts"},
			}
			for _, c := range checks {
				if !c.want {
					if c.path != "" {
						t.Errorf("%s path = %q, want host (empty)", c.file, c.path)
					}
					continue
				}
				if c.path != filepath.Join(dir, c.file) {
					t.Fatalf("%s path = %q", c.file, c.path)
				}
				var sfs unix.Statfs_t
				if err := unix.Statfs(c.path, &sfs); err != nil || sfs.Type != nsfsMagic {
					t.Errorf("%s is not an nsfs mount (type %#x, err %v)", c.path, sfs.Type, err)
				}
				if nsInode(t, c.path) == nsInode(t, c.host) {
					t.Errorf("%s is the host's namespace", c.path)
				}
			}
			if mounted, err := mountinfo.Mounted(dir); err != nil || !mounted {
				t.Errorf("dir is not a mount point of its own (mounted %v, err %v)", mounted, err)
			}
			if tc.opts.Net {
				checkLoopbackUp(t, p.Net)
			}
			if tc.opts.Hostname != "" {
				checkHostname(t, p.UTS, tc.opts.Hostname)
			}

			checkRemoved(t, dir)
			if err := Remove(dir); err != nil {
				t.Fatalf("second Remove: %v", err)
			}
		})
	}
}

// checkHostname checks that the UTS namespace pinned at path has the
// hostname want.
func checkHostname(t *testing.T, path, want string) {
	t.Helper()
	var got string
	err := Do(path, func() error {
		var e error
		got, e = os.Hostname()
		return e
	})
	if err != nil || got != want {
		t.Errorf("hostname in pod = %q, %v; want %q", got, err, want)
	}
}

// checkRemoved removes the namespaces under dir and checks that dir is gone.
func checkRemoved(t *testing.T, dir string) {
	t.Helper()
	if err := Remove(dir); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("dir still there after Remove: %v", err)
	}
}

func checkLoopbackUp(t *testing.T, path string) {
	t.Helper()
	ns, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if lo.Attrs().Flags&unix.IFF_UP == 0 {
		t.Errorf("lo is down in the new network namespace")
	}
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 {
		t.Errorf("new network namespace has %d links, want only lo", len(links))
	}
}

// A failure half-way must leave only what was there before.
func TestCreateRollsBack(t *testing.T) {
	requireRoot(t)
	dir := nsDir(t)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(dir, utsFile)
	if err := os.WriteFile(stray, []byte("not ours"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Create(dir, Options{Net: true, IPC: true, UTS: true})
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create = %v, want an fs.ErrExist error", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != utsFile {
		t.Errorf("dir holds %v after a failed Create, want only the stray file", entries)
	}
	if b, _ := os.ReadFile(stray); string(b) != "not ours" {
		t.Errorf("stray file changed to %q", b)
	}
	if mounted, _ := mountinfo.Mounted(dir); mounted {
		t.Errorf("dir left as a mount point after a failed Create")
	}
	if err := os.Remove(stray); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveHalfCreated(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{
		{"missing dir", func(t *testing.T, dir string) {}},
		{"empty dir", func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"unmounted files in private dir", func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if _, err := makePrivate(dir); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{netFile, ipcFile} {
				if err := os.WriteFile(filepath.Join(dir, f), nil, 0o444); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"pinned twice", func(t *testing.T, dir string) {
			p, err := Create(dir, Options{Net: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount("/proc/self/ns/net", p.Net, "", unix.MS_BIND, ""); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := nsDir(t)
			tc.setup(t, dir)
			if err := Remove(dir); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("dir still there: %v", err)
			}
		})
	}
}

// After Create returns, no thread of this process may be left in a pod
// namespace: the pinning thread must have exited. Its exit follows the
// goroutine's, so wait for it to show.
func TestNoThreadLeftInPodNamespace(t *testing.T) {
	requireRoot(t)
	dir := nsDir(t)
	p, err := Create(dir, Options{Net: true, IPC: true, UTS: true, Hostname: "leak"})
	if err != nil {
		t.Fatal(err)
	}
	pod := nsInode(t, p.Net)
	for range 5000 {
		if !anyThreadIn(t, pod) {
			return
		}
		runtime.Gosched()
		_ = unix.Nanosleep(&unix.Timespec{Nsec: 1e6}, nil)
	}
	t.Fatal("a thread of the test process is still in the pod's network namespace")
}

func anyThreadIn(t *testing.T, ino uint64) bool {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/proc/self/task", task.Name(), "ns/net"), &st) == nil && st.Ino == ino {
			return true
		}
	}
	return false
}

func TestDo(t *testing.T) {
	requireRoot(t)
	p, err := Create(nsDir(t), Options{Net: true, UTS: true, Hostname: "inside"})
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := Do(p.UTS, func() error {
		var err error
		got, err = os.Hostname()
		return err
	}); err != nil || got != "inside" {
		t.Fatalf("hostname inside = %q, %v", got, err)
	}
	var links int
	if err := Do(p.Net, func() error {
		ls, err := netlink.LinkList()
		links = len(ls)
		return err
	}); err != nil || links != 1 {
		t.Fatalf("links inside = %d, %v; want only lo", links, err)
	}
	if err := Do("/nonexistent", func() error { return nil }); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Do on a missing path = %v", err)
	}
	want := errors.New("from fn")
	if err := Do(p.Net, func() error { return want }); err != want { //nolint:errorlint // fn's error itself, not wrapped
		t.Fatalf("Do did not return fn's error: %v", err)
	}
}

// However often namespaces are made, the main thread (which /proc/self/ns
// follows and Go never ends) stays in the host's namespaces.
func TestMainThreadNeverTainted(t *testing.T) {
	requireRoot(t)
	host := nsInode(t, "/proc/self/ns/net")
	base := t.TempDir()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			dir := filepath.Join(base, strconv.Itoa(i))
			if _, err := Create(dir, Options{Net: true, UTS: true}); err != nil {
				t.Error(err)
				return
			}
			if err := Remove(dir); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := nsInode(t, "/proc/self/ns/net"); got != host {
		t.Fatal("the main thread was left in a pod's network namespace")
	}
}

func BenchmarkCreateRemove(b *testing.B) {
	requireRoot(b)
	base := b.TempDir()
	opts := Options{Net: true, IPC: true, UTS: true, Hostname: "bench"}
	for i := 0; b.Loop(); i++ {
		dir := filepath.Join(base, "ns")
		if _, err := Create(dir, opts); err != nil {
			b.Fatal(err)
		}
		if err := Remove(dir); err != nil {
			b.Fatal(err)
		}
	}
}
