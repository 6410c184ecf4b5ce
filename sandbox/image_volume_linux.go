package sandbox

import (
	"errors"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/warmpod/warmpod/runtime/rootfs"
)

// overlayMounter mounts an image's layers as a read-only view (see rootfs.MountView): nothing of the
// view can be written, so it needs neither an upper dir nor a work dir.
type overlayMounter struct{}

func (overlayMounter) mount(layers []string, target string) error {
	return rootfs.MountView(layers, target)
}

// unmount detaches the view: a container that bound it keeps its own reference until it ends.
func (overlayMounter) unmount(target string) error {
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

func (overlayMounter) mounted(target string) (bool, error) { return mountinfo.Mounted(target) }
