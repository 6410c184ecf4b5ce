package testimages

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func busybox(t *testing.T, opts ...Option) v1.Image {
	t.Helper()
	img, err := Busybox(opts...)
	if errors.Is(err, ErrNoBusybox) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// listing maps each entry of an image's flattened filesystem to its header.
func listing(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = hdr
	}
}

func TestBusybox(t *testing.T) {
	img := busybox(t)
	again := busybox(t)
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("two builds differ: %s %s", d1, d2)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || !slices.Equal(cf.Config.Cmd, []string{"sh"}) ||
		!slices.Equal(cf.Config.Env, []string{DefaultPath}) || len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("config = %+v", cf)
	}
	files := listing(t, img)
	for name, want := range map[string]byte{
		"bin/busybox": tar.TypeReg, "bin/sh": tar.TypeLink, "bin/ls": tar.TypeLink, "etc/passwd": tar.TypeReg,
		"etc/group": tar.TypeReg, "etc/hostname": tar.TypeReg, "tmp": tar.TypeDir, "root": tar.TypeDir, "home": tar.TypeDir,
	} {
		if h := files[name]; h == nil || h.Typeflag != want {
			t.Errorf("%s: %+v, want type %q", name, h, want)
		}
	}
	if h := files["tmp"]; h != nil && h.Mode&0o7777 != 0o1777 {
		t.Errorf("tmp mode %o", h.Mode)
	}
}

