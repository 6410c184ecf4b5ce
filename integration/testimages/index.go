package testimages

import (
	"fmt"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Index builds a multi-arch index holding each image under its platform, keyed "os/arch[/variant]" as
// v1.ParsePlatform reads it ("linux/amd64", "linux/arm64/v8"); v1.Platform itself holds slices and cannot be
// a map key. Entries are ordered by platform so the index digest is reproducible. The index is a Docker
// manifest list when the images use Docker media types and an OCI index otherwise.
func Index(images map[string]v1.Image) (v1.ImageIndex, error) {
	if len(images) == 0 {
		return nil, fmt.Errorf("build index: no images")
	}
	keys := make([]string, 0, len(images))
	for k := range images {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var idx v1.ImageIndex = empty.Index
	docker := true
	adds := make([]mutate.IndexAddendum, 0, len(images))
	for _, key := range keys {
		img := images[key]
		p, err := v1.ParsePlatform(key)
		if err == nil && (p.OS == "" || p.Architecture == "") {
			err = fmt.Errorf("want os/arch[/variant]")
		}
		if err != nil {
			return nil, fmt.Errorf("build index: platform %q: %w", key, err)
		}
		mt, err := img.MediaType()
		if err != nil {
			return nil, fmt.Errorf("build index: media type of %s image: %w", p, err)
		}
		docker = docker && mt == types.DockerManifestSchema2
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{MediaType: mt, Platform: p}})
	}
	if docker {
		idx = mutate.IndexMediaType(idx, types.DockerManifestList)
	}
	return mutate.AppendManifests(idx, adds...), nil
}

// Digest is the digest of an image's manifest or of an index, obj being a v1.Image or a v1.ImageIndex.
func Digest(obj any) (string, error) {
	var (
		h   v1.Hash
		err error
	)
	switch o := obj.(type) {
	case v1.Image:
		h, err = o.Digest()
	case v1.ImageIndex:
		h, err = o.Digest()
	default:
		return "", fmt.Errorf("%T is neither an image nor an index", obj)
	}
	if err != nil {
		return "", fmt.Errorf("digest: %w", err)
	}
	return h.String(), nil
}
