package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/integration/testimages"
)

type entry = testimages.Entry

func dirE(name string, mode int64) entry {
	return entry{Header: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode}}
}

func fileE(name, body string) entry {
	return entry{Header: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}, Body: []byte(body)}
}

func symlinkE(name, target string) entry {
	return entry{Header: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}}
}

func hardlinkE(name, target string) entry {
	return entry{Header: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target}}
}

func tarOf(t *testing.T, entries ...entry) []byte {
	t.Helper()
	b, err := testimages.TarBytes(entries)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func lstat(t *testing.T, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func TestUnpack(t *testing.T) {
	requireRoot(t)
	mtime := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		name    string
		entries []entry
		check   func(t *testing.T, root string)
	}{
		{
			name:    "whiteout becomes a 0/0 char device",
			entries: []entry{dirE("etc/", 0o755), {Header: tar.Header{Name: "etc/.wh.passwd", Typeflag: tar.TypeReg}}},
			check: func(t *testing.T, root string) {
				st := lstat(t, filepath.Join(root, "etc/passwd"))
				if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
					t.Errorf("etc/passwd mode %o rdev %d, want char 0/0", st.Mode, st.Rdev)
				}
				if exists(filepath.Join(root, "etc/.wh.passwd")) {
					t.Error(".wh. entry left as a file")
				}
			},
		},
		{
			name: "opaque marker sets the xattr on its directory",
			entries: []entry{dirE("var/", 0o755), dirE("var/cache/", 0o755),
				{Header: tar.Header{Name: "var/cache/.wh..wh..opq", Typeflag: tar.TypeReg}}, fileE("var/cache/new", "x"),
				{Header: tar.Header{Name: ".wh..wh.plnk", Typeflag: tar.TypeDir}}},
			check: func(t *testing.T, root string) {
				buf := make([]byte, 8)
				n, err := unix.Lgetxattr(filepath.Join(root, "var/cache"), opaqueXattr, buf)
				if err != nil || string(buf[:n]) != "y" {
					t.Errorf("opaque xattr = %q, %v", buf[:n], err)
				}
				if _, err := unix.Lgetxattr(filepath.Join(root, "var"), opaqueXattr, buf); err == nil {
					t.Error("parent marked opaque too")
				}
				if exists(filepath.Join(root, "var/cache/.wh..wh..opq")) || exists(filepath.Join(root, ".wh..wh.plnk")) || !exists(filepath.Join(root, "var/cache/new")) {
					t.Error("opaque/meta entries left behind or content lost")
				}
			},
		},
		{
			name: "metadata is preserved",
			entries: []entry{
				{Header: tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}},
				{Header: tar.Header{Name: "data/", Typeflag: tar.TypeDir, Mode: 0o2750, Uid: 33, Gid: 33, ModTime: mtime}},
				{Header: tar.Header{Name: "data/suid", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 1000, Gid: 1001, ModTime: mtime,
					PAXRecords: map[string]string{"SCHILY.xattr.user.note": "hello", "SCHILY.xattr.trusted.overlay.redirect": "/etc"}}, Body: []byte("bin")},
				{Header: tar.Header{Name: "data/link", Typeflag: tar.TypeSymlink, Linkname: "/etc/hostname", Uid: 7, Gid: 8, ModTime: mtime}},
				{Header: tar.Header{Name: "data/hard", Typeflag: tar.TypeLink, Linkname: "data/suid"}},
				{Header: tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
				{Header: tar.Header{Name: "dev/loop0", Typeflag: tar.TypeBlock, Mode: 0o660, Devmajor: 7, Devminor: 0, Gid: 6}},
				{Header: tar.Header{Name: "run/fifo", Typeflag: tar.TypeFifo, Mode: 0o600}},
			},
			check: func(t *testing.T, root string) {
				d := lstat(t, filepath.Join(root, "data"))
				if d.Mode&0o7777 != 0o2750 || d.Uid != 33 || d.Gid != 33 || d.Mtim.Sec != mtime.Unix() {
					t.Errorf("data: mode %o uid %d gid %d mtime %d", d.Mode&0o7777, d.Uid, d.Gid, d.Mtim.Sec)
				}
				f := lstat(t, filepath.Join(root, "data/suid"))
				if f.Mode&0o7777 != 0o4755 || f.Uid != 1000 || f.Gid != 1001 || f.Mtim.Sec != mtime.Unix() || f.Nlink != 2 {
					t.Errorf("suid: mode %o uid %d gid %d mtime %d nlink %d", f.Mode&0o7777, f.Uid, f.Gid, f.Mtim.Sec, f.Nlink)
				}
				buf := make([]byte, 16)
				if n, err := unix.Lgetxattr(filepath.Join(root, "data/suid"), "user.note", buf); err != nil || string(buf[:n]) != "hello" {
					t.Errorf("user.note = %q, %v", buf[:n], err)
				}
				if _, err := unix.Lgetxattr(filepath.Join(root, "data/suid"), "trusted.overlay.redirect", buf); err == nil {
					t.Error("image set an overlayfs xattr")
				}
				if h := lstat(t, filepath.Join(root, "data/hard")); h.Ino != f.Ino {
					t.Error("hardlink is a copy")
				}
				l := lstat(t, filepath.Join(root, "data/link"))
				if target, _ := os.Readlink(filepath.Join(root, "data/link")); target != "/etc/hostname" || l.Uid != 7 || l.Gid != 8 || l.Mtim.Sec != mtime.Unix() {
					t.Errorf("symlink: target %q uid %d gid %d mtime %d", target, l.Uid, l.Gid, l.Mtim.Sec)
				}
				if n := lstat(t, filepath.Join(root, "dev/null")); n.Mode&unix.S_IFMT != unix.S_IFCHR || n.Rdev != unix.Mkdev(1, 3) || n.Mode&0o777 != 0o666 {
					t.Errorf("dev/null: mode %o rdev %d", n.Mode, n.Rdev)
				}
				if b := lstat(t, filepath.Join(root, "dev/loop0")); b.Mode&unix.S_IFMT != unix.S_IFBLK || b.Rdev != unix.Mkdev(7, 0) || b.Gid != 6 {
					t.Errorf("dev/loop0: mode %o rdev %d gid %d", b.Mode, b.Rdev, b.Gid)
				}
				if p := lstat(t, filepath.Join(root, "run/fifo")); p.Mode&unix.S_IFMT != unix.S_IFIFO {
					t.Errorf("run/fifo: mode %o", p.Mode)
				}
				if r := lstat(t, root); r.Mtim.Sec != mtime.Unix() || r.Mode&0o777 != 0o755 {
					t.Errorf("layer root: mode %o mtime %d", r.Mode&0o777, r.Mtim.Sec)
				}
			},
		},
		{
			name: "later entries replace earlier ones",
			entries: []entry{fileE("a", "file"), dirE("a/", 0o755), fileE("a/x", "x"), symlinkE("a", "elsewhere"),
				dirE("b/", 0o755), fileE("b/keep", "k"), dirE("b/", 0o700), fileE("c", "old"), fileE("c", "new")},
			check: func(t *testing.T, root string) {
				if target, err := os.Readlink(filepath.Join(root, "a")); err != nil || target != "elsewhere" {
					t.Errorf("a = %q, %v", target, err)
				}
				if !exists(filepath.Join(root, "b/keep")) || lstat(t, filepath.Join(root, "b")).Mode&0o777 != 0o700 {
					t.Error("re-declared directory lost its content or kept its old mode")
				}
				if data, _ := os.ReadFile(filepath.Join(root, "c")); string(data) != "new" {
					t.Errorf("c = %q", data)
				}
			},
		},
		{
			name:    "absolute names and missing parents",
			entries: []entry{fileE("/usr/lib/deep/file", "x"), symlinkE("bin", "usr/bin")},
			check: func(t *testing.T, root string) {
				if !exists(filepath.Join(root, "usr/lib/deep/file")) {
					t.Error("absolute name not unpacked under the root")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := unpack(bytes.NewReader(tarOf(t, tc.entries...)), root); err != nil {
				t.Fatalf("unpack: %v", err)
			}
			tc.check(t, root)
		})
	}
}

// escapes are layers that try to write outside their root; each must be refused with nothing left behind.
var escapes = []struct {
	name    string
	entries []entry
}{
	{"dotdot", []entry{fileE("../escaped", "x")}},
	{"dotdot inside", []entry{dirE("a/", 0o755), fileE("a/../../escaped", "x")}},
	{"dotdot that stays inside", []entry{dirE("a/", 0o755), fileE("a/../b", "x")}},
	{"write through planted absolute symlink", []entry{symlinkE("evil", "ESCAPE_DIR"), fileE("evil/escaped", "x")}},
	{"write through relative symlink", []entry{symlinkE("evil", "../../../../../../ESCAPE_DIR"), fileE("evil/escaped", "x")}},
	{"write through symlink to inside", []entry{dirE("real/", 0o755), symlinkE("lnk", "real"), fileE("lnk/escaped", "x")}},
	{"directory through symlink", []entry{symlinkE("evil", "ESCAPE_DIR"), dirE("evil/sub/", 0o755)}},
	{"whiteout through symlink", []entry{symlinkE("evil", "ESCAPE_DIR"), {Header: tar.Header{Name: "evil/.wh.escaped", Typeflag: tar.TypeReg}}}},
	{"opaque through symlink", []entry{symlinkE("evil", "ESCAPE_DIR"), {Header: tar.Header{Name: "evil/.wh..wh..opq", Typeflag: tar.TypeReg}}}},
	{"hardlink to dotdot", []entry{hardlinkE("passwd", "../../../etc/passwd")}},
	{"hardlink to absolute path outside", []entry{hardlinkE("passwd", "/etc/passwd")}},
	{"hardlink through symlink", []entry{symlinkE("evil", "ESCAPE_DIR"), hardlinkE("stolen", "evil/secret")}},
	{"hardlink to directory", []entry{dirE("d/", 0o755), hardlinkE("d2", "d")}},
}

func TestUnpackRejectsEscapes(t *testing.T) {
	requireRoot(t)
	for _, tc := range escapes {
		t.Run(tc.name, func(t *testing.T) {
			outside := t.TempDir()
			if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(t.TempDir(), "layer")
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			err := unpack(bytes.NewReader(tarOf(t, withEscapeDir(tc.entries, outside)...)), root)
			if !errors.Is(err, ErrInvalidImage) {
				t.Fatalf("unpack = %v, want ErrInvalidImage", err)
			}
			if got := dirNames(t, outside); len(got) != 1 {
				t.Errorf("outside dir now holds %v", got)
			}
			if exists(filepath.Join(filepath.Dir(root), "escaped")) {
				t.Error("entry escaped to the parent of the layer")
			}
		})
	}
}

// TestPullRejectsEscapingLayer checks the whole pipeline: a pull whose layer escapes fails, and leaves no
// layer dir, no record and nothing in tmp/.
func TestPullRejectsEscapingLayer(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t)
	for _, tc := range escapes {
		t.Run(tc.name, func(t *testing.T) {
			outside := t.TempDir()
			evil, err := testimages.LayerFromEntries(withEscapeDir(tc.entries, outside)...)
			if err != nil {
				t.Fatal(err)
			}
			img := busybox(t, testimages.WithLayers(evil))
			ref := push(t, reg, "evil:latest", img)
			s := newStore(t)
			if _, err := s.Pull(t.Context(), ref, nil); !errors.Is(err, ErrInvalidImage) {
				t.Fatalf("Pull = %v, want ErrInvalidImage", err)
			}
			evilDiff := diffIDs(t, img)[1]
			if exists(s.layerPath(evilDiff)) {
				t.Error("rejected layer dir exists")
			}
			if len(s.List()) != 0 {
				t.Errorf("rejected image recorded: %v", s.List())
			}
			assertTmpEmpty(t, s)
			if got := dirNames(t, outside); len(got) != 0 {
				t.Errorf("outside dir now holds %v", got)
			}
			// A restarted store sees no trace either.
			s.Close()
			s2, err := New(context.Background(), Options{Root: s.root})
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if len(s2.List()) != 0 {
				t.Errorf("after restart: %v", s2.List())
			}
		})
	}
}

