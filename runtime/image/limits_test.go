package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/klauspost/compress/zstd"

	"github.com/warmpod/warmpod/integration/testimages"
)

// tinyImage is an image of exactly the given layers (no busybox), for tests whose limits a real base
// layer would break.
func tinyImage(t *testing.T, entries ...[]entry) v1.Image {
	t.Helper()
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH,
		RootFS: v1.RootFS{Type: "layers"}, Config: v1.Config{Cmd: []string{"sh"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, es := range entries {
		l, err := testimages.LayerFromEntries(es...)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// lyingBlobs serves, for the digests it holds, other bytes than the registry stored under them: what a
// compromised registry or a man in the middle would send.
type lyingBlobs struct {
	mu   sync.Mutex
	lies map[string][]byte
}

func (l *lyingBlobs) set(digest string, body []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lies[digest] = body
}

func (l *lyingBlobs) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		var body []byte
		var lie bool
		if i := strings.Index(r.URL.Path, "/blobs/"); i >= 0 {
			body, lie = l.lies[r.URL.Path[i+len("/blobs/"):]]
		}
		l.mu.Unlock()
		if !lie {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	})
}

// rawManifestOf returns img's manifest, for a test to edit and push as it is.
func rawManifestOf(t *testing.T, img v1.Image) *v1.Manifest {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m.DeepCopy()
}

func pushManifest(t *testing.T, reg *testimages.Registry, ref string, m *v1.Manifest) string {
	t.Helper()
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	full, err := reg.PushManifest(ref, m.MediaType, raw)
	if err != nil {
		t.Fatal(err)
	}
	return full
}

func randomBytes(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Issue 12: a registry's manifests, configs and layers are bounded and checked before they are trusted
// (sizes and digests from a manifest are claims, not facts); each refusal leaves the store as it was and
// able to pull.
func TestPullBoundsContent(t *testing.T) {
	requireRoot(t)
	lies := &lyingBlobs{lies: map[string][]byte{}}
	reg := startRegistry(t, testimages.WithHandler(lies.wrap))
	limits := Limits{LayerSize: 1 << 20, ImageSize: 3 << 19, LayerEntries: 5000, ManifestSize: 64 << 10}
	good := tinyImage(t, []entry{fileE("hello", "world")})
	goodRef := push(t, reg, "good:latest", good)

	fill := func(name string, n int) entry { return fileE(name, strings.Repeat("x", n)) }
	tests := []struct {
		name    string
		ref     func(t *testing.T) string
		mention string
	}{
		{"sparse file over the layer limit", func(t *testing.T) string {
			return push(t, reg, "sparse:latest", tinyImage(t, []entry{
				{Header: tar.Header{Name: "huge", Mode: 0o644}, Body: []byte("x"), SparseSize: 1 << 40}}))
		}, `"huge"`},
		{"files over the image limit", func(t *testing.T) string {
			return push(t, reg, "wide:latest", tinyImage(t, []entry{fill("a", 600<<10)}, []entry{fill("b", 600<<10)}, []entry{fill("c", 600<<10)}))
		}, "image past its limit"},
		{"layer blob over the limit", func(t *testing.T) string {
			return push(t, reg, "noise:latest", tinyImage(t, []entry{fileE("noise", randomBytes(t, 1100<<10))}))
		}, "more than the limit"},
		{"tar stream over the limit", func(t *testing.T) string {
			var es []entry
			for i := range 2100 {
				es = append(es, fileE(fmt.Sprintf("f%d", i), ""))
			}
			return push(t, reg, "headers:latest", tinyImage(t, es))
		}, "tar stream is longer"},
		{"manifest over the limit", func(t *testing.T) string {
			return push(t, reg, "fatmanifest:latest", mutate.Annotations(good, map[string]string{"x": strings.Repeat("m", 70<<10)}).(v1.Image))
		}, "manifest"},
		{"config over the limit", func(t *testing.T) string {
			cf, _ := good.ConfigFile()
			cf = cf.DeepCopy()
			cf.Config.Labels = map[string]string{"x": strings.Repeat("c", 70<<10)}
			img, err := mutate.ConfigFile(good, cf)
			if err != nil {
				t.Fatal(err)
			}
			return push(t, reg, "fatconfig:latest", img)
		}, "config"},
		{"config of unknown size", func(t *testing.T) string {
			push(t, reg, "configsize:base", good)
			m := rawManifestOf(t, good)
			m.Config.Size = -1
			return pushManifest(t, reg, "configsize:latest", m)
		}, "config"},
		{"config size that lies", func(t *testing.T) string {
			push(t, reg, "configshort:base", good)
			m := rawManifestOf(t, good)
			m.Config.Size -= 10
			return pushManifest(t, reg, "configshort:latest", m)
		}, "config"},
		{"config that does not match its digest", func(t *testing.T) string {
			cf, _ := good.ConfigFile()
			cf = cf.DeepCopy()
			cf.Config.Labels = map[string]string{"lie": "config"}
			img, err := mutate.ConfigFile(good, cf)
			if err != nil {
				t.Fatal(err)
			}
			cfgName, _ := img.ConfigName()
			raw, _ := img.RawConfigFile()
			lies.set(cfgName.String(), bytes.Replace(raw, []byte("linux"), []byte("xinux"), 1))
			return push(t, reg, "configlie:latest", img)
		}, "config"},
		{"layer that does not match its digest", func(t *testing.T) string {
			img := tinyImage(t, []entry{fileE("lie", "original")})
			ls, _ := img.Layers()
			d, _ := ls[0].Digest()
			other, _ := testimages.LayerFromEntries(fileE("lie", "replaced"))
			rc, _ := other.Compressed()
			body, _ := io.ReadAll(rc)
			lies.set(d.String(), body)
			return push(t, reg, "layerlie:latest", img)
		}, "layer"},
		{"layer size that lies", func(t *testing.T) string {
			img := tinyImage(t, []entry{fileE("sized", "x")})
			push(t, reg, "layersize:base", img)
			m := rawManifestOf(t, img)
			m.Layers[0].Size++
			return pushManifest(t, reg, "layersize:latest", m)
		}, "layer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, func(o *Options) { o.Limits = limits })
			ref := tc.ref(t)
			_, err := s.Pull(t.Context(), ref, nil)
			if !errors.Is(err, ErrInvalidImage) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("Pull = %v, want ErrInvalidImage mentioning %s", err, tc.mention)
			}
			if len(s.List()) != 0 || len(layerDirs(t, s)) != 0 {
				t.Errorf("refused image left images %v, layers %v", s.List(), layerDirs(t, s))
			}
			assertTmpEmpty(t, s)
			if _, err := s.Pull(t.Context(), goodRef, nil); err != nil {
				t.Errorf("a good pull after the refused one: %v", err)
			}
		})
	}
}

// A zstd frame asks its decoder for a window of memory; one larger than zstdMaxWindow is refused rather
// than allocated.
func TestDecompressBoundsZstdWindow(t *testing.T) {
	for _, tc := range []struct {
		window int
		ok     bool
	}{{8 << 20, true}, {zstdMaxWindow, true}, {128 << 20, false}} {
		var buf bytes.Buffer
		zw, err := zstd.NewWriter(&buf, zstd.WithWindowSize(tc.window), zstd.WithSingleSegment(false))
		if err != nil {
			t.Fatal(err)
		}
		// More data than the window, so the frame header must declare it.
		if _, err := zw.Write(bytes.Repeat([]byte(randomBytes(t, 1<<10)), (tc.window>>10)+1)); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		r, closeR, err := decompress(bufio.NewReader(&buf))
		if err == nil {
			_, err = io.Copy(io.Discard, r)
			closeR()
		}
		if (err == nil) != tc.ok {
			t.Errorf("window %d: decompress = %v, want ok %t", tc.window, err, tc.ok)
		}
	}
}

func TestLimitsDefaults(t *testing.T) {
	l, err := Limits{LayerSize: 7}.withDefaults()
	if err != nil || l.LayerSize != 7 || l.ImageSize != DefaultMaxImageSize || l.LayerEntries != DefaultMaxLayerEntries ||
		l.ImageEntries != DefaultMaxImageEntries || l.ManifestSize != DefaultMaxManifestSize {
		t.Errorf("withDefaults = %+v, %v", l, err)
	}
	if _, err := (Limits{ImageSize: -1}).withDefaults(); err == nil {
		t.Error("negative limit accepted")
	}
}
