package oci

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/internal/testutil"
)

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"www-data:x:33:33:www-data:/var/www:/bin/false\n" +
		"app:x:1000:1000:app:/home/app:/bin/sh\n"
	testGroup = "root:x:0:\n" +
		"www-data:x:33:\n" +
		"app:x:1000:\n" +
		"staff:x:50:app,www-data\n" +
		"video:x:44:app\n"
)

func TestResolveUser(t *testing.T) {
	layer := writeLayer(t, map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup})
	img := func(user string) *Image { return &Image{User: user, Layers: []string{layer}} }
	tests := []struct {
		name    string
		sec     Security
		img     *Image
		want    specs.User
		wantErr string
	}{
		{name: "default root", img: img(""), want: specs.User{UID: 0, GID: 0}},
		{name: "image user by name", img: img("app"), want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{44, 50}}},
		{name: "image user by uid", img: img("33"), want: specs.User{UID: 33, GID: 33, AdditionalGids: []uint32{50}}},
		{name: "image uid unknown to passwd gets gid 0", img: img("4242"), want: specs.User{UID: 4242, GID: 0}},
		{name: "image uid:gid", img: img("4242:4343"), want: specs.User{UID: 4242, GID: 4343}},
		{
			name: "image name:group keeps memberships", img: img("app:staff"),
			want: specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{44, 50}},
		},
		{name: "image unknown user", img: img("nobody"), wantErr: `user "nobody"`},
		{name: "image unknown group", img: img("app:nogroup"), wantErr: `user "app:nogroup"`},
		{
			name: "run as user overrides image user", sec: Security{RunAsUser: ptr[int64](33)}, img: img("app"),
			want: specs.User{UID: 33, GID: 33, AdditionalGids: []uint32{50}},
		},
		{
			name: "run as username", sec: Security{RunAsUsername: "www-data"}, img: img(""),
			want: specs.User{UID: 33, GID: 33, AdditionalGids: []uint32{50}},
		},
		{name: "run as unknown username", sec: Security{RunAsUsername: "ghost"}, img: img(""), wantErr: `user "ghost"`},
		{
			name: "run as group overrides gid", sec: Security{RunAsUser: ptr[int64](1000), RunAsGroup: ptr[int64](7)}, img: img(""),
			want: specs.User{UID: 1000, GID: 7, AdditionalGids: []uint32{44, 50}},
		},
		{
			name: "supplemental groups merge", sec: Security{RunAsUser: ptr[int64](1000), SupplementalGroups: []int64{99, 44}}, img: img(""),
			want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{44, 50, 99}},
		},
		{
			name: "supplemental groups strict", img: img("app"),
			sec:  Security{SupplementalGroups: []int64{99}, SupplementalGroupsPolicy: "Strict"},
			want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{99}},
		},
		{name: "unknown policy", img: img(""), sec: Security{SupplementalGroupsPolicy: "Union"}, wantErr: "policy"},
		{name: "run as group alone", sec: Security{RunAsGroup: ptr[int64](7)}, img: img(""), wantErr: "without run as user"},
		{
			name: "run as user and username", sec: Security{RunAsUser: ptr[int64](1), RunAsUsername: "app"}, img: img(""),
			wantErr: "exclusive",
		},
		{name: "negative uid", sec: Security{RunAsUser: ptr[int64](-1)}, img: img(""), wantErr: "out of range"},
		{name: "huge gid", sec: Security{RunAsUser: ptr[int64](1), RunAsGroup: ptr[int64](1 << 40)}, img: img(""), wantErr: "out of range"},
		{name: "negative supplemental group", sec: Security{SupplementalGroups: []int64{-5}}, img: img(""), wantErr: "out of range"},
		{name: "no passwd: numeric user", img: &Image{User: "1000:1000"}, want: specs.User{UID: 1000, GID: 1000}},
		{name: "no passwd: user name", img: &Image{User: "app"}, wantErr: `user "app"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveUser(&tt.sec, tt.img)
			if wantInvalid(t, err, tt.wantErr) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.UID != tt.want.UID || got.GID != tt.want.GID || !slices.Equal(got.AdditionalGids, tt.want.AdditionalGids) {
				t.Fatalf("user = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestImageFSLayers checks the overlay view: upper layers win, symlinks resolve inside the image, and
// whiteouts and opaque directories hide lower layers.
func TestImageFSLayers(t *testing.T) {
	bottom := writeLayer(t, map[string]string{
		"etc/passwd":       "bottom",
		"etc/group":        "bottom",
		"usr/share/passwd": "via-symlink",
		"data/keep":        "bottom-keep",
		"data/hidden":      "bottom-hidden",
	})
	middle := writeLayer(t, map[string]string{"etc/group": "middle", "data/new": "middle-new"})
	top := writeLayer(t, map[string]string{"etc/motd": "top"})
	if err := os.Symlink("../usr/share/passwd", filepath.Join(top, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	// A symlink planted to escape to the host's files must stay inside the image.
	if err := os.Symlink("/etc/hostname-outside", filepath.Join(top, "etc", "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../etc/hostname-outside", filepath.Join(top, "etc", "escape-rel")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("loop-b", filepath.Join(top, "etc", "loop-a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("loop-a", filepath.Join(top, "etc", "loop-b")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bottom, "etc", "hostname-outside"), []byte("inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	ifs := newImageFS(&Image{Layers: []string{bottom, middle, top}})

	tests := []struct {
		path, want string
		wantErr    error
	}{
		{path: "/etc/group", want: "middle"},
		{path: "/etc/passwd", want: "via-symlink"},
		{path: "/etc/motd", want: "top"},
		{path: "/data/keep", want: "bottom-keep"},
		{path: "/data/new", want: "middle-new"},
		{path: "/etc/escape", want: "inside"},
		{path: "/etc/escape-rel", want: "inside"},
		{path: "/etc/missing", wantErr: errNotInImage},
		{path: "/etc/motd/child", wantErr: errNotADirectory},
		{path: "/etc/loop-a", wantErr: errSymlinkLoop},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			b, err := ifs.readFile(tt.path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(b) != tt.want {
				t.Fatalf("read = %q, %v; want %q", b, err, tt.want)
			}
		})
	}
}

func TestImageFSWhiteoutAndOpaque(t *testing.T) {
	testutil.RequireRoot(t, "whiteouts are 0/0 character devices and opaque marks trusted.* xattrs")
	bottom := writeLayer(t, map[string]string{
		"etc/passwd":    testPasswd,
		"etc/group":     testGroup,
		"data/a":        "a",
		"data/b":        "b",
		"gone/dir/file": "x",
	})
	upper := writeLayer(t, map[string]string{"data/c": "c"})
	// Whiteout /etc/group and the whole /gone tree; make /data opaque.
	for _, p := range []string{"etc/group", "gone"} {
		full := filepath.Join(upper, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(full, unix.S_IFCHR, 0); err != nil {
			t.Fatalf("mknod whiteout: %v", err)
		}
	}
	if err := unix.Setxattr(filepath.Join(upper, "data"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Skipf("this filesystem does not take trusted.* xattrs: %v", err)
	}
	img := &Image{User: "app", Layers: []string{bottom, upper}}
	ifs := newImageFS(img)
	for path, want := range map[string]error{
		"/etc/group":     errNotInImage,
		"/gone/dir/file": errNotInImage,
		"/data/a":        errNotInImage,
		"/data/c":        nil,
		"/etc/passwd":    nil,
	} {
		if _, err := ifs.readFile(path); !errors.Is(err, want) && (want != nil || err != nil) {
			t.Errorf("read %s: err = %v, want %v", path, err, want)
		}
	}
	// With /etc/group whited out the user keeps its passwd gid and gets no memberships.
	u, err := resolveUser(&Security{}, img)
	if err != nil {
		t.Fatal(err)
	}
	if u.UID != 1000 || u.GID != 1000 || len(u.AdditionalGids) != 0 {
		t.Fatalf("user = %+v, want uid/gid 1000 without groups", u)
	}
}

// Issue 12: an /etc/passwd or /etc/group that is a FIFO or a device (directly, or through a symlink in
// the image) made CreateContainer hang, or read a device without end; a huge one was read whole. Every
// such file is refused with an error naming it, at once, without opening what is not a regular file.
func TestResolveUserHostileFiles(t *testing.T) {
	type plant func(t *testing.T, layer string)
	fifo := func(name string) plant {
		return func(t *testing.T, layer string) {
			if err := unix.Mkfifo(filepath.Join(layer, name), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	device := func(name string, major, minor uint32) plant {
		return func(t *testing.T, layer string) {
			if os.Geteuid() != 0 {
				t.Skip("mknod of a character device needs root")
			}
			if err := unix.Mknod(filepath.Join(layer, name), unix.S_IFCHR|0o666, int(unix.Mkdev(major, minor))); err != nil {
				t.Fatal(err)
			}
		}
	}
	symlink := func(name, target string) plant {
		return func(t *testing.T, layer string) {
			if err := os.Symlink(target, filepath.Join(layer, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	hardlink := func(name, target string) plant {
		return func(t *testing.T, layer string) {
			if err := os.Link(filepath.Join(layer, target), filepath.Join(layer, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	big := func(name string, size int64) plant {
		return func(t *testing.T, layer string) {
			if err := os.Truncate(filepath.Join(layer, name), size); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := func(name string) plant {
		return func(t *testing.T, layer string) {
			if err := os.Mkdir(filepath.Join(layer, name), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name   string
		remove string // file of the layer to replace by plants
		plants []plant
		want   string
	}{
		{"passwd is a FIFO", "etc/passwd", []plant{fifo("etc/passwd")}, "/etc/passwd"},
		{"group is a FIFO", "etc/group", []plant{fifo("etc/group")}, "/etc/group"},
		{"passwd is /dev/zero", "etc/passwd", []plant{device("etc/passwd", 1, 5)}, "/etc/passwd"},
		{"group is a tty", "etc/group", []plant{device("etc/group", 5, 0)}, "/etc/group"},
		{"passwd links to a FIFO in the image", "etc/passwd", []plant{fifo("pipe"), symlink("etc/passwd", "/pipe")}, "/etc/passwd"},
		{"passwd links to a device in the image", "etc/passwd", []plant{device("zero", 1, 5), symlink("etc/passwd", "../zero")}, "/etc/passwd"},
		{"passwd is a hardlink to a device", "etc/passwd", []plant{device("zero", 1, 5), hardlink("etc/passwd", "zero")}, "/etc/passwd"},
		{"passwd links to the host's device", "etc/passwd", []plant{symlink("etc/passwd", "/dev/zero")}, ""},
		{"passwd is a directory", "etc/passwd", []plant{dir("etc/passwd")}, "/etc/passwd"},
		{"passwd is huge", "", []plant{big("etc/passwd", maxImageFile+1)}, "/etc/passwd"},
		{"group is huge and sparse", "", []plant{big("etc/group", 1<<40)}, "/etc/group"},
		{"passwd is a symlink loop", "etc/passwd", []plant{symlink("etc/passwd", "passwd")}, "/etc/passwd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			layer := writeLayer(t, map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup})
			if tt.remove != "" {
				if err := os.Remove(filepath.Join(layer, tt.remove)); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range tt.plants {
				p(t, layer)
			}
			done := make(chan error, 1)
			go func() {
				_, err := resolveUser(&Security{RunAsUsername: "app"}, &Image{Layers: []string{layer}})
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("resolveUser still reading after 30 s")
			}
			if tt.want == "" {
				// The host's /dev/zero is not the image's: the image has no /dev/zero, so no passwd.
				if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), `user "app"`) {
					t.Fatalf("err = %v, want the user unknown", err)
				}
				return
			}
			wantInvalid(t, err, tt.want)
		})
	}
}

// An image's /etc/passwd and /etc/group are read once per layer stack: a
// layer never changes once unpacked, so a later read answers from what the
// first one found, a missing file included.
func TestReadImageFileKept(t *testing.T) {
	layer := writeLayer(t, map[string]string{"etc/passwd": testPasswd})
	ifs := imageFS{layers: []string{layer}}
	for _, name := range []string{"/etc/passwd", "/etc/group"} {
		if _, err := readImageFile(ifs, name); err != nil {
			t.Fatal(err)
		}
	}
	// Changed behind the cache's back (which an unpacked layer never is):
	// the second read shows it was not read again.
	if err := os.WriteFile(filepath.Join(layer, "etc", "passwd"), []byte("changed:x:1:1::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layer, "etc", "group"), []byte("changed:x:1:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := readImageFile(ifs, "/etc/passwd"); err != nil || string(b) != testPasswd {
		t.Errorf("second read of /etc/passwd = %q, %v; want the first read's %q", b, err, testPasswd)
	}
	if b, err := readImageFile(ifs, "/etc/group"); err != nil || b != nil {
		t.Errorf("second read of the missing /etc/group = %q, %v; want nil, nil", b, err)
	}
	// Another layer stack is another image.
	other := writeLayer(t, map[string]string{"etc/group": testGroup})
	if b, err := readImageFile(imageFS{layers: []string{other, layer}}, "/etc/group"); err != nil || string(b) != testGroup {
		t.Errorf("/etc/group of another layer stack = %q, %v; want %q", b, err, testGroup)
	}
}

// A hostile file is an error every time: only what was read, or found
// missing, is kept.
func TestReadImageFileErrorNotKept(t *testing.T) {
	layer := writeLayer(t, map[string]string{"etc/group": testGroup})
	if err := unix.Mkfifo(filepath.Join(layer, "etc", "passwd"), 0o644); err != nil {
		t.Fatal(err)
	}
	ifs := imageFS{layers: []string{layer}}
	for i := 0; i < 2; i++ {
		if _, err := readImageFile(ifs, "/etc/passwd"); err == nil {
			t.Fatalf("read %d of a FIFO /etc/passwd succeeded", i+1)
		}
	}
}

// The cache holds at most maxBytes, and no file of more than a quarter of it.
func TestFileCacheBound(t *testing.T) {
	c := fileCache{maxBytes: 100}
	c.put("big", make([]byte, 30))
	if _, ok := c.get("big"); ok {
		t.Error("a file of more than a quarter of the bound was kept")
	}
	for i := 0; i < 20; i++ {
		c.put(strings.Repeat("k", i+1), make([]byte, 10))
		if c.size > c.maxBytes {
			t.Fatalf("after %d puts the cache holds %d bytes; bound %d", i+1, c.size, c.maxBytes)
		}
	}
	c.put("a", []byte("1"))
	c.put("a", []byte("22"))
	if b, ok := c.get("a"); !ok || string(b) != "22" {
		t.Errorf("get(a) = %q, %v; want the latest put", b, ok)
	}
}
