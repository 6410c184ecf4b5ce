// Package rootfs assembles a container's root filesystem: the image layers as
// overlayfs lower dirs and a fresh, private writable upper dir per generation.
package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Rootfs is one mounted root filesystem. Its directory holds the upper and
// work dirs of the overlay and the mount point.
type Rootfs struct {
	Dir    string
	Upper  string
	Work   string
	Merged string
}

// At returns the layout of a root filesystem kept in dir.
func At(dir string) Rootfs {
	return Rootfs{
		Dir:    dir,
		Upper:  filepath.Join(dir, "upper"),
		Work:   filepath.Join(dir, "work"),
		Merged: filepath.Join(dir, "rootfs"),
	}
}

// Mount creates dir and mounts an overlay of layers (bottom layer first)
// under a new, empty upper dir. The upper dir is mounted "volatile": a
// container's writable layer does not outlive the container, so it never
// needs to be synced, and unmounting it never waits for the disk.
// On error nothing is left behind.
func Mount(layers []string, dir string) (_ Rootfs, retErr error) {
	r := At(dir)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return Rootfs{}, fmt.Errorf("create rootfs dir: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	for _, d := range []string{r.Upper, r.Work, r.Merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return Rootfs{}, fmt.Errorf("create rootfs dir: %w", err)
		}
	}
	lower := make([]string, 0, len(layers)+1)
	for i := len(layers) - 1; i >= 0; i-- {
		lower = append(lower, layers[i])
	}
	if len(lower) == 0 {
		// overlayfs needs a lower dir; an image without layers has an empty root.
		empty := filepath.Join(dir, "empty")
		if err := os.Mkdir(empty, 0o755); err != nil {
			return Rootfs{}, fmt.Errorf("create rootfs dir: %w", err)
		}
		lower = append(lower, empty)
	}
	if err := mountOverlay(lower, r); err != nil {
		return Rootfs{}, fmt.Errorf("mount rootfs at %s: %w", r.Merged, err)
	}
	return r, nil
}

func mountOverlay(lower []string, r Rootfs) error {
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,volatile",
		strings.Join(lower, ":"), r.Upper, r.Work)
	if len(opts) < unix.Getpagesize()-1 {
		return unix.Mount("overlay", r.Merged, "overlay", 0, opts)
	}
	return mountOverlayFsconfig(lower, r)
}

// mountOverlayFsconfig passes lower dirs one at a time ("lowerdir+", Linux
// 6.8), for images whose layer list does not fit in one page of mount data.
func mountOverlayFsconfig(lower []string, r Rootfs) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)
	for _, l := range lower {
		if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
			return fmt.Errorf("overlay lowerdir+ %s (too many layers for this kernel?): %w", l, err)
		}
	}
	for k, v := range map[string]string{"upperdir": r.Upper, "workdir": r.Work} {
		if err := unix.FsconfigSetString(fd, k, v); err != nil {
			return fmt.Errorf("overlay %s: %w", k, err)
		}
	}
	if err := unix.FsconfigSetFlag(fd, "volatile"); err != nil {
		return fmt.Errorf("overlay volatile: %w", err)
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("create overlay: %w", err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	return unix.MoveMount(mfd, "", unix.AT_FDCWD, r.Merged, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// Unmount detaches the overlay; it does not wait for open files to close.
// Unmounting what is not mounted is not an error.
func (r Rootfs) Unmount() error {
	err := unix.Unmount(r.Merged, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount rootfs %s: %w", r.Merged, err)
	}
	return nil
}

// Remove unmounts the overlay and deletes its directory with the writable
// layer. It may take long for a big upper dir; callers run it off hot paths.
func (r Rootfs) Remove() error {
	if err := r.Unmount(); err != nil {
		return err
	}
	if err := os.RemoveAll(r.Dir); err != nil {
		return fmt.Errorf("remove rootfs dir: %w", err)
	}
	return nil
}
