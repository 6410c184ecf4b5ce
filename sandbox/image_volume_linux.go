package sandbox

import (
	"errors"
	"fmt"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// overlayMounter mounts an image's layers as a read-only overlayfs with lower dirs only (a single layer is
// bound read-only instead: overlayfs wants two lower dirs when it has no upper one). Nothing of the view
// can be written, so it needs neither an upper dir nor a work dir.
type overlayMounter struct{}

func (overlayMounter) mount(layers []string, target string) error {
	switch len(layers) {
	case 0:
		return nil // an image without layers has an empty root: the empty directory is the view
	case 1:
		if err := unix.Mount(layers[0], target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind layer: %w", err)
		}
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NODEV, ""); err != nil {
			_ = unix.Unmount(target, unix.MNT_DETACH)
			return fmt.Errorf("make layer read-only: %w", err)
		}
		return nil
	}
	lower := make([]string, 0, len(layers))
	for i := len(layers) - 1; i >= 0; i-- {
		lower = append(lower, layers[i])
	}
	opts := "lowerdir=" + strings.Join(lower, ":")
	if len(opts) < unix.Getpagesize()-1 {
		return unix.Mount("overlay", target, "overlay", unix.MS_RDONLY|unix.MS_NODEV, opts)
	}
	// Too many layers for one page of mount data: pass them one at a time ("lowerdir+", Linux 6.8).
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)
	for _, l := range lower {
		if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
			return fmt.Errorf("overlay lowerdir+ %s: %w", l, err)
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("create overlay: %w", err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	return unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// unmount detaches the view: a container that bound it keeps its own reference until it ends.
func (overlayMounter) unmount(target string) error {
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

func (overlayMounter) mounted(target string) (bool, error) { return mountinfo.Mounted(target) }
