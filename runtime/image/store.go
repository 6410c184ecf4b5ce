// Package image is warmpod's content-addressed image store: it pulls images from registries (with
// mirrors, auth and platform selection) or imports them from tarballs, keeps manifests and blobs under
// blobs/sha256/<hex>, unpacks every layer exactly once into its own directory (keyed by its diffID and
// shared by all images that use it) ready to be an overlayfs lowerdir, and persists image records so a
// daemon restart sees every image.
//
// Layout under Options.Root:
//
//	lock                  flock held by the one Store using this root
//	images.json           image records, replaced atomically (temp file + rename)
//	blobs/sha256/<hex>    manifests, indexes, configs and layer blobs, verified against their digest
//	layers/sha256/<hex>   unpacked layer keyed by diffID, whiteouts already in overlayfs form
//	tmp/                  downloads and unpacks in progress; emptied by New
//
// Lifecycle of an image record:
//
//	 Pull/Import ──► visible ──Remove──► (not retained) deleted
//	                   │  ▲              (retained)     removed: hidden, kept until the last release
//	retag takes its    │  │ Pull/Import of the same id
//	last name          ▼  │
//	             dangling: visible without names while retained, deleted at the last release
//
// Layers and blobs are deleted once no record (visible or not) refers to them and no ingest in flight is
// about to use them.
package image

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

var (
	// ErrNotFound: no image (or tag, repository, platform) matches the reference. It is of class
	// errdefs.ErrNotFound.
	ErrNotFound = errdefs.ErrNotFound.WithMessage("image not found")
	// ErrInvalidReference: the reference cannot be parsed, or an id prefix is ambiguous. It is of class
	// errdefs.ErrInvalidArgument.
	ErrInvalidReference = errdefs.ErrInvalidArgument.WithMessage("invalid image reference")
	// ErrInvalidImage: the image content is unusable or unsafe (a layer escaping its root, a digest
	// mismatch, a config that does not match its layers). It is of class errdefs.ErrInvalidArgument.
	ErrInvalidImage = errdefs.ErrInvalidArgument.WithMessage("invalid image")
	// ErrStoreInUse: another process holds the store's root.
	ErrStoreInUse = errors.New("image store root in use")
)

// Options configures a Store.
type Options struct {
	// Root holds blobs, unpacked layers and metadata, e.g. /var/lib/warmpod/images. It must be on a
	// filesystem that supports trusted.* xattrs and character devices (for overlayfs whiteouts).
	Root string
	// Mirrors maps a registry host ("docker.io", "registry.k8s.io", "10.0.0.5:5000") to mirror endpoints
	// ("http://127.0.0.1:5000", "https://m.example"), tried in order before the host itself. The scheme
	// decides http or https; an endpoint without one is https.
	Mirrors map[string][]string
	// Insecure lists host[:port] that may be reached over plain HTTP and whose TLS certificates are not
	// verified. Loopback hosts are always allowed plain HTTP.
	Insecure []string
	// ConfigPath is a directory in containerd's hosts layout (/etc/containerd/certs.d): per registry,
	// mirrors with path prefixes, CAs, client certificates, skip_verify (see hosts.go). A registry with a
	// directory there is configured by it alone.
	ConfigPath string
	// AuthFile is a Docker config.json ("auths") whose credentials are used for a registry or mirror when
	// the pull brings none.
	AuthFile string
	// PullProgressTimeout fails a pull that receives nothing for that long (0: never); a pull's progress
	// is logged at debug level.
	PullProgressTimeout time.Duration
	// Platform picks the image from multi-arch indexes; default linux/<host arch>.
	Platform *v1.Platform
	// Limits bounds what one pull or import may read and write.
	Limits Limits
}

// Auth is the credential for one pull, with the fields of CRI's AuthConfig. ServerAddress, when set, limits
// the credential to that registry: endpoints on other hosts (mirrors included) are tried anonymously.
type Auth struct {
	Username, Password, Auth, ServerAddress, IdentityToken, RegistryToken string
}

