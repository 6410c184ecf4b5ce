package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const (
	annotationRefName       = "org.opencontainers.image.ref.name"
	annotationContainerdRef = "io.containerd.image.name"
)

// Import stores the images of a `docker save` archive (manifest.json with RepoTags) or an OCI image-layout
// tarball (oci-layout + index.json; names from the io.containerd.image.name or
// org.opencontainers.image.ref.name annotations). A multi-arch index contributes the image for the
// store's platform. The archive is spooled to the store's temp dir first because its entries come in no
// useful order. Each image lands atomically; on an error, images already imported stay.
func (s *Store) Import(ctx context.Context, r io.Reader) ([]Image, error) {
	f, err := os.CreateTemp(s.tmpDir(), "import-")
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := io.Copy(f, &ctxReader{ctx: ctx, r: r}); err != nil {
		return nil, fmt.Errorf("import: spool archive: %w", err)
	}
	// The JSON files read whole from the archive (manifest.json, index.json, manifests, configs) are
	// bounded like a registry's manifests, so a hostile archive cannot make us allocate without limit.
	idx, err := indexTar(f, s.limits.ManifestSize)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	var srcs []*source
	switch {
	case idx.has("manifest.json"):
		srcs, err = dockerArchiveSources(idx)
	case idx.has("oci-layout") && idx.has("index.json"):
		srcs, err = ociLayoutSources(idx, s.platform)
	default:
		err = fmt.Errorf("archive has neither manifest.json (docker save) nor oci-layout and index.json: %w", ErrInvalidImage)
	}
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	out := make([]Image, 0, len(srcs))
	for _, src := range srcs {
		img, err := s.ingest(ctx, src)
		if err != nil {
			return out, fmt.Errorf("import: %w", err)
		}
		out = append(out, img)
	}
	return out, nil
}

func dockerArchiveSources(idx *tarIndex) ([]*source, error) {
	raw, err := idx.read("manifest.json")
	if err != nil {
		return nil, err
	}
	var m tarball.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("parse manifest.json: %w: %w", ErrInvalidImage, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("manifest.json lists no images: %w", ErrInvalidImage)
	}
	srcs := make([]*source, 0, len(m))
	for _, d := range m {
		cfgRaw, err := idx.read(d.Config)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(cfgRaw)
		cfgDigest := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
		cf, err := v1.ParseConfigFile(bytes.NewReader(cfgRaw))
		if err != nil {
			return nil, fmt.Errorf("parse config %s: %w: %w", d.Config, ErrInvalidImage, err)
		}
		if len(cf.RootFS.DiffIDs) != len(d.Layers) {
			return nil, fmt.Errorf("image %s lists %d layers but its config %d diff ids: %w", d.Config, len(d.Layers), len(cf.RootFS.DiffIDs), ErrInvalidImage)
		}
		src := &source{
			blobs:        []rawBlob{{digest: cfgDigest, data: cfgRaw}},
			configDigest: cfgDigest,
			config:       cf,
		}
		for _, t := range d.RepoTags {
			r, err := parseRef(t)
			if err != nil {
				return nil, err
			}
			if r.isDigest {
				return nil, fmt.Errorf("RepoTags entry %q is not a tag: %w", t, ErrInvalidReference)
			}
			src.tags = append(src.tags, r.canonical)
		}
		for i, lp := range d.Layers {
			e, err := idx.lookup(lp)
			if err != nil {
				return nil, err
			}
			src.layers = append(src.layers, layerSource{size: e.size, diffID: cf.RootFS.DiffIDs[i], open: idx.opener(e)})
		}
		srcs = append(srcs, src)
	}
	return srcs, nil
}

func ociLayoutSources(idx *tarIndex, platform v1.Platform) ([]*source, error) {
	raw, err := idx.read("index.json")
	if err != nil {
		return nil, err
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse index.json: %w: %w", ErrInvalidImage, err)
	}
	var srcs []*source
	for _, d := range im.Manifests {
		src := &source{}
		target := d
		switch {
		case d.MediaType.IsIndex():
			nestedRaw, err := idx.blob(d.Digest)
			if err != nil {
				return nil, err
			}
			nested, err := v1.ParseIndexManifest(bytes.NewReader(nestedRaw))
			if err != nil {
				return nil, fmt.Errorf("parse index %s: %w: %w", d.Digest, ErrInvalidImage, err)
			}
			if target, err = pickPlatformDesc(nested.Manifests, platform); err != nil {
				return nil, fmt.Errorf("index %s: %w", d.Digest, err)
			}
			src.blobs = append(src.blobs, rawBlob{digest: d.Digest, data: nestedRaw})
		case d.MediaType.IsImage():
			if d.Platform != nil && !d.Platform.Satisfies(platform) {
				continue
			}
		default:
			continue // artifacts, attestations: nothing to run
		}
		if err := src.fillFromLayout(idx, target); err != nil {
			return nil, err
		}
		if name := layoutRefName(d.Annotations); name != "" {
			r, err := parseRef(name)
			if err != nil {
				return nil, err
			}
			if r.isDigest {
				src.digests = append(src.digests, r.canonical)
			} else {
				src.tags = append(src.tags, r.canonical)
				src.digests = append(src.digests, r.repo()+"@"+d.Digest.String())
			}
		}
		srcs = append(srcs, src)
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("no image for platform %s in index.json: %w", platform.String(), ErrNotFound)
	}
	return srcs, nil
}

