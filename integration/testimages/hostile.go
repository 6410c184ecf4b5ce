package testimages

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Stage is where a runtime must stop a hostile image.
type Stage int

const (
	// AtPull: the pull fails.
	AtPull Stage = iota
	// AtCreate: the pull succeeds and creating a container of the image fails.
	AtCreate
	// Harmless: pull and create succeed, and what the image tried does no harm (a sparse file that
	// stays sparse, a name that lands inside the layer).
	Harmless
)

func (s Stage) String() string {
	switch s {
	case AtPull:
		return "refused at pull"
	case AtCreate:
		return "refused at create"
	}
	return "harmless"
}

// Hostile is one image of the hostile corpus.
type Hostile struct {
	Name string
	// Ref is where the corpus's registry serves the image.
	Ref string
	// Stage is where the runtime must stop it, and Mentions what its error must name (the entry, the
	// file, the blob).
	Stage    Stage
	Mentions string
}

// HostileOptions shapes the corpus to the runtime under test.
type HostileOptions struct {
	// Canary is a host directory the images aim at through symlinks and hardlinks; a test checks that
	// nothing in it changed.
	Canary string
	// LayerLimit is the runtime's limit on a layer's files: the "huge" images go past it.
	LayerLimit int64
	// ManifestLimit is the runtime's limit on a manifest or config: the oversized ones go past it.
	ManifestLimit int64
}

// HostileCorpus builds and serves images that attack a runtime through what it pulls and reads: path
// traversal out of a layer (".." names, writes through planted symlinks, hardlinks out of the layer or to
// device nodes), whiteouts of "..", "." and nothing, FIFOs and devices where the runtime reads image files
// (/etc/passwd, /etc/group, directly and through links), huge and sparse files, oversized manifests and
// configs, and content that does not match its digest or size. The lies about content need a registry
// that tells them: start the registry WithHandler(corpus.Handler).
type HostileCorpus struct {
	mu   sync.Mutex
	lies map[string][]byte // blob digest -> what to send instead
}

// NewHostileCorpus returns an empty corpus; Push fills it.
func NewHostileCorpus() *HostileCorpus { return &HostileCorpus{lies: map[string][]byte{}} }

// Handler answers the blob requests the corpus lies about and passes every other request on.
func (c *HostileCorpus) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		lie := false
		if i := strings.Index(r.URL.Path, "/blobs/"); i >= 0 {
			c.mu.Lock()
			body, lie = c.lies[r.URL.Path[i+len("/blobs/"):]]
			c.mu.Unlock()
		}
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

func (c *HostileCorpus) lie(digest v1.Hash, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lies[digest.String()] = body
}

// Push builds every image of the corpus, pushes it to reg under hostile/<name> and returns the corpus.
func (c *HostileCorpus) Push(reg *Registry, o HostileOptions) ([]Hostile, error) {
	var out []Hostile
	add := func(name string, stage Stage, mentions string, img v1.Image, err error) error {
		if err != nil {
			return fmt.Errorf("hostile image %s: %w", name, err)
		}
		ref, err := reg.Push("hostile/"+name+":latest", img)
		if err != nil {
			return fmt.Errorf("hostile image %s: %w", name, err)
		}
		out = append(out, Hostile{Name: name, Ref: ref, Stage: stage, Mentions: mentions})
		return nil
	}
	layer := func(name string, stage Stage, mentions string, entries ...Entry) error {
		l, err := LayerFromEntries(entries...)
		if err != nil {
			return fmt.Errorf("hostile image %s: %w", name, err)
		}
		img, err := Busybox(WithLayers(l))
		return add(name, stage, mentions, img, err)
	}
	for _, e := range hostileLayers(o) {
		if err := layer(e.name, e.stage, e.mentions, e.entries...); err != nil {
			return nil, err
		}
	}
	for _, m := range c.hostileMetadata(o) {
		img, err := m.build()
		if err != nil {
			return nil, fmt.Errorf("hostile image %s: %w", m.name, err)
		}
		if m.raw == nil {
			if err := add(m.name, AtPull, m.mentions, img, nil); err != nil {
				return nil, err
			}
			continue
		}
		// The image's blobs go up first; the manifest that lies about them is stored as it is.
		if _, err := reg.Push("hostile/"+m.name+":base", img); err != nil {
			return nil, fmt.Errorf("hostile image %s: %w", m.name, err)
		}
		mf, err := img.Manifest()
		if err != nil {
			return nil, fmt.Errorf("hostile image %s: %w", m.name, err)
		}
		mf = mf.DeepCopy()
		m.raw(mf)
		raw, err := json.Marshal(mf)
		if err != nil {
			return nil, fmt.Errorf("hostile image %s: %w", m.name, err)
		}
		ref, err := reg.PushManifest("hostile/"+m.name+":latest", mf.MediaType, raw)
		if err != nil {
			return nil, fmt.Errorf("hostile image %s: %w", m.name, err)
		}
		out = append(out, Hostile{Name: m.name, Ref: ref, Stage: AtPull, Mentions: m.mentions})
	}
	return out, nil
}

