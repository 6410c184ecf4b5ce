package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/warmpod/warmpod/integration/testimages"
)

func importDocker(t *testing.T, s *Store, images map[string]v1.Image) []Image {
	t.Helper()
	var buf bytes.Buffer
	if err := testimages.WriteDockerArchive(&buf, images); err != nil {
		t.Fatal(err)
	}
	imgs, err := s.Import(t.Context(), &buf)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	return imgs
}

func TestGet(t *testing.T) {
	s := newStore(t)
	img := busybox(t)
	importDocker(t, s, map[string]v1.Image{"busybox:latest": img, "quay.io/org/app:v1": img})
	id := configDigest(t, img)
	hex := strings.TrimPrefix(id, "sha256:")

	found := []string{id, hex, hex[:12], "sha256:" + hex[:20], "busybox", "busybox:latest", "library/busybox",
		"docker.io/busybox", "docker.io/library/busybox:latest", "index.docker.io/library/busybox", "quay.io/org/app:v1"}
	for _, ref := range found {
		got, err := s.Get(ref)
		if err != nil || got.ID != id {
			t.Errorf("Get(%q) = %q, %v", ref, got.ID, err)
		}
	}
	notFound := []string{"busybox:other", "quay.io/org/app", "sha256:" + strings.Repeat("f", 64), strings.Repeat("f", 12)}
	for _, ref := range notFound {
		if _, err := s.Get(ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", ref, err)
		}
	}
	for _, ref := range []string{"", "UPPER/case", "sha256:xyz", "bad ref"} {
		if _, err := s.Get(ref); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("Get(%q) = %v, want ErrInvalidReference", ref, err)
		}
	}
	got, _ := s.Get("busybox")
	if !slices.Equal(got.RepoTags, []string{"docker.io/library/busybox:latest", "quay.io/org/app:v1"}) || len(got.RepoDigests) != 0 {
		t.Errorf("names = %v %v", got.RepoTags, got.RepoDigests)
	}
	// Callers get copies: scribbling on one must not change the store.
	got.RepoTags[0], got.Config.Env[0] = "x", "y"
	if again, _ := s.Get("busybox"); again.RepoTags[0] == "x" || again.Config.Env[0] == "y" {
		t.Error("Get returned shared slices")
	}
}

