package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/warmpod/warmpod/integration/testimages"
	"github.com/warmpod/warmpod/internal/testutil"
)

// requireRoot skips tests that chown, mknod and set trusted.* xattrs; CI runs as root, so there they run.
func requireRoot(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t, "unpacking layers chowns files, creates whiteout devices and sets trusted.* xattrs")
}

func newStore(t testing.TB, opts ...func(*Options)) *Store {
	t.Helper()
	requireRoot(t)
	o := Options{Root: filepath.Join(t.TempDir(), "images")}
	for _, f := range opts {
		f(&o)
	}
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func startRegistry(t testing.TB, opts ...testimages.RegistryOption) *testimages.Registry {
	t.Helper()
	reg, err := testimages.StartRegistry(opts...)
	if err != nil {
		t.Fatalf("StartRegistry: %v", err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

func busybox(t testing.TB, opts ...testimages.Option) v1.Image {
	t.Helper()
	img, err := testimages.Busybox(opts...)
	if errors.Is(err, testimages.ErrNoBusybox) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("Busybox: %v", err)
	}
	return img
}

func push(t testing.TB, reg *testimages.Registry, ref string, obj any) string {
	t.Helper()
	full, err := reg.Push(ref, obj)
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return full
}

func digestOf(t testing.TB, obj interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	d, err := obj.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func configDigest(t testing.TB, img v1.Image) string {
	t.Helper()
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func diffIDs(t testing.TB, img v1.Image) []string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range cf.RootFS.DiffIDs {
		out = append(out, d.String())
	}
	return out
}

// dirNames lists a directory's entries, sorted; a missing directory is empty.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func layerDirs(t testing.TB, s *Store) []string {
	return dirNames(t, filepath.Join(s.root, "layers", "sha256"))
}

func blobFiles(t testing.TB, s *Store) []string {
	return dirNames(t, filepath.Join(s.root, "blobs", "sha256"))
}

func assertTmpEmpty(t testing.TB, s *Store) {
	t.Helper()
	if left := dirNames(t, s.tmpDir()); len(left) != 0 {
		t.Errorf("tmp/ not empty: %v", left)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func mutateConfig(img v1.Image, cf *v1.ConfigFile) (v1.Image, error) {
	return mutate.ConfigFile(img, cf)
}
