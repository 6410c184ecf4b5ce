// Package testimages builds the container images that warmpod's tests and demos run, without any registry:
// a busybox image made from Debian's busybox-static binary, arbitrary tar layers, multi-arch indexes, an
// in-process registry to serve them, and docker-archive / OCI-layout tarballs for import tests.
//
// Everything it builds is deterministic (fixed mtimes, sorted entries), so an image built twice has the
// same digests and tests can compare image ids across runs.
package testimages

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Epoch is the mtime of every entry the package writes (unless an Entry says otherwise) and the image
// creation time, so that digests do not depend on when a test ran.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Entry is one raw tar entry of a layer. Header is written as given (Name, Typeflag, Linkname, Mode, Uid,
// Gid, Devmajor/Devminor, PAXRecords ...); Size is set from Body and a zero ModTime becomes Epoch. Tests use
// raw entries to build layers that no well-behaved builder would: whiteouts, `..` names, links out of
// the root.
type Entry struct {
	Header tar.Header
	Body   []byte
	// SparseSize, when set, makes the entry an old-GNU sparse file (type 'S', which archive/tar reads but
	// cannot write) of that logical size: Body is its data at offset 0, the rest a hole.
	SparseSize int64
}

// File is the content and metadata of a file added with WithFile. Mode carries the type too:
// os.ModeDir for a directory, os.ModeSymlink for a symlink to Target; anything else is a regular file.
type File struct {
	Content []byte
	Mode    os.FileMode
	UID     int
	GID     int
	Target  string
}

// LayerFromEntries builds a gzip-compressed layer holding exactly the given entries, in order.
func LayerFromEntries(entries ...Entry) (v1.Layer, error) {
	raw, err := TarBytes(entries)
	if err != nil {
		return nil, err
	}
	return layerFromTar(raw)
}

// layerFromTar wraps an uncompressed tar stream as a layer; the compressed form is computed once and kept,
// so digests and pushes do not recompress it.
func layerFromTar(raw []byte) (v1.Layer, error) {
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("build layer: %w", err)
	}
	return l, nil
}

// TarBytes writes entries, in order, as an uncompressed tar stream: each Header as given, with Size set
// from Body, a zero ModTime made Epoch, and the PAX format where PAXRecords are set and no format is.
func TarBytes(entries []Entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := range entries {
		if entries[i].SparseSize > 0 {
			// Between entries the writer has nothing buffered once flushed: the raw entry goes straight
			// into the stream.
			if err := tw.Flush(); err != nil {
				return nil, fmt.Errorf("write tar: %w", err)
			}
			if err := writeGNUSparse(&buf, entries[i]); err != nil {
				return nil, err
			}
			continue
		}
		hdr := entries[i].Header
		hdr.Size = int64(len(entries[i].Body))
		if hdr.ModTime.IsZero() {
			hdr.ModTime = Epoch
		}
		if hdr.Format == tar.FormatUnknown && len(hdr.PAXRecords) > 0 {
			hdr.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return nil, fmt.Errorf("write tar header %q: %w", hdr.Name, err)
		}
		if _, err := tw.Write(entries[i].Body); err != nil {
			return nil, fmt.Errorf("write tar body %q: %w", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	return buf.Bytes(), nil
}

// writeGNUSparse writes e as an old-GNU sparse entry: one data fragment (Body at offset 0) and, as GNU
// tar writes it, an empty fragment at the end of the file that makes the rest a hole.
func writeGNUSparse(w *bytes.Buffer, e Entry) error {
	if len(e.Header.Name) > 100 {
		return fmt.Errorf("sparse entry %q: name too long for a GNU header", e.Header.Name)
	}
	if int64(len(e.Body)) > e.SparseSize {
		return fmt.Errorf("sparse entry %q: %d bytes of data in a file of %d", e.Header.Name, len(e.Body), e.SparseSize)
	}
	var blk [512]byte
	// A number is octal, NUL-terminated, where it fits; else GNU's base-256 (sizes past 8 GiB).
	octal := func(b []byte, v int64) {
		if digits := fmt.Sprintf("%0*o", len(b)-1, v); len(digits) < len(b) {
			copy(b, digits)
			return
		}
		for i := len(b) - 1; i > 0; i-- {
			b[i] = byte(v)
			v >>= 8
		}
		b[0] = 0x80
	}
	mtime := e.Header.ModTime
	if mtime.IsZero() {
		mtime = Epoch
	}
	copy(blk[0:100], e.Header.Name)
	octal(blk[100:108], e.Header.Mode&0o7777)
	octal(blk[108:116], int64(e.Header.Uid))
	octal(blk[116:124], int64(e.Header.Gid))
	octal(blk[124:136], int64(len(e.Body)))
	octal(blk[136:148], mtime.Unix())
	blk[156] = tar.TypeGNUSparse
	copy(blk[257:265], "ustar  \x00")
	// The sparse map: {0, len(Body)}, {SparseSize, 0}.
	octal(blk[386:398], 0)
	octal(blk[398:410], int64(len(e.Body)))
	octal(blk[410:422], e.SparseSize)
	octal(blk[422:434], 0)
	octal(blk[483:495], e.SparseSize)
	copy(blk[148:156], "        ")
	sum := 0
	for _, c := range blk {
		sum += int(c)
	}
	copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
	w.Write(blk[:])
	w.Write(e.Body)
	if pad := len(e.Body) % 512; pad != 0 {
		w.Write(make([]byte, 512-pad))
	}
	return nil
}

// filesLayer turns path -> File into a layer, creating missing parent directories (0755 root:root) and
// writing entries in path order so the result is reproducible.
func filesLayer(files map[string]File) (v1.Layer, error) {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	t := newTree()
	for _, p := range paths {
		name := strings.TrimPrefix(path.Clean("/"+p), "/")
		if name == "" {
			return nil, fmt.Errorf("file path %q names the root", p)
		}
		t.add(fileEntry(name, files[p]))
	}
	return t.layer()
}

func fileEntry(name string, f File) Entry {
	hdr := tar.Header{Name: name, Mode: int64(f.Mode.Perm()), Uid: f.UID, Gid: f.GID}
	if f.Mode&os.ModeSetuid != 0 {
		hdr.Mode |= 0o4000
	}
	if f.Mode&os.ModeSetgid != 0 {
		hdr.Mode |= 0o2000
	}
	if f.Mode&os.ModeSticky != 0 {
		hdr.Mode |= 0o1000
	}
	switch {
	case f.Mode&os.ModeDir != 0:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		return Entry{Header: hdr}
	case f.Mode&os.ModeSymlink != 0:
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = f.Target
		hdr.Mode = 0o777
		return Entry{Header: hdr}
	default:
		if f.Mode.Perm() == 0 && f.Mode&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) == 0 {
			hdr.Mode = 0o644
		}
		hdr.Typeflag = tar.TypeReg
		return Entry{Header: hdr, Body: f.Content}
	}
}

// parents lists the ancestors of a slash-separated relative path, outermost first ("a/b/c" -> a, a/b).
func parents(name string) []string {
	var out []string
	for i := 0; i < len(name); i++ {
		if name[i] == '/' {
			out = append(out, name[:i])
		}
	}
	return out
}
