package image

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
)

// dockerHub is the name the store records for Docker Hub; go-containerregistry calls it index.docker.io
// but CRI clients, the kubelet and every other runtime show docker.io.
const dockerHub = "docker.io"

// imageRef is a parsed, normalised image reference.
type imageRef struct {
	registry  string // "docker.io", "127.0.0.1:5000"
	repoPath  string // "library/busybox"
	tag       string // set for tag refs
	digest    string // set for digest refs, "sha256:<hex>"
	isDigest  bool
	canonical string // "docker.io/library/busybox:latest" or "docker.io/library/busybox@sha256:..."
}

// repo is the normalised repository, "docker.io/library/busybox".
func (r imageRef) repo() string { return r.registry + "/" + r.repoPath }

// parseRef parses ref with go-containerregistry's rules (default registry docker.io, default tag latest,
// "library/" for single-component Docker Hub names) and normalises the registry name.
func parseRef(ref string) (imageRef, error) {
	parsed, err := name.ParseReference(ref)
	if err != nil {
		return imageRef{}, fmt.Errorf("parse image reference %q: %w: %w", ref, ErrInvalidReference, err)
	}
	r := imageRef{registry: normaliseHost(parsed.Context().RegistryStr()), repoPath: parsed.Context().RepositoryStr()}
	switch p := parsed.(type) {
	case name.Digest:
		r.digest, r.isDigest = p.DigestStr(), true
		r.canonical = r.repo() + "@" + r.digest
	case name.Tag:
		r.tag = p.TagStr()
		r.canonical = r.repo() + ":" + r.tag
	default:
		return imageRef{}, fmt.Errorf("parse image reference %q: unknown kind %T: %w", ref, parsed, ErrInvalidReference)
	}
	return r, nil
}

// normaliseHost maps the aliases of Docker Hub to docker.io and leaves other hosts alone.
func normaliseHost(host string) string {
	switch host {
	case name.DefaultRegistry, dockerHub, "registry-1.docker.io":
		return dockerHub
	}
	return host
}