// Config is the part of an image config that shapes a container.
type Config struct {
	User         string            `json:"user,omitempty"`
	WorkingDir   string            `json:"workingDir,omitempty"`
	StopSignal   string            `json:"stopSignal,omitempty"`
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	Env          []string          `json:"env,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	ExposedPorts []string          `json:"exposedPorts,omitempty"`
	Volumes      []string          `json:"volumes,omitempty"`
}

// Image is a stored image as callers see it; every slice and map is the caller's own copy.
type Image struct {
	ID          string   // "sha256:<config digest>", the id CRI reports everywhere
	RepoTags    []string // normalised, "docker.io/library/busybox:latest"
	RepoDigests []string // "docker.io/library/busybox@sha256:<manifest or index digest>"
	Size        int64    // sum of the layer blob sizes (compressed when pulled)
	Config      Config
	Layers      []string // absolute paths of the unpacked layer dirs, bottom layer first
	Annotations map[string]string
	Pinned      bool
	Platform    string // "linux/amd64"
}

// FsInfo describes the filesystem usage of the store, for CRI ImageFsInfo.
type FsInfo struct {
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
}

// Store is the image store. All methods are safe for concurrent use. One Store owns a root at a time
// (enforced with a lock file); Close releases it.
type Store struct {
	root     string
	platform v1.Platform
	limits   Limits
	net      registries
	lockFile *os.File
	keys     keyedLocks
	log      *log.Entry

	// mu guards the in-memory index and every change to images.json, layers/ and blobs/ other than
	// creating new content (which happens under keys and lands by rename).
	mu       sync.Mutex
	images   map[string]*record // by id
	tags     map[string]string  // normalised tag ref -> id
	digests  map[string]string  // normalised repo@digest -> id
	layers   map[string]bool    // diffIDs unpacked under layers/
	retains  map[string]int     // id -> outstanding Retain calls
	inflight map[string]int     // digests/diffIDs an ingest in progress is about to use
	usage    map[string]usage   // diffID -> disk usage of its layer dir, filled lazily by FsInfo
	closed   bool
}

// New opens (creating if needed) the store at opts.Root, loads its records and cleans what a crash left:
// temp files, and layers or blobs that no record refers to. ctx's logger (log.G) is the store's for work
// no request asks for (GC, releases); a request's work logs through the request's context.
func New(ctx context.Context, opts Options) (*Store, error) {
	if opts.Root == "" {
		return nil, errors.New("new image store: Options.Root is empty")
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("new image store: root %q: %w", opts.Root, err)
	}
	nc, err := netConfigOf(opts)
	if err != nil {
		return nil, fmt.Errorf("new image store: %w", err)
	}
	limits, err := opts.Limits.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("new image store: %w", err)
	}
	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if opts.Platform != nil {
		platform = *opts.Platform
	}
	for _, d := range []string{root, filepath.Join(root, "blobs", "sha256"), filepath.Join(root, "layers", "sha256")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("new image store: %w", err)
		}
	}
	lf, err := lockRoot(root)
	if err != nil {
		return nil, err
	}
	s := &Store{
		root: root, platform: platform, limits: limits, lockFile: lf, keys: keyedLocks{m: map[string]*keyLock{}}, log: log.G(ctx),
		images: map[string]*record{}, tags: map[string]string{}, digests: map[string]string{},
		layers: map[string]bool{}, retains: map[string]int{}, inflight: map[string]int{}, usage: map[string]usage{},
	}
	s.net.set(nc)
	if err := s.open(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("new image store at %s: %w", root, err)
	}
	return s, nil
}

func lockRoot(root string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(root, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("new image store: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("new image store: %s: %w", root, ErrStoreInUse)
		}
		return nil, fmt.Errorf("new image store: lock %s: %w", root, err)
	}
	return f, nil
}

func (s *Store) open() error {
	// Nothing in tmp/ can be in use: we hold the root's lock.
	if err := os.RemoveAll(s.tmpDir()); err != nil {
		return fmt.Errorf("clean temp dir: %w", err)
	}
	if err := os.Mkdir(s.tmpDir(), 0o700); err != nil {
		return fmt.Errorf("create temp dir: %w", err)
	}
	recs, err := loadRecords(s.metadataPath())
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(s.root, "layers", "sha256"))
	if err != nil {
		return fmt.Errorf("list layers: %w", err)
	}
	for _, e := range entries {
		s.layers["sha256:"+e.Name()] = true
	}
	dropped := false
	for _, r := range recs {
		if missing := s.missingLayer(r); missing != "" {
			// Someone deleted a layer dir by hand, or the disk lost it. Forgetting the record lets the
			// next pull fetch the image again instead of handing out a rootfs with a hole in it.
			s.log.WithFields(log.Fields{"image": r.ID, "layer": missing}).Warn("image store: dropping image whose layer is missing")
			dropped = true
			continue
		}
		s.images[r.ID] = r
		s.index(r)
	}
	if dropped {
		// Not fatal: on a full disk the daemon must still start and serve the image removals that free
		// space. The records in memory are right; the next change writes them.
		if err := s.persistLocked(); err != nil {
			s.log.WithError(err).Warn("image store: write records without the dropped images")
		}
	}
	// Only content no record names: removed-but-retained records must wait for the daemon to re-retain
	// what its surviving containers use, and then for GC.
	trash, err := s.sweepLocked(false)
	s.removeAll(s.log, trash)
	return err
}

func (s *Store) missingLayer(r *record) string {
	for _, d := range r.DiffIDs {
		if !s.layers[d] {
			return d
		}
	}
	return ""
}

// Close releases the store's root; the Store must not be used afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.lockFile.Close()
}

// Get returns the image ref names: a full id ("sha256:<hex>"), a bare hex id or a unique prefix of at least
// 12 hex digits, a tag ref ("busybox" is docker.io/library/busybox:latest) or a digest ref.
func (s *Store) Get(ref string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.resolveLocked(ref, false)
	if err != nil {
		return Image{}, err
	}
	return s.toImage(r), nil
}

// List returns every visible image, ordered by id.
func (s *Store) List() []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(s.images))
	for _, r := range s.images {
		if !r.Removed {
			out = append(out, s.toImage(r))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// SetPinned marks the image as pinned (CRI Image.pinned: the kubelet never garbage-collects it), or not.
func (s *Store) SetPinned(ref string, pinned bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.resolveLocked(ref, false)
	if err != nil {
		return err
	}
	if r.Pinned == pinned {
		return nil
	}
	r.Pinned = pinned
	if err := s.persistLocked(); err != nil {
		r.Pinned = !pinned
		return fmt.Errorf("pin image %s: %w", r.ID, err)
	}
	return nil
}

// resolveLocked finds the record ref names. Removed records are found only by full id and only when
// withRemoved is set (Retain during recovery needs them).
// Preconditions: s.mu held.
func (s *Store) resolveLocked(ref string, withRemoved bool) (*record, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return nil, fmt.Errorf("empty reference: %w", ErrInvalidReference)
	}
	hex, explicit := strings.CutPrefix(ref, "sha256:")
	if explicit || isHex(hex) {
		if r := s.images["sha256:"+hex]; r != nil && (!r.Removed || withRemoved) {
			return r, nil
		}
		if isHex(hex) && len(hex) >= 12 && len(hex) < 64 {
			var match *record
			for id, r := range s.images {
				if r.Removed || !strings.HasPrefix(id, "sha256:"+hex) {
					continue
				}
				if match != nil {
					return nil, fmt.Errorf("id prefix %q matches several images: %w", ref, ErrInvalidReference)
				}
				match = r
			}
			if match != nil {
				return match, nil
			}
		}
		if explicit {
			if !isHex(hex) || len(hex) > 64 {
				return nil, fmt.Errorf("image id %q: %w", ref, ErrInvalidReference)
			}
			return nil, fmt.Errorf("image %q: %w", ref, ErrNotFound)
		}
		// A bare hex string is also a valid repository name; fall through to name lookup.
	}
	n, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	id, ok := s.tags[n.canonical]
	if n.isDigest {
		id, ok = s.digests[n.canonical]
	}
	if !ok {
		return nil, fmt.Errorf("image %q: %w", ref, ErrNotFound)
	}
	return s.images[id], nil
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (s *Store) toImage(r *record) Image {
	img := Image{
		ID:          r.ID,
		RepoTags:    append([]string(nil), r.RepoTags...),
		RepoDigests: append([]string(nil), r.RepoDigests...),
		Size:        r.Size,
		Config:      r.Config.clone(),
		Annotations: maps.Clone(r.Annotations),
		Pinned:      r.Pinned,
		Platform:    r.Platform,
	}
	img.Layers = make([]string, len(r.DiffIDs))
	for i, d := range r.DiffIDs {
		img.Layers[i] = s.layerPath(d)
	}
	return img
}

func (c Config) clone() Config {
	c.Entrypoint = append([]string(nil), c.Entrypoint...)
	c.Cmd = append([]string(nil), c.Cmd...)
	c.Env = append([]string(nil), c.Env...)
	c.Labels = maps.Clone(c.Labels)
	c.ExposedPorts = append([]string(nil), c.ExposedPorts...)
	c.Volumes = append([]string(nil), c.Volumes...)
	return c
}

func (s *Store) tmpDir() string       { return filepath.Join(s.root, "tmp") }
func (s *Store) metadataPath() string { return filepath.Join(s.root, "images.json") }

// layerPath is the unpacked dir of a layer; diffID is "sha256:<hex>".
func (s *Store) layerPath(diffID string) string {
	return filepath.Join(s.root, "layers", "sha256", strings.TrimPrefix(diffID, "sha256:"))
}

// blobPath is where a blob lives; digest is "sha256:<hex>".
func (s *Store) blobPath(digest string) string {
	return filepath.Join(s.root, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}
