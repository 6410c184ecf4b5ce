package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// testLimits are the store's defaults.
var testLimits, _ = Limits{}.withDefaults()

func whiteoutE(name string) entry {
	return entry{Header: tar.Header{Name: name, Typeflag: tar.TypeReg}}
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
			if err := unpack(bytes.NewReader(tarOf(t, tc.entries...)), root, testLimits, nil); err != nil {
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
	// Issue 12: ".wh..." is a whiteout of "..": it removed the parent of the layer dir (the store's tmp/)
	// and left a device node in its place.
	{"whiteout of dotdot", []entry{whiteoutE(".wh...")}},
	{"whiteout of dotdot below the root", []entry{dirE("a/", 0o755), whiteoutE("a/.wh...")}},
	{"whiteout of dot", []entry{whiteoutE("a/.wh..")}},
	{"whiteout of nothing", []entry{whiteoutE("/.wh.")}},
	{"absolute whiteout of dotdot", []entry{whiteoutE("/.wh...")}},
	{"whiteout with dotdot in its path", []entry{whiteoutE("a/../.wh.x")}},
	{"whiteout through relative symlink", []entry{symlinkE("up", ".."), whiteoutE("up/.wh.escaped")}},
	{"hardlink to a device node", []entry{{Header: tar.Header{Name: "null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
		hardlinkE("etc/passwd", "null")}},
	{"hardlink to a FIFO", []entry{{Header: tar.Header{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o600}}, hardlinkE("etc/group", "fifo")}},
	{"hardlink to a whiteout", []entry{whiteoutE(".wh.gone"), hardlinkE("etc/passwd", "gone")}},
	{"symlink then a file through it", []entry{symlinkE("etc", "ESCAPE_DIR"), fileE("etc/passwd", "root:x:0:0::/:/bin/sh\n")}},
	{"symlink chain then a file through it", []entry{symlinkE("a", "b"), symlinkE("b", "ESCAPE_DIR"), fileE("a/escaped", "x")}},
	{"name longer than PATH_MAX", []entry{fileE(strings.Repeat("d/", 2100)+"f", "x")}},
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
			err := unpack(bytes.NewReader(tarOf(t, withEscapeDir(tc.entries, outside)...)), root, testLimits, nil)
			if !errors.Is(err, ErrInvalidImage) {
				t.Fatalf("unpack = %v, want ErrInvalidImage", err)
			}
			if got := dirNames(t, outside); len(got) != 1 {
				t.Errorf("outside dir now holds %v", got)
			}
			if got := dirNames(t, filepath.Dir(root)); len(got) != 1 || got[0] != "layer" {
				t.Errorf("parent of the layer now holds %v", got)
			}
			if st, err := os.Lstat(root); err != nil || !st.IsDir() {
				t.Errorf("layer dir is no longer a directory: %v", err)
			}
		})
	}
}

