package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/warmpod/warmpod/integration/testimages"
)

// fuzzLimits keep a fuzzed layer small.
var fuzzLimits = Limits{LayerSize: 1 << 20, ImageSize: 1 << 20, LayerEntries: 256, ImageEntries: 256, ManifestSize: 1 << 20}

// fuzzEntries reads a layer from spec, one entry per line, "TYPE|NAME|LINK|BODY": TYPE is f (file), d
// (dir), l (symlink), h (hardlink), c (char device LINK as "major:minor" is ignored: 1:3), p (FIFO), s
// (sparse file of 1 MiB holding BODY), w (a whiteout: NAME gets ".wh." before its last element), o (an
// opaque marker in dir NAME). Names may be anything; the fuzzer finds the hostile ones.
func fuzzEntries(spec string) []entry {
	var out []entry
	for _, line := range strings.Split(spec, "\n") {
		f := strings.SplitN(line, "|", 4)
		if len(f) < 2 || f[0] == "" {
			continue
		}
		for len(f) < 4 {
			f = append(f, "")
		}
		typ, name, link, body := f[0][0], f[1], f[2], f[3]
		h := tar.Header{Name: name, Linkname: link, Mode: 0o755}
		e := entry{Header: h}
		switch typ {
		case 'f':
			e.Header.Typeflag, e.Body = tar.TypeReg, []byte(body)
		case 'd':
			e.Header.Typeflag = tar.TypeDir
		case 'l':
			e.Header.Typeflag = tar.TypeSymlink
		case 'h':
			e.Header.Typeflag = tar.TypeLink
		case 'c':
			e.Header.Typeflag, e.Header.Devmajor, e.Header.Devminor = tar.TypeChar, 1, 3
		case 'p':
			e.Header.Typeflag = tar.TypeFifo
		case 's':
			e.Body, e.SparseSize = []byte(body), 1<<20
		case 'w':
			dir, base := splitRel(strings.TrimPrefix(name, "/"))
			e.Header.Name, e.Header.Typeflag = filepath.Join(dir, whiteoutPrefix+base), tar.TypeReg
		case 'o':
			e.Header.Name, e.Header.Typeflag = filepath.Join(name, whiteoutOpaque), tar.TypeReg
		default:
			continue
		}
		out = append(out, e)
	}
	return out
}

// FuzzUnpack unpacks layers built from fuzzed entries next to a canary: whatever the names, links and
// whiteouts, unpacking succeeds or fails with ErrInvalidImage, the layer dir stays a directory, and
// nothing beside it (the canary, the parent) changes.
func FuzzUnpack(f *testing.F) {
	requireRoot(f)
	for _, seed := range []string{
		"d|etc/|\nf|etc/passwd||root:x:0:0::/:/bin/sh\nl|etc/link|passwd\nh|etc/hard|etc/passwd",
		"w|etc/passwd\no|var/cache\nf|var/cache/new||x",
		"f|.wh...",
		"d|a/\nf|a/.wh...",
		"l|evil|../canary\nf|evil/escaped||x",
		"l|evil|/\nw|evil/keep",
		"c|null\nh|etc/passwd|null",
		"p|fifo\nh|etc/group|fifo",
		"f|a||file\nd|a/\nf|a/x||x\nl|a|elsewhere",
		"s|sparse||hello",
		"f|../escaped||x\nf|/abs/x||y\nh|x|../../canary/keep",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		entries := fuzzEntries(spec)
		raw, err := testimages.TarBytes(entries)
		if err != nil {
			return // archive/tar refuses the header: no layer to unpack
		}
		base := t.TempDir()
		root, canary := filepath.Join(base, "layer"), filepath.Join(base, "canary")
		for _, d := range []string{root, canary} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(canary, "keep"), []byte("canary"), 0o644); err != nil {
			t.Fatal(err)
		}
		err = unpack(bytes.NewReader(raw), root, fuzzLimits, newBudget(fuzzLimits))
		if err != nil && !errors.Is(err, ErrInvalidImage) {
			t.Fatalf("unpack failed other than with ErrInvalidImage: %v", err)
		}
		if names := dirNames(t, base); !slices.Equal(names, []string{"canary", "layer"}) {
			t.Fatalf("beside the layer: %v", names)
		}
		if names := dirNames(t, canary); !slices.Equal(names, []string{"keep"}) {
			t.Fatalf("canary dir holds %v", names)
		}
		if data, err := os.ReadFile(filepath.Join(canary, "keep")); err != nil || string(data) != "canary" {
			t.Fatalf("canary file: %q, %v", data, err)
		}
		if st, err := os.Lstat(root); err != nil || !st.IsDir() {
			t.Fatalf("layer dir: %v, %v", st, err)
		}
	})
}