type hostileLayer struct {
	name     string
	stage    Stage
	mentions string
	entries  []Entry
}

func hostileLayers(o HostileOptions) []hostileLayer {
	dir := func(name string) Entry {
		return Entry{Header: tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755}}
	}
	file := func(name, body string) Entry {
		return Entry{Header: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}, Body: []byte(body)}
	}
	whiteout := func(name string) Entry { return Entry{Header: tar.Header{Name: name, Typeflag: tar.TypeReg}} }
	symlink := func(name, target string) Entry {
		return Entry{Header: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}}
	}
	hardlink := func(name, target string) Entry {
		return Entry{Header: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target}}
	}
	node := func(name string, typ byte, major, minor int64) Entry {
		return Entry{Header: tar.Header{Name: name, Typeflag: typ, Mode: 0o666, Devmajor: major, Devminor: minor}}
	}
	sparse := func(name string, size int64) Entry {
		return Entry{Header: tar.Header{Name: name, Mode: 0o644}, Body: []byte("root:x:0:0:root:/root:/bin/sh\n"), SparseSize: size}
	}
	const (
		passwd = "/etc/passwd"
		group  = "/etc/group"
	)
	return []hostileLayer{
		// Path traversal at pull.
		{"whiteout-dotdot", AtPull, ".wh...", []Entry{whiteout(".wh...")}},
		{"whiteout-dotdot-nested", AtPull, ".wh...", []Entry{dir("etc"), whiteout("etc/.wh...")}},
		{"whiteout-dot", AtPull, ".wh..", []Entry{whiteout("etc/.wh..")}},
		{"whiteout-nothing", AtPull, ".wh.", []Entry{whiteout("/.wh.")}},
		{"dotdot-name", AtPull, "..", []Entry{file("../../../../escaped", "x")}},
		{"dotdot-inside-name", AtPull, "..", []Entry{dir("etc"), file("etc/../../escaped", "x")}},
		{"symlink-then-write", AtPull, "symlink", []Entry{symlink("tmp", o.Canary), file("tmp/escaped", "x")}},
		{"relative-symlink-then-write", AtPull, "symlink", []Entry{symlink("up", "../../../../../../.."), file("up/escaped", "x")}},
		{"symlink-then-whiteout", AtPull, "symlink", []Entry{symlink("gone", o.Canary), whiteout("gone/.wh.keep")}},
		{"symlink-then-opaque", AtPull, "symlink", []Entry{symlink("gone", o.Canary), whiteout("gone/.wh..wh..opq")}},
		{"symlink-then-mkdir", AtPull, "symlink", []Entry{symlink("gone", o.Canary), dir("gone/sub")}},
		{"hardlink-outside", AtPull, "links", []Entry{hardlink("stolen", "/etc/shadow")}},
		{"hardlink-dotdot", AtPull, "links", []Entry{hardlink("stolen", "../../../../etc/shadow")}},
		{"hardlink-through-symlink", AtPull, "links through", []Entry{symlink("out", o.Canary), hardlink("stolen", "out/keep")}},
		{"hardlink-to-device", AtPull, "device node", []Entry{node("zero", tar.TypeChar, 1, 5), hardlink("etc/passwd", "zero")}},
		{"hardlink-to-fifo", AtPull, "device node", []Entry{node("pipe", tar.TypeFifo, 0, 0), hardlink("etc/group", "pipe")}},
		{"long-name", AtPull, "longer than", []Entry{file(strings.Repeat("d/", 2100)+"f", "x")}},
		{"huge-sparse-file", AtPull, "huge", []Entry{sparse("huge", 2*o.LayerLimit)}},

		// Files the runtime reads from the image on the host, at create.
		{"passwd-fifo", AtCreate, passwd, []Entry{node("etc/passwd", tar.TypeFifo, 0, 0)}},
		{"group-fifo", AtCreate, group, []Entry{node("etc/group", tar.TypeFifo, 0, 0)}},
		{"passwd-dev-zero", AtCreate, passwd, []Entry{node("etc/passwd", tar.TypeChar, 1, 5)}},
		{"group-dev-tty", AtCreate, group, []Entry{node("etc/group", tar.TypeChar, 5, 0)}},
		{"passwd-block-device", AtCreate, passwd, []Entry{node("etc/passwd", tar.TypeBlock, 7, 0)}},
		{"passwd-symlink-to-fifo", AtCreate, passwd, []Entry{node("pipe", tar.TypeFifo, 0, 0), symlink("etc/passwd", "/pipe")}},
		{"group-symlink-to-device", AtCreate, group, []Entry{node("zero", tar.TypeChar, 1, 5), symlink("etc/group", "../zero")}},
		{"passwd-directory", AtCreate, passwd, []Entry{dir("etc/passwd")}},
		{"passwd-huge-sparse", AtCreate, passwd, []Entry{sparse("etc/passwd", 1<<30)}},
		{"passwd-symlink-loop", AtCreate, passwd, []Entry{symlink("etc/passwd", "passwd")}},

		// Tried, and harmless.
		{"passwd-symlink-to-host", Harmless, "", []Entry{symlink("etc/passwd", "/etc/shadow")}},
		{"absolute-names", Harmless, "", []Entry{file("/opt/absolute", "inside the layer")}},
		{"sparse-file", Harmless, "", []Entry{sparse("sparse", 1<<30)}},
		{"zeros-file", Harmless, "", []Entry{{Header: tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644}, Body: make([]byte, 64<<20)}}},
	}
}

