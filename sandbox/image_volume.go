package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/warmpod/warmpod/runtime/image"
	"github.com/warmpod/warmpod/runtime/oci"
)

// layerMounter mounts an image's layers read-only; it is the OS seam of imageVolumes.
type layerMounter interface {
	// mount makes target a read-only view of layers (bottom layer first).
	mount(layers []string, target string) error
	unmount(target string) error
	// mounted reports whether something is mounted at target.
	mounted(target string) (bool, error)
}

// imageVolumes mounts the images containers use as volumes (KEP-4639): one read-only view of an image's
// layers per pod and image, shared by every container of the pod that mounts the image and kept until the
// last of them is gone. Because the view's path depends on the pod and the image only, a container's spec
// is the same from one generation to the next, and a reset can still use the pre-created generation.
//
// A view holds the image's layers (Images.Retain) for as long as it is mounted.
type imageVolumes struct {
	dir    string // <state>/image-volumes/<pod id>/<image id hex>
	images Images
	mnt    layerMounter

	mu   sync.Mutex
	vols map[string]*imageVolume // by path
}

type imageVolume struct {
	refs    int
	release func()
}

func newImageVolumes(stateDir string, images Images, mnt layerMounter) *imageVolumes {
	return &imageVolumes{dir: filepath.Join(stateDir, "image-volumes"), images: images, mnt: mnt, vols: map[string]*imageVolume{}}
}

func (v *imageVolumes) path(podID, imageID string) string {
	return filepath.Join(v.dir, podID, strings.TrimPrefix(imageID, "sha256:"))
}

// resolve mounts the image volumes among mounts for a container of pod podID. It returns the mounts with
// each image volume's HostPath replaced by its view (or the sub path in it) for the spec, the mounts with
// each image's id recorded for the container's metadata, and a func that lets go of the views.
func (v *imageVolumes) resolve(podID string, mounts []oci.Mount) (forSpec, recorded []oci.Mount, release func(), err error) {
	forSpec = append([]oci.Mount(nil), mounts...)
	recorded = append([]oci.Mount(nil), mounts...)
	var held []string
	releaseHeld := func() {
		for _, p := range held {
			v.put(p)
		}
	}
	defer func() {
		if err != nil {
			releaseHeld()
		}
	}()
	for i, m := range mounts {
		if !m.Image {
			continue
		}
		img, err := v.images.Get(m.HostPath)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("image %q of the volume at %s: %w", m.HostPath, m.ContainerPath, err)
		}
		p, err := v.get(podID, &img)
		if err != nil {
			return nil, nil, nil, err
		}
		held = append(held, p)
		src := p
		if m.ImageSubPath != "" {
			if src, err = securejoin.SecureJoin(p, m.ImageSubPath); err != nil {
				return nil, nil, nil, fmt.Errorf("sub path %q of image %q: %w", m.ImageSubPath, m.HostPath, err)
			}
			if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
				return nil, nil, nil, fmt.Errorf("sub path %q does not exist in image %q: %w", m.ImageSubPath, m.HostPath, errdefs.ErrInvalidArgument)
			} else if err != nil {
				return nil, nil, nil, fmt.Errorf("sub path %q of image %q: %w", m.ImageSubPath, m.HostPath, err)
			}
		}
		forSpec[i].HostPath = src
		recorded[i].ImageID = img.ID
	}
	return forSpec, recorded, releaseHeld, nil
}

// adopt takes a reference on the views of the image volumes a recovered container records, mounting any
// that a reboot of the host took away.
func (v *imageVolumes) adopt(podID string, mounts []oci.Mount) (release func(), err error) {
	var held []string
	release = func() {
		for _, p := range held {
			v.put(p)
		}
	}
	for _, m := range mounts {
		if !m.Image || m.ImageID == "" {
			continue
		}
		img, err := v.images.Get(m.ImageID)
		if err != nil {
			release()
			return nil, fmt.Errorf("image %s of the volume at %s: %w", m.ImageID, m.ContainerPath, err)
		}
		p, err := v.get(podID, &img)
		if err != nil {
			release()
			return nil, err
		}
		held = append(held, p)
	}
	return release, nil
}

// get takes a reference on the view of img for pod podID, mounting it first if it is the first.
func (v *imageVolumes) get(podID string, img *image.Image) (string, error) {
	p := v.path(podID, img.ID)
	v.mu.Lock()
	defer v.mu.Unlock()
	if vol, ok := v.vols[p]; ok {
		vol.refs++
		return p, nil
	}
	release, err := v.images.Retain(img.ID)
	if err != nil {
		return "", fmt.Errorf("hold image %s of a volume: %w", img.ID, err)
	}
	if err := v.mountView(p, img.Layers); err != nil {
		release()
		return "", err
	}
	v.vols[p] = &imageVolume{refs: 1, release: release}
	return p, nil
}

// mountView mounts layers at p, unless a daemon before this one already did.
// The pod's directory of views is root's alone (0700): a view shows the
// image's files, setuid binaries included, and host users must not reach
// it. Containers need not: the runtime opens bind mount sources as host root.
func (v *imageVolumes) mountView(p string, layers []string) error {
	podDir := filepath.Dir(p)
	if err := os.MkdirAll(podDir, 0o700); err != nil {
		return fmt.Errorf("create image volume dir: %w", err)
	}
	// A daemon before this one may have made the directory open.
	if err := os.Chmod(podDir, 0o700); err != nil {
		return fmt.Errorf("close image volume dir: %w", err)
	}
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create image volume dir: %w", err)
	}
	if done, err := v.mnt.mounted(p); err != nil {
		return fmt.Errorf("image volume %s: %w", p, err)
	} else if done {
		return nil
	}
	if err := v.mnt.mount(layers, p); err != nil {
		_ = os.Remove(p)
		return fmt.Errorf("mount image volume at %s: %w", p, err)
	}
	return nil
}

// put drops a reference taken by get; the last one unmounts the view.
func (v *imageVolumes) put(p string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	vol, ok := v.vols[p]
	if !ok {
		return
	}
	if vol.refs--; vol.refs > 0 {
		return
	}
	delete(v.vols, p)
	v.remove(p)
	vol.release()
}

// remove unmounts and removes the view at p, and its pod's directory once empty.
// Preconditions: v.mu is held.
func (v *imageVolumes) remove(p string) {
	if err := v.mnt.unmount(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return // still mounted: keep the directory rather than remove what is below it
	}
	_ = os.Remove(p)
	_ = os.Remove(filepath.Dir(p))
}

// prune unmounts the views no container holds: those a daemon that died between mounting a view and
// recording its container left behind. Called once recovery has adopted every recorded container.
func (v *imageVolumes) prune() {
	pods, _ := os.ReadDir(v.dir)
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, pod := range pods {
		views, _ := os.ReadDir(filepath.Join(v.dir, pod.Name()))
		for _, view := range views {
			p := filepath.Join(v.dir, pod.Name(), view.Name())
			if _, held := v.vols[p]; !held {
				v.remove(p)
			}
		}
		_ = os.Remove(filepath.Join(v.dir, pod.Name()))
	}
}

// both returns a func that calls each of fns that is not nil.
func both(fns ...func()) func() {
	return func() {
		for _, f := range fns {
			if f != nil {
				f()
			}
		}
	}
}
