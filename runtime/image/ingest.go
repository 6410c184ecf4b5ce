package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/log"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
)

// layerJobs bounds how many layers of one image download and unpack at once.
const layerJobs = 3

// zstdMaxWindow bounds the window of a zstd layer, and so the memory its decoder needs.
const zstdMaxWindow = 32 << 20

// source is an image on its way into the store, whatever it came from (registry, OCI layout, docker
// archive).
type source struct {
	tags, digests []string  // normalised names to point at the image
	blobs         []rawBlob // small blobs kept verbatim: index, manifest, config
	configDigest  v1.Hash
	config        *v1.ConfigFile
	annotations   map[string]string
	layers        []layerSource
}

type rawBlob struct {
	digest v1.Hash
	data   []byte
}

// layerSource is one layer blob, as stored (gzip, zstd or plain tar; detected from its first bytes).
type layerSource struct {
	digest v1.Hash // blob digest; zero when unknown (docker archives), then computed while reading
	size   int64   // blob size; 0 when unknown
	diffID v1.Hash // digest of the uncompressed tar, from the config
	open   func() (io.ReadCloser, error)
}

// fillFromManifest takes the image whose manifest m (raw bytes mraw, digest digest) and raw config cfgRaw
// its caller has read; layer gives the opener of each of m's layer blobs, as stored.
func (src *source) fillFromManifest(digest v1.Hash, mraw []byte, m *v1.Manifest, cfgRaw []byte,
	layer func(v1.Descriptor) (func() (io.ReadCloser, error), error)) error {
	if int64(len(cfgRaw)) != m.Config.Size {
		return fmt.Errorf("config %s is %d bytes, manifest %s says %d: %w", m.Config.Digest, len(cfgRaw), digest, m.Config.Size, ErrInvalidImage)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(cfgRaw))
	if err != nil {
		return fmt.Errorf("parse config %s: %w: %w", m.Config.Digest, ErrInvalidImage, err)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return fmt.Errorf("manifest %s has %d layers but its config lists %d diff ids: %w",
			digest, len(m.Layers), len(cf.RootFS.DiffIDs), ErrInvalidImage)
	}
	src.blobs = append(src.blobs, rawBlob{digest: digest, data: mraw}, rawBlob{digest: m.Config.Digest, data: cfgRaw})
	src.configDigest, src.config, src.annotations = m.Config.Digest, cf, m.Annotations
	for i, ld := range m.Layers {
		open, err := layer(ld)
		if err != nil {
			return err
		}
		src.layers = append(src.layers, layerSource{digest: ld.Digest, size: ld.Size, diffID: cf.RootFS.DiffIDs[i], open: open})
	}
	return nil
}