func TestBusyboxOptions(t *testing.T) {
	extra, err := LayerFromEntries(Entry{Header: tar.Header{Name: "extra", Typeflag: tar.TypeReg, Mode: 0o600}, Body: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	img := busybox(t,
		WithEntrypoint("/bin/sh", "-c"), WithCmd("echo hi"), WithEnv("PATH=/bin", "A=1"), WithUser("33:33"),
		WithWorkingDir("/srv"), WithLabels(map[string]string{"l": "v"}), WithExposedPorts("80/tcp"), WithStopSignal("SIGUSR1"),
		WithFile("/srv/app.sh", File{Content: []byte("#!/bin/sh\n"), Mode: 0o755, UID: 33, GID: 33}),
		WithFile("/srv/link", File{Mode: os.ModeSymlink, Target: "app.sh"}),
		WithLayers(extra), WithOCIMediaTypes(),
	)
	cf, _ := img.ConfigFile()
	c := cf.Config
	if !slices.Equal(c.Entrypoint, []string{"/bin/sh", "-c"}) || !slices.Equal(c.Cmd, []string{"echo hi"}) ||
		!slices.Equal(c.Env, []string{"PATH=/bin", "A=1"}) || c.User != "33:33" || c.WorkingDir != "/srv" ||
		c.Labels["l"] != "v" || c.StopSignal != "SIGUSR1" {
		t.Errorf("config = %+v", c)
	}
	if _, ok := c.ExposedPorts["80/tcp"]; !ok {
		t.Error("port not exposed")
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("media type %s", mt)
	}
	if layers, _ := img.Layers(); len(layers) != 3 {
		t.Errorf("%d layers, want busybox + files + extra", len(layers))
	}
	files := listing(t, img)
	if h := files["srv/app.sh"]; h == nil || h.Mode&0o777 != 0o755 || h.Uid != 33 {
		t.Errorf("srv/app.sh = %+v", h)
	}
	if h := files["srv/link"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "app.sh" {
		t.Errorf("srv/link = %+v", h)
	}
	if files["extra"] == nil {
		t.Error("extra layer missing")
	}
}

func TestRegistry(t *testing.T) {
	img := busybox(t)
	arm := busybox(t, WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
	idx, err := Index(map[string]v1.Image{"linux/amd64": img, "linux/arm64": arm})
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := idx.MediaType(); mt != types.DockerManifestList {
		t.Errorf("index media type %s", mt)
	}
	if _, err := Index(map[string]v1.Image{"linux": img}); err == nil {
		t.Error("Index accepted a bad platform")
	}

	for _, tc := range []struct {
		name string
		opts []RegistryOption
		auth authn.Authenticator
	}{
		{"anonymous", nil, authn.Anonymous},
		{"basic auth", []RegistryOption{WithBasicAuth("u", "p")}, &authn.Basic{Username: "u", Password: "p"}},
		{"token auth", []RegistryOption{WithTokenAuth("u", "p", "r")}, &authn.Basic{Username: "u", Password: "p"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := StartRegistry(tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			full, err := reg.Push("busybox:latest", img)
			if err != nil {
				t.Fatal(err)
			}
			if full != reg.Addr()+"/busybox:latest" {
				t.Errorf("pushed %s", full)
			}
			if _, err := reg.Push("multi:latest", idx); err != nil {
				t.Fatal(err)
			}
			ref, _ := name.ParseReference(full)
			got, err := remote.Image(ref, remote.WithAuth(tc.auth))
			if err != nil {
				t.Fatalf("pull back: %v", err)
			}
			want, _ := img.Digest()
			if d, _ := got.Digest(); d != want {
				t.Errorf("digest %s, want %s", d, want)
			}
			if tc.opts != nil {
				if _, err := remote.Image(ref); err == nil {
					t.Error("anonymous pull allowed")
				}
			}
		})
	}
}

func TestArchives(t *testing.T) {
	img := busybox(t)
	var docker bytes.Buffer
	if err := WriteDockerArchive(&docker, map[string]v1.Image{"busybox:latest": img}); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("busybox:latest")
	back, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(docker.Bytes())), nil }, &tag)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.ConfigName()
	if got, _ := back.ConfigName(); got != want {
		t.Errorf("docker archive config %s, want %s", got, want)
	}

	var oci bytes.Buffer
	if err := WriteOCILayout(&oci, map[string]any{"example.com/busybox:1": img}); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	tr := tar.NewReader(&oci)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[hdr.Name] = true
	}
	if !names["oci-layout"] || !names["index.json"] || !names["blobs/sha256/"+want.Hex] {
		t.Errorf("OCI layout tarball holds %v", names)
	}
	if err := WriteOCILayout(io.Discard, map[string]any{"x": 42}); err == nil {
		t.Error("WriteOCILayout accepted a non-image")
	}
}

// A sparse entry reads back, between ordinary entries, as a file of its full size with its data first.
func TestTarBytesSparse(t *testing.T) {
	raw, err := TarBytes([]Entry{
		{Header: tar.Header{Name: "before", Typeflag: tar.TypeReg, Mode: 0o644}, Body: []byte("b")},
		{Header: tar.Header{Name: "sparse", Mode: 0o600}, Body: []byte("hello"), SparseSize: 1 << 20},
		{Header: tar.Header{Name: "after", Typeflag: tar.TypeReg, Mode: 0o644}, Body: []byte("a")},
	})
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	var got []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, hdr.Name)
		if hdr.Name == "sparse" {
			if hdr.Typeflag != tar.TypeGNUSparse || hdr.Size != 1<<20 || len(data) != 1<<20 ||
				string(data[:5]) != "hello" || !bytes.Equal(data[5:], make([]byte, 1<<20-5)) {
				t.Errorf("sparse entry: type %c size %d, %d bytes read", hdr.Typeflag, hdr.Size, len(data))
			}
		}
	}
	if !slices.Equal(got, []string{"before", "sparse", "after"}) {
		t.Errorf("entries %q", got)
	}
	// Past 8 GiB the sizes no longer fit the octal fields.
	raw, err = TarBytes([]Entry{{Header: tar.Header{Name: "huge", Mode: 0o600}, Body: []byte("x"), SparseSize: 64 << 30}})
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := tar.NewReader(bytes.NewReader(raw)).Next()
	if err != nil || hdr.Size != 64<<30 {
		t.Errorf("huge sparse entry: %+v, %v", hdr, err)
	}
}
