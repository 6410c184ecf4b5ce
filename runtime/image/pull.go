package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Pull fetches ref (a tag or digest reference) for the store's platform and returns the stored image. The
// registry's mirrors are tried in order, then the registry itself; the first endpoint that delivers the
// whole image wins. A tag that now names a different image moves to it. An error wraps ErrNotFound when
// the last endpoint tried (the registry itself) does not have the tag, repository or platform, and
// ErrInvalidReference when ref does not parse.
func (s *Store) Pull(ctx context.Context, ref string, auth *Auth) (Image, error) {
	r, err := parseRef(ref)
	if err != nil {
		return Image{}, err
	}
	var (
		failures []string
		last     error
	)
	// One configuration for the whole pull, even if it is replaced meanwhile.
	nc := s.net.get()
	eps, err := nc.resolveEndpoints(r.registry)
	if err != nil {
		return Image{}, fmt.Errorf("pull %q: %w", ref, err)
	}
	w := newPullWatch(ctx, r.canonical, nc.progressTimeout)
	defer w.stop()
	ctx = w.ctx
	for _, ep := range eps {
		// A host without the resolve capability serves content by digest only.
		if ep.noResolve && !r.isDigest {
			continue
		}
		img, err := s.pullFrom(ctx, nc, w, ep, r, auth)
		if err == nil {
			return img, nil
		}
		if ctx.Err() != nil {
			return Image{}, fmt.Errorf("pull %q from %s: %w", ref, ep.display(), w.err())
		}
		failures = append(failures, fmt.Sprintf("%s: %v", ep.display(), err))
		last = err
	}
	if last == nil {
		return Image{}, fmt.Errorf("pull %q: no configured host may resolve a tag: %w", ref, ErrNotFound)
	}
	if isNotFound(last) {
		return Image{}, fmt.Errorf("pull %q: %w: %s", ref, ErrNotFound, strings.Join(failures, "; "))
	}
	if len(failures) == 1 {
		return Image{}, fmt.Errorf("pull %q: %w", ref, last)
	}
	return Image{}, fmt.Errorf("pull %q: %w (earlier endpoints: %s)", ref, last, strings.Join(failures[:len(failures)-1], "; "))
}

func (s *Store) pullFrom(ctx context.Context, nc *netConfig, w *pullWatch, ep endpoint, r imageRef, auth *Auth) (Image, error) {
	ref, err := ep.reference(r)
	if err != nil {
		return Image{}, err
	}
	creds := authenticator(auth, ep.host)
	if creds == authn.Anonymous {
		// No credential from the caller for this host: the node's own, if it has one.
		if creds, err = nc.fileAuthenticator(ep.host); err != nil {
			return Image{}, err
		}
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(creds),
		remote.WithTransport(w.wrap(&manifestLimit{base: nc.transport(ep), max: s.limits.ManifestSize})),
		remote.WithPlatform(s.platform),
		remote.WithUserAgent("warmpod"),
	}
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return Image{}, fmt.Errorf("fetch manifest: %w", contentErr(err))
	}
	src := &source{}
	var img v1.Image
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return Image{}, fmt.Errorf("read index: %w", contentErr(err))
		}
		child, err := pickPlatform(idx, s.platform)
		if err != nil {
			return Image{}, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		if img, err = idx.Image(child.Digest); err != nil {
			return Image{}, fmt.Errorf("read image %s of index %s: %w", child.Digest, desc.Digest, contentErr(err))
		}
		src.blobs = append(src.blobs, rawBlob{digest: desc.Digest, data: desc.Manifest})
	case desc.MediaType.IsImage():
		if img, err = desc.Image(); err != nil {
			return Image{}, fmt.Errorf("read image: %w", contentErr(err))
		}
	default:
		return Image{}, fmt.Errorf("manifest media type %q is not supported: %w", desc.MediaType, ErrInvalidImage)
	}
	if r.isDigest {
		src.digests = []string{r.canonical}
	} else {
		src.tags = []string{r.canonical}
		src.digests = []string{r.repo() + "@" + desc.Digest.String()}
	}
	if err := src.fillFromImage(img, s.limits); err != nil {
		return Image{}, err
	}
	return s.ingest(ctx, src)
}

// pickPlatform finds the first manifest of idx that runs on want (an empty field of want matches anything).
func pickPlatform(idx v1.ImageIndex, want v1.Platform) (v1.Descriptor, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("read index: %w", contentErr(err))
	}
	return pickPlatformDesc(m.Manifests, want)
}

// fillFromImage takes the manifest, config and layers of img (a registry or layout image whose layers
// are read compressed, as stored). The config's size in the manifest is checked against the limit before
// the config is fetched: go-containerregistry reads exactly that many bytes (or, for a size of -1, all
// the registry sends) and checks them against the digest.
func (src *source) fillFromImage(img v1.Image, lim Limits) error {
	rawManifest, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("read manifest: %w", contentErr(err))
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("digest manifest: %w", err)
	}
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("parse manifest: %w: %w", ErrInvalidImage, err)
	}
	if m.Config.Size <= 0 || m.Config.Size > lim.ManifestSize {
		return fmt.Errorf("manifest %s gives its config %s a size of %d bytes, want 1 to %d: %w",
			digest, m.Config.Digest, m.Config.Size, lim.ManifestSize, ErrInvalidImage)
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("read config %s: %w", m.Config.Digest, contentErr(err))
	}
	return src.fillFromManifest(digest, rawManifest, m, rawConfig, func(ld v1.Descriptor) (func() (io.ReadCloser, error), error) {
		l, err := img.LayerByDigest(ld.Digest)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", ld.Digest, err)
		}
		return l.Compressed, nil
	})
}

// isNotFound says whether a registry answered that the repository, tag or manifest does not exist (or the
// index has no image for our platform).
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrNotFound) {
		return true
	}
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	if terr.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range terr.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}