type hostileMeta struct {
	name, mentions string
	build          func() (v1.Image, error)
	// raw, when set, edits the manifest pushed in place of the image's own.
	raw func(*v1.Manifest)
}

func (c *HostileCorpus) hostileMetadata(o HostileOptions) []hostileMeta {
	labelled := func(labels map[string]string) func() (v1.Image, error) {
		return func() (v1.Image, error) { return Busybox(WithLabels(labels)) }
	}
	return []hostileMeta{
		{name: "manifest-oversized", mentions: "manifest", build: func() (v1.Image, error) {
			return Busybox(WithAnnotations(map[string]string{"pad": strings.Repeat("m", int(o.ManifestLimit))}))
		}},
		{name: "config-oversized", mentions: "config", build: labelled(map[string]string{"pad": strings.Repeat("c", int(o.ManifestLimit))})},
		{name: "config-size-unknown", mentions: "config", build: labelled(map[string]string{"case": "size-unknown"}),
			raw: func(m *v1.Manifest) { m.Config.Size = -1 }},
		{name: "config-size-short", mentions: "config", build: labelled(map[string]string{"case": "size-short"}),
			raw: func(m *v1.Manifest) { m.Config.Size -= 8 }},
		{name: "config-size-huge", mentions: "config", build: labelled(map[string]string{"case": "size-huge"}),
			raw: func(m *v1.Manifest) { m.Config.Size = 1 << 40 }},
		{name: "config-digest-lie", mentions: "config", build: func() (v1.Image, error) {
			img, err := Busybox(WithLabels(map[string]string{"case": "config-lie"}))
			if err != nil {
				return nil, err
			}
			name, err := img.ConfigName()
			if err != nil {
				return nil, err
			}
			raw, err := img.RawConfigFile()
			if err != nil {
				return nil, err
			}
			c.lie(name, bytes.Replace(raw, []byte("config-lie"), []byte("config-LIE"), 1))
			return img, nil
		}},
		{name: "layer-digest-lie", mentions: "layer", build: func() (v1.Image, error) {
			return c.lyingLayer("original", "replaced")
		}},
		{name: "layer-size-lie", mentions: "layer", build: func() (v1.Image, error) {
			l, err := LayerFromEntries(Entry{Header: tar.Header{Name: "sized", Typeflag: tar.TypeReg, Mode: 0o644}, Body: []byte("x")})
			if err != nil {
				return nil, err
			}
			return Busybox(WithLayers(l))
		}, raw: func(m *v1.Manifest) { m.Layers[len(m.Layers)-1].Size++ }},
		{name: "diffid-lie", mentions: "uncompresses to", build: func() (v1.Image, error) {
			l, err := LayerFromEntries(Entry{Header: tar.Header{Name: "diff", Typeflag: tar.TypeReg, Mode: 0o644}, Body: []byte("x")})
			if err != nil {
				return nil, err
			}
			img, err := Busybox(WithLayers(l))
			if err != nil {
				return nil, err
			}
			cf, err := img.ConfigFile()
			if err != nil {
				return nil, err
			}
			cf = cf.DeepCopy()
			cf.RootFS.DiffIDs[len(cf.RootFS.DiffIDs)-1] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 63) + "1"}
			return mutate.ConfigFile(img, cf)
		}},
	}
}

// lyingLayer is a busybox image with a top layer of one file holding was; the registry sends, for that
// layer's blob, a layer holding is instead.
func (c *HostileCorpus) lyingLayer(was, is string) (v1.Image, error) {
	entry := func(body string) Entry {
		return Entry{Header: tar.Header{Name: "lie", Typeflag: tar.TypeReg, Mode: 0o644}, Body: []byte(body)}
	}
	l, err := LayerFromEntries(entry(was))
	if err != nil {
		return nil, err
	}
	other, err := LayerFromEntries(entry(is))
	if err != nil {
		return nil, err
	}
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	rc, err := other.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	body, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	c.lie(d, body)
	return Busybox(WithLayers(l))
}