// ingest stores src: blobs verified, each layer unpacked once, then one atomic metadata update that adds
// the image (or merges it into the record of the same id) and moves src's names to it.
func (s *Store) ingest(ctx context.Context, src *source) (_ Image, retErr error) {
	if err := src.validate(); err != nil {
		return Image{}, err
	}
	// Pin everything this ingest will reference before looking at what exists, so a concurrent Remove's
	// garbage collection cannot delete a layer between our check and our commit.
	held := &holds{s: s}
	defer func() {
		held.release()
		if retErr == nil {
			return
		}
		// The layers and blobs that landed before the failure belong to no image: a failed pull leaves
		// nothing behind.
		s.mu.Lock()
		trash, err := s.sweepLocked(false)
		s.mu.Unlock()
		s.removeAll(log.G(ctx), trash)
		if err != nil {
			log.G(ctx).WithError(err).Warn("image store: cleaning up after a failed pull")
		}
	}()
	for _, b := range src.blobs {
		held.add(b.digest.String())
	}
	for _, l := range src.layers {
		held.add(l.diffID.String())
		if l.digest != (v1.Hash{}) {
			held.add(l.digest.String())
		}
	}
	for _, b := range src.blobs {
		if err := s.writeBlob(b); err != nil {
			return Image{}, err
		}
	}
	layerBlobs := make([]string, len(src.layers))
	budget := newBudget(s.limits)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(layerJobs)
	for i, l := range src.layers {
		g.Go(func() error {
			d, err := s.ensureLayer(gctx, l, held, budget)
			layerBlobs[i] = d
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return Image{}, err
	}
	// One syncfs makes every unpacked file and blob durable before the metadata that points at them; far
	// cheaper than fsyncing each file of each layer.
	if err := s.syncfs(); err != nil {
		return Image{}, err
	}
	rec := &record{
		ID:          src.configDigest.String(),
		Config:      convertConfig(src.config.Config),
		Annotations: maps.Clone(src.annotations),
		Platform:    platformString(src.config),
	}
	for i, l := range src.layers {
		rec.DiffIDs = append(rec.DiffIDs, l.diffID.String())
		if layerBlobs[i] != "" {
			rec.Blobs = append(rec.Blobs, layerBlobs[i])
		}
		rec.Size += l.size
	}
	for _, b := range src.blobs {
		rec.Blobs = append(rec.Blobs, b.digest.String())
	}
	s.mu.Lock()
	img, trash, err := s.commitLocked(ctx, rec, src)
	s.mu.Unlock()
	s.removeAll(log.G(ctx), trash)
	return img, err
}

func (src *source) validate() error {
	if src.config == nil {
		return fmt.Errorf("image has no config: %w", ErrInvalidImage)
	}
	if src.config.OS != "" && src.config.OS != "linux" {
		return fmt.Errorf("image is for %s, not linux: %w", platformString(src.config), ErrInvalidImage)
	}
	if len(src.config.RootFS.DiffIDs) != len(src.layers) {
		return fmt.Errorf("config lists %d diff ids for %d layers: %w", len(src.config.RootFS.DiffIDs), len(src.layers), ErrInvalidImage)
	}
	for _, l := range src.layers {
		if l.diffID.Algorithm != "sha256" || l.diffID.Hex == "" {
			return fmt.Errorf("layer diff id %q is not a sha256 digest: %w", l.diffID, ErrInvalidImage)
		}
	}
	if src.configDigest.Algorithm != "sha256" {
		return fmt.Errorf("config digest %q is not sha256: %w", src.configDigest, ErrInvalidImage)
	}
	return nil
}

// commitLocked records rec (or merges it into the existing record of the same id), moves the source's
// names to it, drops images that lost their last name and are not retained, and persists.
// Preconditions: s.mu held.
func (s *Store) commitLocked(ctx context.Context, rec *record, src *source) (Image, []string, error) {
	if s.closed {
		return Image{}, nil, errors.New("image store is closed")
	}
	snap := s.snapshotLocked()
	r := s.images[rec.ID]
	if r == nil {
		r = rec
		s.images[r.ID] = r
	} else {
		r.Removed, r.Dangling = false, false
		for _, b := range rec.Blobs {
			if !slices.Contains(r.Blobs, b) {
				r.Blobs = append(r.Blobs, b)
			}
		}
	}
	var orphans []*record
	for _, t := range src.tags {
		if o := s.moveNameLocked(r, t, true); o != nil {
			orphans = append(orphans, o)
		}
	}
	for _, d := range src.digests {
		if o := s.moveNameLocked(r, d, false); o != nil {
			orphans = append(orphans, o)
		}
	}
	for _, o := range orphans {
		if s.retains[o.ID] > 0 {
			o.Dangling = true
		} else {
			delete(s.images, o.ID)
		}
	}
	if err := s.persistLocked(); err != nil {
		s.restoreLocked(snap)
		return Image{}, nil, fmt.Errorf("record image %s: %w", rec.ID, err)
	}
	img := s.toImage(r)
	// The image is stored even if cleaning up what it displaced fails; the next collection retries that.
	trash, err := s.collectLocked()
	if err != nil {
		log.G(ctx).WithError(err).Warn("image store: garbage collection after pull")
	}
	return img, trash, nil
}

// writeBlob stores a small blob after checking it hashes to its digest.
func (s *Store) writeBlob(b rawBlob) error {
	if b.digest.Algorithm != "sha256" {
		return fmt.Errorf("blob digest %q is not sha256: %w", b.digest, ErrInvalidImage)
	}
	sum := sha256.Sum256(b.data)
	if got := hex.EncodeToString(sum[:]); got != b.digest.Hex {
		return fmt.Errorf("blob %s hashes to sha256:%s: %w", b.digest, got, ErrInvalidImage)
	}
	path := s.blobPath(b.digest.String())
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tmp, err := os.CreateTemp(s.tmpDir(), "blob-")
	if err != nil {
		return fmt.Errorf("write blob %s: %w", b.digest, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b.data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write blob %s: %w", b.digest, err)
	}
	return nil
}

// ensureLayer makes sure the layer is unpacked under layers/ and returns the digest of its stored blob.
// The blob is streamed once: hashed and saved as it arrives, decompressed, hashed again (the diffID) and
// unpacked into a private temp dir that is renamed into place only when both digests check out. A layer
// already unpacked is not fetched at all; one whose blob is already stored is unpacked from disk. The
// blob, the tar stream and the files are each bounded by the store's layer limit, the files also by img,
// the budget of the whole pull.
func (s *Store) ensureLayer(ctx context.Context, l layerSource, held *holds, img *budget) (string, error) {
	diffID := l.diffID.String()
	unlock, err := s.keys.lock(ctx, diffID)
	if err != nil {
		return "", err
	}
	defer unlock()
	s.mu.Lock()
	have := s.layers[diffID]
	s.mu.Unlock()
	known := l.digest != (v1.Hash{})
	if have {
		if known {
			return l.digest.String(), nil
		}
		return "", nil
	}

	if l.size > s.limits.LayerSize {
		return "", fmt.Errorf("layer blob %s is %d bytes, more than the limit of %d: %w", l.digest, l.size, s.limits.LayerSize, ErrInvalidImage)
	}
	open, saveBlob := l.open, true
	if known {
		if _, err := os.Stat(s.blobPath(l.digest.String())); err == nil {
			open = func() (io.ReadCloser, error) { return os.Open(s.blobPath(l.digest.String())) }
			saveBlob = false
		}
	}
	rc, err := open()
	if err != nil {
		return "", fmt.Errorf("open layer %s: %w", diffID, contentErr(err))
	}
	defer rc.Close()

	tmpLayer, err := os.MkdirTemp(s.tmpDir(), "layer-")
	if err != nil {
		return "", fmt.Errorf("unpack layer %s: %w", diffID, err)
	}
	landed := false
	defer func() {
		if !landed {
			os.RemoveAll(tmpLayer)
		}
	}()
	blobHash := sha256.New()
	sinks := []io.Writer{blobHash}
	var blobTmp *os.File
	if saveBlob {
		if blobTmp, err = os.CreateTemp(s.tmpDir(), "blob-"); err != nil {
			return "", fmt.Errorf("unpack layer %s: %w", diffID, err)
		}
		defer os.Remove(blobTmp.Name()) // no-op after the rename
		defer blobTmp.Close()
		sinks = append(sinks, blobTmp)
	}
	tooLong := func(what string) func() error {
		return func() error {
			return fmt.Errorf("layer %s: %s is longer than the limit of %d bytes: %w", diffID, what, s.limits.LayerSize, ErrInvalidImage)
		}
	}
	counted := &countingReader{r: &limitReader{r: &ctxReader{ctx: ctx, r: rc}, left: s.limits.LayerSize, err: tooLong("blob")}}
	compressed := bufio.NewReaderSize(io.TeeReader(counted, io.MultiWriter(sinks...)), 1<<16)
	plain, closePlain, err := decompress(compressed)
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer closePlain()
	diffHash := sha256.New()
	tarStream := io.TeeReader(&limitReader{r: plain, left: s.limits.LayerSize, err: tooLong("tar stream")}, diffHash)
	if err := unpack(tarStream, tmpLayer, s.limits, img); err != nil {
		return "", fmt.Errorf("unpack layer %s: %w", diffID, err)
	}
	// The tar end marker may be followed by padding, and the compressed stream by trailing bytes: both
	// belong to the digests.
	if _, err := io.Copy(io.Discard, tarStream); err != nil {
		return "", fmt.Errorf("read layer %s: %w", diffID, err)
	}
	if _, err := io.Copy(io.Discard, compressed); err != nil {
		return "", fmt.Errorf("read layer %s: %w", diffID, err)
	}
	blobDigest := "sha256:" + hex.EncodeToString(blobHash.Sum(nil))
	if known && blobDigest != l.digest.String() {
		return "", fmt.Errorf("layer blob %s hashes to %s: %w", l.digest, blobDigest, ErrInvalidImage)
	}
	if l.size > 0 && counted.n != l.size {
		return "", fmt.Errorf("layer blob %s is %d bytes, manifest says %d: %w", l.digest, counted.n, l.size, ErrInvalidImage)
	}
	if got := "sha256:" + hex.EncodeToString(diffHash.Sum(nil)); got != diffID {
		return "", fmt.Errorf("layer %s uncompresses to %s: %w", diffID, got, ErrInvalidImage)
	}
	if saveBlob {
		held.add(blobDigest)
		if err := blobTmp.Close(); err != nil {
			return "", fmt.Errorf("write layer blob %s: %w", blobDigest, err)
		}
		if err := os.Rename(blobTmp.Name(), s.blobPath(blobDigest)); err != nil {
			return "", fmt.Errorf("write layer blob %s: %w", blobDigest, err)
		}
	}
	if err := os.Rename(tmpLayer, s.layerPath(diffID)); err != nil {
		return "", fmt.Errorf("store layer %s: %w", diffID, err)
	}
	landed = true
	s.mu.Lock()
	s.layers[diffID] = true
	s.mu.Unlock()
	return blobDigest, nil
}

// decompress sniffs the compression of a layer blob from its magic bytes rather than trusting the media
// type, which registries and archives get wrong often enough.
func decompress(r *bufio.Reader) (io.Reader, func(), error) {
	magic, err := r.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("read layer header: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("open gzip layer: %w: %w", ErrInvalidImage, err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		// A window is memory the decoder holds: 32 MiB covers every zstd level short of --ultra and --long,
		// and keeps a hostile frame from making the daemon allocate 512 MiB (the library's default).
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, nil, fmt.Errorf("open zstd layer: %w: %w", ErrInvalidImage, err)
		}
		return zr, zr.Close, nil
	default:
		return r, func() {}, nil
	}
}

func convertConfig(c v1.Config) Config {
	out := Config{
		User: c.User, WorkingDir: c.WorkingDir, StopSignal: c.StopSignal,
		Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, Labels: c.Labels,
	}
	for p := range c.ExposedPorts {
		out.ExposedPorts = append(out.ExposedPorts, p)
	}
	sort.Strings(out.ExposedPorts)
	for v := range c.Volumes {
		out.Volumes = append(out.Volumes, v)
	}
	sort.Strings(out.Volumes)
	return out.clone()
}

func platformString(cf *v1.ConfigFile) string {
	parts := []string{cf.OS, cf.Architecture}
	if cf.Variant != "" {
		parts = append(parts, cf.Variant)
	}
	return strings.Join(parts, "/")
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ctxReader stops a long copy from local disk when the pull is cancelled (network reads already are).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// holds is the set of digests one ingest keeps out of garbage collection until it has committed.
type holds struct {
	s    *Store
	mu   sync.Mutex
	keys []string
}

func (h *holds) add(key string) {
	h.s.mu.Lock()
	h.s.inflight[key]++
	h.s.mu.Unlock()
	h.mu.Lock()
	h.keys = append(h.keys, key)
	h.mu.Unlock()
}

func (h *holds) release() {
	h.mu.Lock()
	keys := h.keys
	h.keys = nil
	h.mu.Unlock()
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	for _, k := range keys {
		if h.s.inflight[k]--; h.s.inflight[k] <= 0 {
			delete(h.s.inflight, k)
		}
	}
}

// keyedLocks serialises work on one digest (so a layer is fetched and unpacked once however many pulls
// want it) while letting different digests proceed in parallel. Waiting honours the context.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{}
	refs int
}

func (k *keyedLocks) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	l := k.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
		return func() {
			<-l.ch
			k.put(key, l)
		}, nil
	case <-ctx.Done():
		k.put(key, l)
		return nil, ctx.Err()
	}
}

func (k *keyedLocks) put(key string, l *keyLock) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(k.m, key)
	}
}