func withEscapeDir(entries []entry, dir string) []entry {
	out := make([]entry, len(entries))
	for i, e := range entries {
		out[i] = e
		out[i].Header.Linkname = string(bytes.ReplaceAll([]byte(e.Header.Linkname), []byte("ESCAPE_DIR"), []byte(dir)))
	}
	return out
}

func TestPullRejectsCorruptContent(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t)
	good, err := testimages.LayerFromEntries(fileE("hello", "world"))
	if err != nil {
		t.Fatal(err)
	}
	img := busybox(t, testimages.WithLayers(good))
	// A config claiming another diffID for the top layer: the unpacked content will not match it.
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[1] = v1.Hash{Algorithm: "sha256", Hex: "0000000000000000000000000000000000000000000000000000000000000001"}
	bad, err := mutateConfig(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	ref := push(t, reg, "corrupt:latest", bad)
	s := newStore(t)
	if _, err := s.Pull(t.Context(), ref, nil); !errors.Is(err, ErrInvalidImage) {
		t.Fatalf("Pull = %v, want ErrInvalidImage", err)
	}
	if exists(s.layerPath(cf.RootFS.DiffIDs[1].String())) || len(s.List()) != 0 {
		t.Error("corrupt layer stored")
	}
	assertTmpEmpty(t, s)
}
