package testimages

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// RefNameAnnotation is the OCI index annotation that names an image in an image layout.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteDockerArchive writes a `docker save` style tarball (manifest.json with RepoTags, config and
// uncompressed layer files) holding each image under its tag ("busybox:latest" or a full ref).
func WriteDockerArchive(w io.Writer, images map[string]v1.Image) error {
	refs := make(map[name.Reference]v1.Image, len(images))
	for ref, img := range images {
		tag, err := name.NewTag(ref)
		if err != nil {
			return fmt.Errorf("write docker archive: tag %q: %w", ref, err)
		}
		refs[tag] = img
	}
	if err := tarball.MultiRefWrite(refs, w); err != nil {
		return fmt.Errorf("write docker archive: %w", err)
	}
	return nil
}

// WriteOCILayout writes an OCI image-layout tarball (oci-layout, index.json, blobs/sha256/...). Each value
// is a v1.Image or a v1.ImageIndex, listed in index.json with the key as its ref.name annotation; an empty
// key adds the entry without a name.
func WriteOCILayout(w io.Writer, entries map[string]any) error {
	dir, err := os.MkdirTemp("", "warmpod-oci-layout-")
	if err != nil {
		return fmt.Errorf("write oci layout: %w", err)
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write oci layout: %w", err)
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, ref := range keys {
		var opts []layout.Option
		if ref != "" {
			opts = append(opts, layout.WithAnnotations(map[string]string{RefNameAnnotation: ref}))
		}
		switch o := entries[ref].(type) {
		case v1.Image:
			err = p.AppendImage(o, opts...)
		case v1.ImageIndex:
			err = p.AppendIndex(o, opts...)
		default:
			err = fmt.Errorf("%T is neither an image nor an index", o)
		}
		if err != nil {
			return fmt.Errorf("write oci layout: entry %q: %w", ref, err)
		}
	}
	return tarDir(w, dir)
}

// tarDir writes the regular files and directories under dir, in lexical order with fixed mtimes.
func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: Epoch, Mode: 0o644, Typeflag: tar.TypeReg}
		if d.IsDir() {
			hdr.Name += "/"
			hdr.Mode, hdr.Typeflag = 0o755, tar.TypeDir
			return tw.WriteHeader(hdr)
		}
		hdr.Size = info.Size()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("write oci layout tarball: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write oci layout tarball: %w", err)
	}
	return nil
}
