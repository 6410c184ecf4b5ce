package image

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/integration/testimages"
)

// smallFS mounts a tmpfs of size bytes for the test and returns its path.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a file in dir until the filesystem is full and returns the
// function that deletes it again.
func fillDisk(t *testing.T, dir string) func() {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(f, io.LimitReader(zeros{}, 1<<40))
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fill %s: %v, want ENOSPC", dir, err)
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// The kubelet frees a full disk by removing images: a removal must work
// when the records cannot be rewritten before the image's content is gone,
// and a store must open on a full disk.
func TestRemoveOnFullDisk(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t)
	a := busybox(t)
	b := busybox(t, testimages.WithFile("/srv/b", testimages.File{Content: bytes.Repeat([]byte("b"), 256<<10)}))
	push(t, reg, "a:1", a)
	push(t, reg, "b:1", b)
	base, top := diffIDs(t, b)[0], diffIDs(t, b)[1]
	root := filepath.Join(smallFS(t, "32m"), "images")

	s, err := New(t.Context(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"a:1", "b:1"} {
		if _, err := s.Pull(t.Context(), reg.Ref(r), nil); err != nil {
			s.Close()
			t.Fatal(err)
		}
	}
	unfill := fillDisk(t, filepath.Dir(root))
	if err := s.Remove(t.Context(), reg.Ref("b:1")); err != nil {
		t.Errorf("remove on a full disk: %v", err)
	}
	if _, err := s.Get(reg.Ref("b:1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed image still found: %v", err)
	}
	if exists(s.layerPath(top)) || !exists(s.layerPath(base)) {
		t.Errorf("after the removal: b's own layer there %v, the shared one %v; want only the shared one",
			exists(s.layerPath(top)), exists(s.layerPath(base)))
	}
	s.Close()

	// Still full: a store opens, and sees the removal.
	unfill()
	unfill = fillDisk(t, filepath.Dir(root))
	// A layer lost by hand makes open drop a's record, which it cannot
	// write back on a full disk: it must open all the same.
	if err := os.RemoveAll(filepath.Join(root, "layers", "sha256", base[len("sha256:"):])); err != nil {
		t.Fatal(err)
	}
	s, err = New(t.Context(), Options{Root: root})
	if err != nil {
		t.Fatalf("open on a full disk: %v", err)
	}
	defer s.Close()
	if imgs := s.List(); len(imgs) != 0 {
		t.Errorf("images after reopening: %v, want none (b removed, a's layer lost)", imgs)
	}
	unfill()
}