func TestRemoveAndRetain(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t)
	a := busybox(t)
	b := busybox(t, testimages.WithFile("/srv/b", testimages.File{Content: []byte("b")}))
	push(t, reg, "a:1", a)
	push(t, reg, "b:1", b)
	base, top := diffIDs(t, b)[0], diffIDs(t, b)[1]

	t.Run("shared layers stay until the last user goes", func(t *testing.T) {
		s := newStore(t)
		for _, r := range []string{"a:1", "b:1"} {
			if _, err := s.Pull(t.Context(), reg.Ref(r), nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Remove(context.Background(), reg.Ref("a:1")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(reg.Ref("a:1")); !errors.Is(err, ErrNotFound) {
			t.Errorf("removed image still found: %v", err)
		}
		if !exists(s.layerPath(base)) || !exists(s.layerPath(top)) {
			t.Error("layers of b deleted with a")
		}
		if err := s.Remove(context.Background(), configDigest(t, b)); err != nil {
			t.Fatal(err)
		}
		if l, bl := layerDirs(t, s), blobFiles(t, s); len(l) != 0 || len(bl) != 0 {
			t.Errorf("left after removing everything: layers %v blobs %v", l, bl)
		}
		assertTmpEmpty(t, s)
	})

	t.Run("unknown ref", func(t *testing.T) {
		s := newStore(t)
		if err := s.Remove(context.Background(), "nosuch:image"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Remove = %v, want ErrNotFound", err)
		}
		if _, err := s.Retain("sha256:" + strings.Repeat("0", 64)); !errors.Is(err, ErrNotFound) {
			t.Errorf("Retain = %v, want ErrNotFound", err)
		}
	})

	t.Run("retained image keeps its layers after Remove", func(t *testing.T) {
		s := newStore(t)
		img, err := s.Pull(t.Context(), reg.Ref("b:1"), nil)
		if err != nil {
			t.Fatal(err)
		}
		release1, err := s.Retain(img.ID)
		if err != nil {
			t.Fatal(err)
		}
		release2, err := s.Retain(reg.Ref("b:1"))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(context.Background(), reg.Ref("b:1")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(img.ID); !errors.Is(err, ErrNotFound) || len(s.List()) != 0 {
			t.Errorf("removed image visible: %v %v", err, s.List())
		}
		// A daemon recovering its containers after a restart re-retains by id.
		release3, err := s.Retain(img.ID)
		if err != nil {
			t.Fatalf("Retain of a removed, retained image: %v", err)
		}
		release1()
		release1() // idempotent
		release3()
		if !exists(s.layerPath(base)) || !exists(s.layerPath(top)) {
			t.Fatal("layers deleted while still retained")
		}
		release2()
		if len(layerDirs(t, s)) != 0 || len(blobFiles(t, s)) != 0 {
			t.Errorf("layers not collected after the last release: %v", layerDirs(t, s))
		}
		if _, err := s.Retain(img.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("Retain after collection = %v", err)
		}
	})

	t.Run("removed but retained survives a restart until GC", func(t *testing.T) {
		s := newStore(t)
		img, err := s.Pull(t.Context(), reg.Ref("b:1"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Retain(img.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(context.Background(), img.ID); err != nil {
			t.Fatal(err)
		}
		root := s.root
		s.Close()
		s2, err := New(context.Background(), Options{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if !exists(s2.layerPath(top)) {
			t.Fatal("restart deleted the layers of a retained image")
		}
		release, err := s2.Retain(img.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := s2.GC(); err != nil || !exists(s2.layerPath(top)) {
			t.Fatalf("GC deleted retained layers: %v", err)
		}
		release()
		if exists(s2.layerPath(top)) {
			t.Error("layers kept after the last release")
		}
	})
}

func TestRetag(t *testing.T) {
	requireRoot(t)
	old := busybox(t, testimages.WithCmd("echo", "old"), testimages.WithFile("/old", testimages.File{Content: []byte("o")}))
	cur := busybox(t, testimages.WithCmd("echo", "new"))
	oldTop := diffIDs(t, old)[1]

	t.Run("pull moves the tag, digest keeps the old image", func(t *testing.T) {
		reg := startRegistry(t)
		s := newStore(t)
		push(t, reg, "app:latest", old)
		first, err := s.Pull(t.Context(), reg.Ref("app:latest"), nil)
		if err != nil {
			t.Fatal(err)
		}
		push(t, reg, "app:latest", cur)
		second, err := s.Pull(t.Context(), reg.Ref("app:latest"), nil)
		if err != nil {
			t.Fatal(err)
		}
		prev, err := s.Get(first.ID)
		if err != nil {
			t.Fatalf("old image dropped although its digest still names it: %v", err)
		}
		if len(prev.RepoTags) != 0 || !slices.Equal(prev.RepoDigests, first.RepoDigests) {
			t.Errorf("old image names = %v %v", prev.RepoTags, prev.RepoDigests)
		}
		if got, _ := s.Get(reg.Ref("app:latest")); got.ID != second.ID {
			t.Errorf("tag points at %s, want %s", got.ID, second.ID)
		}
	})

	t.Run("an image left without names is removed", func(t *testing.T) {
		s := newStore(t)
		first := importDocker(t, s, map[string]v1.Image{"app:latest": old})[0]
		importDocker(t, s, map[string]v1.Image{"app:latest": cur})
		if _, err := s.Get(first.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("nameless image kept: %v", err)
		}
		if exists(s.layerPath(oldTop)) {
			t.Error("its layer kept")
		}
	})

	t.Run("unless retained", func(t *testing.T) {
		s := newStore(t)
		first := importDocker(t, s, map[string]v1.Image{"app:latest": old})[0]
		release, err := s.Retain(first.ID)
		if err != nil {
			t.Fatal(err)
		}
		importDocker(t, s, map[string]v1.Image{"app:latest": cur})
		if got, err := s.Get(first.ID); err != nil || len(got.RepoTags) != 0 {
			t.Fatalf("retained nameless image: %v %v", got.RepoTags, err)
		}
		if len(s.List()) != 2 {
			t.Errorf("List = %d images, want 2", len(s.List()))
		}
		release()
		if _, err := s.Get(first.ID); !errors.Is(err, ErrNotFound) || exists(s.layerPath(oldTop)) {
			t.Errorf("nameless image kept after release: %v", err)
		}
	})
}

func TestRestart(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t)
	img := busybox(t)
	push(t, reg, "app:1", img)
	root := filepath.Join(t.TempDir(), "images")
	s, err := New(context.Background(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := s.Pull(t.Context(), reg.Ref("app:1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPinned(pulled.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), Options{Root: root}); !errors.Is(err, ErrStoreInUse) {
		t.Errorf("second store on the same root: %v, want ErrStoreInUse", err)
	}
	s.Close()

	// What a crash mid-pull leaves: a half-unpacked temp dir and a layer no record names.
	if err := os.MkdirAll(filepath.Join(root, "tmp", "layer-123", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(root, "layers", "sha256", strings.Repeat("a", 64))
	if err := os.MkdirAll(stray, 0o755); err != nil {
		t.Fatal(err)
	}

	s2, err := New(context.Background(), Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Get(reg.Ref("app:1"))
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	pulled.Pinned = true
	if got.ID != pulled.ID || !slices.Equal(got.RepoTags, pulled.RepoTags) || !slices.Equal(got.RepoDigests, pulled.RepoDigests) ||
		!slices.Equal(got.Layers, pulled.Layers) || !got.Pinned || got.Size != pulled.Size || !slices.Equal(got.Config.Cmd, pulled.Config.Cmd) {
		t.Errorf("after restart = %+v, want %+v", got, pulled)
	}
	if exists(stray) {
		t.Error("unreferenced layer survived New")
	}
	assertTmpEmpty(t, s2)

	t.Run("record with a missing layer is dropped", func(t *testing.T) {
		s2.Close()
		if err := os.RemoveAll(got.Layers[0]); err != nil {
			t.Fatal(err)
		}
		s3, err := New(context.Background(), Options{Root: root})
		if err != nil {
			t.Fatal(err)
		}
		defer s3.Close()
		if _, err := s3.Get(got.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("image with a missing layer still listed: %v", err)
		}
		if _, err := s3.Pull(t.Context(), reg.Ref("app:1"), nil); err != nil || !exists(got.Layers[0]) {
			t.Errorf("re-pull did not restore the layer: %v", err)
		}
	})

	t.Run("bad metadata is an error, not an empty store", func(t *testing.T) {
		bad := t.TempDir()
		if err := os.WriteFile(filepath.Join(bad, "images.json"), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := New(context.Background(), Options{Root: bad}); err == nil {
			t.Error("New accepted corrupt metadata")
		}
	})
}

func TestImport(t *testing.T) {
	requireRoot(t)
	a := busybox(t)
	b := busybox(t, testimages.WithOCIMediaTypes(), testimages.WithCmd("echo", "b"))
	arm := busybox(t, testimages.WithOCIMediaTypes(), testimages.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
	idx, err := testimages.Index(map[string]v1.Image{"linux/amd64": b, "linux/arm64": arm})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("docker archive", func(t *testing.T) {
		s := newStore(t)
		imgs := importDocker(t, s, map[string]v1.Image{"busybox:latest": a, "example.com/x/b:2": b})
		if len(imgs) != 2 {
			t.Fatalf("imported %d images", len(imgs))
		}
		for ref, want := range map[string]v1.Image{"busybox": a, "example.com/x/b:2": b} {
			got, err := s.Get(ref)
			if err != nil || got.ID != configDigest(t, want) {
				t.Errorf("Get(%s) = %s, %v", ref, got.ID, err)
				continue
			}
			for i, d := range diffIDs(t, want) {
				if got.Layers[i] != s.layerPath(d) || !exists(filepath.Join(got.Layers[0], "bin/busybox")) {
					t.Errorf("%s layer %d not unpacked", ref, i)
				}
			}
			if got.Size <= 0 {
				t.Errorf("%s size %d", ref, got.Size)
			}
		}
		assertTmpEmpty(t, s)
	})

	t.Run("oci layout", func(t *testing.T) {
		s := newStore(t)
		var buf bytes.Buffer
		err := testimages.WriteOCILayout(&buf, map[string]any{
			"docker.io/library/busybox:1": a,
			"example.com/multi:v1":        idx,
			"latest":                      b, // a bare OCI tag: no repository to name it with
		})
		if err != nil {
			t.Fatal(err)
		}
		imgs, err := s.Import(t.Context(), &buf)
		if err != nil {
			t.Fatalf("Import: %v", err)
		}
		if len(imgs) != 3 {
			t.Fatalf("imported %d images, want 3", len(imgs))
		}
		got, err := s.Get("busybox:1")
		if err != nil || got.ID != configDigest(t, a) || !slices.Equal(got.RepoDigests, []string{"docker.io/library/busybox@" + digestOf(t, a)}) {
			t.Errorf("busybox:1 = %+v, %v", got, err)
		}
		got, err = s.Get("example.com/multi:v1")
		if err != nil || got.ID != configDigest(t, b) || !slices.Equal(got.RepoDigests, []string{"example.com/multi@" + digestOf(t, idx)}) {
			t.Errorf("multi = %+v, %v", got, err)
		}
		if _, err := s.Get("latest"); !errors.Is(err, ErrNotFound) {
			t.Errorf("bare OCI tag used as a name: %v", err)
		}
	})

	t.Run("garbage", func(t *testing.T) {
		s := newStore(t)
		for name, data := range map[string][]byte{"not a tar": []byte("hello"), "empty tar": make([]byte, 1024)} {
			if _, err := s.Import(t.Context(), bytes.NewReader(data)); !errors.Is(err, ErrInvalidImage) {
				t.Errorf("%s: Import = %v, want ErrInvalidImage", name, err)
			}
		}
		assertTmpEmpty(t, s)
	})
}

func TestFsInfo(t *testing.T) {
	requireRoot(t)
	s := newStore(t)
	empty, err := s.FsInfo()
	if err != nil {
		t.Fatal(err)
	}
	if empty.Mountpoint != s.root {
		t.Errorf("Mountpoint = %s, want %s", empty.Mountpoint, s.root)
	}
	imgs := importDocker(t, s, map[string]v1.Image{"busybox:latest": busybox(t)})
	full, err := s.FsInfo()
	if err != nil {
		t.Fatal(err)
	}
	// The busybox binary alone is over a megabyte; its ~270 applets are hardlinks and count once.
	if full.UsedBytes < empty.UsedBytes+1<<20 || full.InodesUsed <= empty.InodesUsed+10 || full.InodesUsed > empty.InodesUsed+100 {
		t.Errorf("FsInfo after import = %+v (empty %+v)", full, empty)
	}
	if err := s.Remove(context.Background(), imgs[0].ID); err != nil {
		t.Fatal(err)
	}
	after, err := s.FsInfo()
	if err != nil {
		t.Fatal(err)
	}
	if after.UsedBytes >= full.UsedBytes || after.InodesUsed >= full.InodesUsed {
		t.Errorf("FsInfo after remove = %+v, before %+v", after, full)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no root":    {},
		"bad mirror": {Root: t.TempDir(), Mirrors: map[string][]string{"docker.io": {"ftp://x"}}},
	} {
		if s, err := New(context.Background(), o); err == nil {
			s.Close()
			t.Errorf("%s: New accepted %+v", name, o)
		}
	}
}
