// Command testregistry serves a throwaway registry holding a busybox image built from the host's
// busybox-static, so warmpod can be tried without reaching any real registry:
//
//	testregistry --addr 127.0.0.1:5000
//	crictl pull 127.0.0.1:5000/busybox:latest
//
// Extra images come from `docker save` tarballs or OCI layout directories: --image myapp:v1=/tmp/myapp.tar.
// It prints the refs it serves and runs until SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/warmpod/warmpod/integration/testimages"
)

type imageFlags []string

func (f *imageFlags) String() string     { return strings.Join(*f, ",") }
func (f *imageFlags) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	addr := flag.String("addr", "127.0.0.1:5000", "address to listen on")
	var extra imageFlags
	flag.Var(&extra, "image", "NAME:TAG=PATH: also serve the image in a docker-archive tarball or OCI layout directory (repeatable)")
	flag.Parse()
	if err := run(*addr, extra); err != nil {
		fmt.Fprintln(os.Stderr, "testregistry:", err)
		os.Exit(1)
	}
}

func run(addr string, extra []string) error {
	// Catch the signals before anything is served so a quick Ctrl-C still shuts down cleanly.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)

	busybox, err := testimages.Busybox()
	if err != nil {
		return err
	}
	// The sandbox image a kubelet asks for by default; the pause process itself is never needed here,
	// any long-sleeping command will do.
	pause, err := testimages.Busybox(testimages.WithCmd("sleep", "2147483647"))
	if err != nil {
		return err
	}
	images := map[string]v1.Image{
		"busybox:latest":         busybox,
		"busybox:stable":         busybox,
		"library/busybox:latest": busybox,
		"library/busybox:stable": busybox,
		"pause:3.10":             pause,
	}
	for _, spec := range extra {
		ref, path, ok := strings.Cut(spec, "=")
		if !ok || ref == "" || path == "" {
			return fmt.Errorf("--image %q: want NAME:TAG=PATH", spec)
		}
		img, err := loadImage(path)
		if err != nil {
			return fmt.Errorf("--image %q: %w", spec, err)
		}
		images[ref] = img
	}

	reg, err := testimages.StartRegistry(testimages.WithAddr(addr))
	if err != nil {
		return err
	}
	defer reg.Close()
	refs := make([]string, 0, len(images))
	for ref := range images {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		img := images[ref]
		full, err := reg.Push(ref, img)
		if err != nil {
			return err
		}
		digest, err := img.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("%s\t%s\n", full, digest)
	}
	fmt.Printf("serving on http://%s (Ctrl-C to stop)\n", reg.Addr())
	<-sigs
	return nil
}

// loadImage reads a docker-archive tarball (its first image) or the first image of an OCI layout directory.
func loadImage(path string) (v1.Image, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		var tag *name.Tag
		return tarball.ImageFromPath(path, tag)
	}
	idx, err := layout.ImageIndexFromPath(path)
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.MediaType.IsImage() {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no image in OCI layout %s", path)
}
