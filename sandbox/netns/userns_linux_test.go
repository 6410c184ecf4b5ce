package netns

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// ioctl(2) requests on nsfs files (linux/nsfs.h); x/sys/unix lacks them.
const (
	nsGetUserNS   = 0xb701 // _IO(0xb7, 0x1)
	nsGetOwnerUID = 0xb704 // _IO(0xb7, 0x4)
)

var podMapping = &UserNS{
	UIDs: []IDMap{{ContainerID: 0, HostID: 1000, Size: 100000}},
	GIDs: []IDMap{{ContainerID: 0, HostID: 2000, Size: 65536}},
}

// ownerInode returns the inode of the user namespace owning the namespace
// pinned at path.
func ownerInode(t *testing.T, path string) uint64 {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	owner, err := unix.IoctlRetInt(fd, nsGetUserNS)
	if err != nil {
		t.Fatalf("NS_GET_USERNS on %s: %v", path, err)
	}
	defer unix.Close(owner)
	var st unix.Stat_t
	if err := unix.Fstat(owner, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestCreateUserNS(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"all", Options{Net: true, IPC: true, UTS: true, Hostname: "userns-pod", User: podMapping}},
		{"host network and ipc", Options{User: podMapping}},
		{"ipc only", Options{IPC: true, User: podMapping}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := nsDir(t)
			p, err := Create(dir, tc.opts)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if p.User != filepath.Join(dir, userFile) {
				t.Fatalf("user path = %q", p.User)
			}
			user := nsInode(t, p.User)
			if user == nsInode(t, "/proc/self/ns/user") {
				t.Fatal("pinned user namespace is the host's")
			}
			for _, ns := range []string{p.Net, p.IPC, p.UTS} {
				if ns != "" && ownerInode(t, ns) != user {
					t.Errorf("%s is not owned by the pod's user namespace", ns)
				}
			}
			fd, err := unix.Open(p.User, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			var owner uint32
			_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), nsGetOwnerUID, uintptr(unsafe.Pointer(&owner)))
			unix.Close(fd)
			if errno != 0 || owner != 0 {
				t.Errorf("user namespace owner = %d (%v), want root", owner, errno)
			}
			if p.Net != "" {
				checkLoopbackUp(t, p.Net)
			}
			if tc.opts.Hostname != "" {
				checkHostname(t, p.UTS, tc.opts.Hostname)
			}
			checkMapping(t, p.User, "uid_map", "0 1000 100000")
			checkMapping(t, p.User, "gid_map", "0 2000 65536")

			checkRemoved(t, dir)
		})
	}
}

// checkMapping reads file (uid_map, gid_map) from inside the user namespace
// pinned at path. A Go process cannot join a user namespace, so nsenter(1)
// does.
func checkMapping(t *testing.T, path, file, want string) {
	t.Helper()
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Logf("not checking %s: nsenter is not installed", file)
		return
	}
	out, err := exec.Command(nsenter, "--user="+path, "--", "cat", "/proc/self/"+file).CombinedOutput()
	if err != nil {
		t.Fatalf("read %s in the pod's user namespace: %v: %s", file, err, out)
	}
	if got := strings.Join(strings.Fields(string(out)), " "); got != want {
		t.Errorf("%s = %q, want %q", file, got, want)
	}
}

// A mapping the kernel refuses leaves nothing behind.
func TestCreateUserNSRollsBack(t *testing.T) {
	requireRoot(t)
	dir := nsDir(t)
	overlapping := &UserNS{
		UIDs: []IDMap{{ContainerID: 0, HostID: 1000, Size: 100}, {ContainerID: 50, HostID: 5000, Size: 100}},
		GIDs: []IDMap{{ContainerID: 0, HostID: 1000, Size: 100}},
	}
	_, err := Create(dir, Options{Net: true, IPC: true, UTS: true, Hostname: "x", User: overlapping})
	if err == nil {
		t.Fatal("Create with overlapping uid ranges succeeded")
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dir left after a failed Create: %v", err)
	}
	if mounted, _ := mountinfo.Mounted(dir); mounted {
		t.Errorf("dir left as a mount point after a failed Create")
	}
}

func TestValidateUserNS(t *testing.T) {
	ok := []IDMap{{ContainerID: 0, HostID: 1000, Size: 10}}
	for _, tc := range []struct {
		name string
		user *UserNS
	}{
		{"no uid mappings", &UserNS{GIDs: ok}},
		{"no gid mappings", &UserNS{UIDs: ok}},
		{"zero length", &UserNS{UIDs: []IDMap{{HostID: 1000}}, GIDs: ok}},
		{"past the largest id", &UserNS{UIDs: ok, GIDs: []IDMap{{HostID: 1 << 31, Size: 1 << 31}}}},
		{"too many ranges", &UserNS{UIDs: make([]IDMap, maxIDMapLines+1), GIDs: ok}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Create("/run/ns", Options{Net: true, User: tc.user})
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("Create = %v, want ErrInvalidOptions", err)
			}
		})
	}
}

func TestRootIDs(t *testing.T) {
	u := &UserNS{
		UIDs: []IDMap{{ContainerID: 1, HostID: 500, Size: 10}, {ContainerID: 0, HostID: 100000, Size: 1}},
		GIDs: []IDMap{{ContainerID: 5, HostID: 500, Size: 10}},
	}
	if uid, ok := u.RootUID(); !ok || uid != 100000 {
		t.Errorf("RootUID = %d, %v; want 100000", uid, ok)
	}
	if _, ok := u.RootGID(); ok {
		t.Errorf("RootGID found root in a mapping without it")
	}
}

func BenchmarkCreateRemoveUserNS(b *testing.B) {
	requireRoot(b)
	dir := filepath.Join(b.TempDir(), "ns")
	opts := Options{Net: true, IPC: true, UTS: true, Hostname: "bench", User: podMapping}
	for b.Loop() {
		if _, err := Create(dir, opts); err != nil {
			b.Fatal(err)
		}
		if err := Remove(dir); err != nil {
			b.Fatal(err)
		}
	}
}