// TestPullRejectsEscapingLayer checks the whole pipeline: a pull whose layer escapes fails, and leaves no
// layer dir, no record and nothing in tmp/.
func TestPullRejectsEscapingLayer(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t)
	good := busybox(t)
	goodRef := push(t, reg, "good:latest", good)
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
			if got := dirNames(t, s.root); !slices.Equal(got, []string{"blobs", "images.json", "layers", "lock", "tmp"}) &&
				!slices.Equal(got, []string{"blobs", "layers", "lock", "tmp"}) {
				t.Errorf("store root holds %v", got)
			}
			// The failed pull poisons nothing: a good image still pulls.
			if _, err := s.Pull(t.Context(), goodRef, nil); err != nil {
				t.Fatalf("pull of a good image after the hostile one: %v", err)
			}
			// A restarted store sees no trace either.
			s.Close()
			s2, err := New(context.Background(), Options{Root: s.root})
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if imgs := s2.List(); len(imgs) != 1 || imgs[0].ID != configDigest(t, good) {
				t.Errorf("after restart: %v, want just the good image", imgs)
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

// Issue 12: a GNU sparse entry was written out as zeros, so a tiny layer could fill the disk. Holes stay
// holes, all-zero data becomes holes too, and the content reads back the same.
func TestUnpackWritesSparse(t *testing.T) {
	requireRoot(t)
	const size = 1 << 30
	zeros := make([]byte, 4<<20)
	data := append([]byte("head"), make([]byte, copyChunk)...)
	data = append(data, "tail"...)
	root := t.TempDir()
	layer := tarOf(t,
		entry{Header: tar.Header{Name: "sparse", Mode: 0o644}, Body: []byte("hello"), SparseSize: size},
		entry{Header: tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644}, Body: zeros},
		entry{Header: tar.Header{Name: "mixed", Typeflag: tar.TypeReg, Mode: 0o644}, Body: data},
	)
	if len(layer) > 6<<20 {
		t.Fatalf("test layer is %d bytes", len(layer))
	}
	if err := unpack(bytes.NewReader(layer), root, testLimits, nil); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	for name, want := range map[string]int64{"sparse": size, "zeros": int64(len(zeros)), "mixed": int64(len(data))} {
		st := lstat(t, filepath.Join(root, name))
		if st.Size != want {
			t.Errorf("%s: size %d, want %d", name, st.Size, want)
		}
		if name != "mixed" && st.Blocks*512 > 64<<10 {
			t.Errorf("%s: %d bytes allocated, want a hole", name, st.Blocks*512)
		}
	}
	f, err := os.Open(filepath.Join(root, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 8)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "hello\x00\x00\x00" {
		t.Errorf("sparse file starts with %q, %v", buf, err)
	}
	if _, err := f.ReadAt(buf, size-8); err != nil || !bytes.Equal(buf, make([]byte, 8)) {
		t.Errorf("sparse file ends with %q, %v", buf, err)
	}
	if got, err := os.ReadFile(filepath.Join(root, "mixed")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("mixed file reads back wrong (%d bytes, %v)", len(got), err)
	}
}

// Issue 12: the unpacked size of a layer and of an image, and a layer's entries, are bounded.
func TestUnpackLimits(t *testing.T) {
	requireRoot(t)
	small := Limits{LayerSize: 1 << 20, ImageSize: 3 << 20, LayerEntries: 10, ImageEntries: 25, ManifestSize: 1 << 20}
	tests := []struct {
		name    string
		entries []entry
		img     int64 // bytes of the image budget already spent by other layers
		imgEnts int64 // and entries
		mention string
	}{
		{"sparse file over the layer limit", []entry{{Header: tar.Header{Name: "big", Mode: 0o644}, Body: []byte("x"), SparseSize: 2 << 20}},
			0, 0, `"big"`},
		{"files over the layer limit together", []entry{fileE("a", strings.Repeat("a", 600<<10)), fileE("b", strings.Repeat("b", 600<<10))},
			0, 0, `"b"`},
		{"file over what the image has left", []entry{fileE("a", strings.Repeat("a", 600<<10))},
			small.ImageSize - 100<<10, 0, "image"},
		{"entry over what the image has left", []entry{fileE("a", ""), fileE("b", "")}, 0, 24, `"b"`},
		{"too many entries", func() []entry {
			var es []entry
			for i := range 11 {
				es = append(es, fileE(fmt.Sprintf("f%d", i), ""))
			}
			return es
		}(), 0, 0, `"f10"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := newBudget(small)
			img.take(tc.img)
			for range tc.imgEnts {
				img.takeEntry()
			}
			err := unpack(bytes.NewReader(tarOf(t, tc.entries...)), t.TempDir(), small, img)
			if !errors.Is(err, ErrInvalidImage) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("unpack = %v, want ErrInvalidImage mentioning %s", err, tc.mention)
			}
		})
	}
}

// The fallback of openBeneath for kernels without openat2 refuses what openat2 refuses.
func TestOpenComponents(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a/b", "real"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("real", filepath.Join(root, "a/lnk")); err != nil {
		t.Fatal(err)
	}
	rootFd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rootFd)
	for _, tc := range []struct {
		rel  string
		want error
	}{
		{"a/b", nil}, {".", nil}, {"a/lnk", unix.ELOOP}, {"a/../..", unix.EXDEV}, {"a/b/missing", unix.ENOENT},
	} {
		for name, open := range map[string]func(int, string) (int, error){"openat2": openBeneath, "components": openComponents} {
			fd, err := open(rootFd, tc.rel)
			if err == nil {
				unix.Close(fd)
			}
			if !errors.Is(err, tc.want) && (tc.want != nil || err != nil) {
				t.Errorf("%s(%q) = %v, want %v", name, tc.rel, err, tc.want)
			}
		}
	}
}