// layoutRefName picks the image name from index.json annotations. A ref.name without a repository part
// ("latest", "v1") is only a tag in OCI's own convention; with no base name to attach it to, the image is
// imported unnamed rather than misnamed docker.io/library/latest.
func layoutRefName(a map[string]string) string {
	if n := a[annotationContainerdRef]; n != "" {
		return n
	}
	n := a[annotationRefName]
	if strings.ContainsAny(n, "/:@") {
		return n
	}
	return ""
}

// pickPlatformDesc finds the first image manifest of ds that runs on want (an empty field of want matches
// anything).
func pickPlatformDesc(ds []v1.Descriptor, want v1.Platform) (v1.Descriptor, error) {
	for _, d := range ds {
		if d.MediaType.IsImage() && d.Platform != nil && d.Platform.Satisfies(want) {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("no image for platform %s: %w", want.String(), ErrNotFound)
}

func (src *source) fillFromLayout(idx *tarIndex, d v1.Descriptor) error {
	mraw, err := idx.blob(d.Digest)
	if err != nil {
		return err
	}
	m, err := v1.ParseManifest(bytes.NewReader(mraw))
	if err != nil {
		return fmt.Errorf("parse manifest %s: %w: %w", d.Digest, ErrInvalidImage, err)
	}
	cfgRaw, err := idx.blob(m.Config.Digest)
	if err != nil {
		return err
	}
	return src.fillFromManifest(d.Digest, mraw, m, cfgRaw, func(ld v1.Descriptor) (func() (io.ReadCloser, error), error) {
		e, err := idx.lookup(blobName(ld.Digest))
		if err != nil {
			return nil, err
		}
		return idx.opener(e), nil
	})
}

func blobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// tarIndex gives random access to the regular files of a spooled tar: one pass records where each file's
// data starts, later reads are section reads of the file.
type tarIndex struct {
	f       *os.File
	entries map[string]tarEntry
	maxRead int64 // the largest file read may read whole
}

type tarEntry struct {
	name   string
	offset int64
	size   int64
	link   string // symlink target, resolved relative to the archive root
}

func indexTar(f *os.File, maxRead int64) (*tarIndex, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	// archive/tar reads exactly the header blocks in Next, so the count of bytes consumed when Next returns
	// is the offset of the entry's data.
	cr := &countingReader{r: f}
	tr := tar.NewReader(cr)
	idx := &tarIndex{f: f, entries: map[string]tarEntry{}, maxRead: maxRead}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w: %w", ErrInvalidImage, err)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return nil, err
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old archivers still write TypeRegA
			idx.entries[name] = tarEntry{name: name, offset: cr.n, size: hdr.Size}
		case tar.TypeSymlink:
			// Older `docker save` links a layer shared by two images to the first copy.
			idx.entries[name] = tarEntry{name: name, link: path.Join(path.Dir(name), hdr.Linkname)}
		}
	}
	return idx, nil
}

func (t *tarIndex) has(name string) bool {
	_, ok := t.entries[name]
	return ok
}

func (t *tarIndex) lookup(name string) (tarEntry, error) {
	clean, err := cleanName(name)
	if err != nil {
		return tarEntry{}, err
	}
	for hops := 0; hops < 8; hops++ {
		e, ok := t.entries[clean]
		if !ok {
			return tarEntry{}, fmt.Errorf("archive has no file %q: %w", name, ErrInvalidImage)
		}
		if e.link == "" {
			return e, nil
		}
		if clean, err = cleanName(e.link); err != nil {
			return tarEntry{}, err
		}
	}
	return tarEntry{}, fmt.Errorf("archive file %q: too many symlinks: %w", name, ErrInvalidImage)
}

func (t *tarIndex) opener(e tarEntry) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		return io.NopCloser(io.NewSectionReader(t.f, e.offset, e.size)), nil
	}
}

func (t *tarIndex) read(name string) ([]byte, error) {
	e, err := t.lookup(name)
	if err != nil {
		return nil, err
	}
	if e.size > t.maxRead {
		return nil, fmt.Errorf("archive file %q is %d bytes, more than a manifest or config can be: %w", name, e.size, ErrInvalidImage)
	}
	buf := make([]byte, e.size)
	if _, err := t.f.ReadAt(buf, e.offset); err != nil {
		return nil, fmt.Errorf("read archive file %q: %w", name, err)
	}
	return buf, nil
}

func (t *tarIndex) blob(h v1.Hash) ([]byte, error) {
	if h.Algorithm != "sha256" {
		return nil, fmt.Errorf("blob digest %q is not sha256: %w", h, ErrInvalidImage)
	}
	return t.read(blobName(h))
}
