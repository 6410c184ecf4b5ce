package main

import (
	"fmt"
	"io"
	"log"
	"sort"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/warmpod/warmpod/integration/testimages"
)

// servedImages is what the run's registry holds.
type servedImages struct {
	reg *testimages.Registry
	// hosts are the upstream registries the images are named on; the daemon mirrors each to reg.
	hosts []string
	// digests maps each served ref, as critest names it, to the digest of its manifest (or index).
	digests map[string]string
}

// serveImages builds critest's images from the busybox at busybox and pushes each to a fresh registry on a
// loopback port, at its repository path without the registry host: registry.k8s.io/pause:3.9 and
// k8s.gcr.io/pause:3.9 both become pause:3.9, which is right, as they are one image upstream too.
func serveImages(busybox string, logOut io.Writer) (*servedImages, error) {
	standalone, err := testimages.StandaloneShell(busybox)
	if err != nil {
		return nil, err
	}
	if standalone {
		// Its shell would run `ls` where /bin/ls is masked (the MaskedPaths spec), and it renames the
		// processes it runs after their applet (the nginx look-alike's must be named nginx).
		return nil, fmt.Errorf("%s has a standalone shell (busybox-static?); the test images need a busybox whose shell executes applets as files, such as Debian's busybox package", busybox)
	}
	imgs, err := testimages.CritestImages(busybox)
	if err != nil {
		return nil, err
	}
	reg, err := testimages.StartRegistry(testimages.WithLogger(log.New(logOut, "registry: ", log.LstdFlags)))
	if err != nil {
		return nil, err
	}
	s := &servedImages{reg: reg, digests: map[string]string{}}
	hosts := map[string]bool{}
	paths := map[string]string{} // registry path -> the ref that claimed it
	for _, img := range imgs {
		ref, err := name.ParseReference(img.Ref, name.StrictValidation)
		if err != nil {
			_ = reg.Close()
			return nil, fmt.Errorf("image ref %q: %w", img.Ref, err)
		}
		host := ref.Context().RegistryStr()
		if host == name.DefaultRegistry {
			host = "docker.io" // the name the daemon's mirror table uses
		}
		hosts[host] = true
		path := ref.Context().RepositoryStr() + ":" + ref.Identifier()
		d, err := testimages.Digest(img.Object)
		if err != nil {
			_ = reg.Close()
			return nil, err
		}
		if prev, ok := paths[path]; ok && s.digests[prev] != d {
			_ = reg.Close()
			return nil, fmt.Errorf("%s and %s would share registry path %s but differ", prev, img.Ref, path)
		}
		paths[path] = img.Ref
		if _, err := reg.Push(path, img.Object); err != nil {
			_ = reg.Close()
			return nil, err
		}
		s.digests[img.Ref] = d
	}
	for h := range hosts {
		s.hosts = append(s.hosts, h)
	}
	sort.Strings(s.hosts)
	return s, nil
}
