// Package rootfs assembles a container's root filesystem: the image layers as
// overlayfs lower dirs and a fresh, private writable upper dir per generation.
//
// # Containers in a user namespace
//
// The image layers are shared by every pod and stay owned by host root, who
// is nobody inside a pod's user namespace: its root could not even enter
// /root. Mount with a UserNS therefore builds the overlay from id-mapped
// views of the layers (mount_setattr MOUNT_ATTR_IDMAP through the pod's
// user namespace, Linux 5.19+ for overlayfs), in which a file of host uid 0
// is owned by the namespace's root. The upper dir is chowned to that root
// instead: it is new and empty, so one chown does it, and files written in
// the container are stored on disk under the ids they have on the host
// (copy-up keeps the mapped owner). The choice was measured on Linux 6.18:
// overlayfs refuses to be id-mapped itself (EINVAL), and an overlay whose
// upper dir is id-mapped mounts but refuses every write (EROFS).
//
// The id-mapped views are attached at dir/lower/N only while the overlay is
// mounted; the overlay keeps private clones of them, so they are detached
// at once. (Linux 6.15 can take layers as file descriptors instead, which
// needs no attached view, but older kernels cannot.)
package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

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

// UserNS asks for a root filesystem that root of a user namespace owns.
type UserNS struct {
	// Path is the user namespace (an nsfs file) the image layers are
	// id-mapped through.
	Path string `json:"path"`
	// UID and GID are the host ids of root in the namespace; they own
	// the writable layer.
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

// mappedDir holds the id-mapped views of the layers while an overlay is
// mounted from them.
const mappedDir = "lower"

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
// under a new, empty upper dir. The upper dir is mounted "volatile" where
// the kernel allows (see Volatile): a container's writable layer does not
// outlive the container, so it never needs to be synced, and unmounting it
// never waits for the disk.
// With userns the root filesystem is made for root of that user namespace
// (see the package comment); nil makes it for host root.
// On error nothing is left behind.
func Mount(layers []string, dir string, userns *UserNS) (_ Rootfs, retErr error) {
	r := At(dir)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return Rootfs{}, fmt.Errorf("create rootfs dir: %w", err)
	}
	defer func() {
		if retErr == nil {
			return
		}
		// Never delete through a layer that is still mounted.
		if err := unmountMapped(dir); err == nil {
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
	if userns == nil {
		if err := mountOverlay(lower, r); err != nil {
			return Rootfs{}, fmt.Errorf("mount rootfs at %s: %w", r.Merged, err)
		}
		return r, nil
	}
	if err := os.Chown(r.Upper, int(userns.UID), int(userns.GID)); err != nil {
		return Rootfs{}, fmt.Errorf("hand the writable layer to the user namespace's root: %w", err)
	}
	mapped, err := mapLayers(lower, filepath.Join(dir, mappedDir), userns.Path)
	if err == nil {
		err = mountOverlay(mapped, r)
		if err != nil {
			err = fmt.Errorf("mount rootfs at %s: %w", r.Merged, err)
		}
	}
	if uerr := unmountMapped(dir); uerr != nil && err == nil {
		_ = r.Unmount()
		err = uerr
	}
	if err != nil {
		return Rootfs{}, err
	}
	return r, nil
}

// mapLayers attaches an id-mapped, read-only view of each of lower through
// the user namespace at userns under dir/0, dir/1, ... and returns their
// paths. Views attached before an error are left for unmountMapped.
func mapLayers(lower []string, dir, userns string) ([]string, error) {
	nsfd, err := unix.Open(userns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open user namespace: %w", err)
	}
	defer unix.Close(nsfd)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create rootfs dir: %w", err)
	}
	mapped := make([]string, len(lower))
	for i, l := range lower {
		mapped[i] = filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(mapped[i], 0o700); err != nil {
			return nil, fmt.Errorf("create rootfs dir: %w", err)
		}
		if err := attachMapped(l, mapped[i], nsfd); err != nil {
			return nil, fmt.Errorf("id-map layer %s: %w", l, err)
		}
	}
	return mapped, nil
}

// attachMapped attaches at target a read-only view of src whose ids are
// mapped through the user namespace nsfd.
func attachMapped(src, target string, nsfd int) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_RDONLY, Userns_fd: uint64(nsfd)}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("mount_setattr idmap: %w", err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// unmountMapped detaches and removes the id-mapped layer views under dir,
// whatever Mount (or a crash in it) left. An error means something may
// still be mounted there, and dir must not be deleted.
func unmountMapped(dir string) error {
	md := filepath.Join(dir, mappedDir)
	entries, err := os.ReadDir(md)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list id-mapped layers: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(md, e.Name())
		err := unix.Unmount(p, unix.MNT_DETACH)
		if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount id-mapped layer %s: %w", p, err)
		}
		// rmdir, not RemoveAll: a view still mounted fails with EBUSY.
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove id-mapped layer dir: %w", err)
		}
	}
	if err := os.Remove(md); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove id-mapped layer dir: %w", err)
	}
	return nil
}

func mountOverlay(lower []string, r Rootfs) error {
	return overlay(lower, r.Upper, r.Work, r.Merged)
}

// MountView mounts layers (bottom layer first) read-only at target, as a
// view that nothing can write through: an overlay of lower dirs only, or, for
// a single layer, a read-only bind (overlayfs wants two lower dirs when it has
// no upper one). No layers leave target as it is: an empty view.
func MountView(layers []string, target string) error {
	switch len(layers) {
	case 0:
		return nil
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
	return overlay(lower, "", "", target)
}

// volatileRefused is set once the kernel has refused the "volatile" option
// (overlayfs has it since Linux 5.10): writable layers are mounted without
// it from then on, and their unmount syncs the upper filesystem.
var volatileRefused atomic.Bool

// Volatile tells whether writable layers are mounted "volatile": true until
// the kernel has refused the option.
func Volatile() bool { return !volatileRefused.Load() }

// sysMount is mount(2); tests replace it to play an older kernel.
var sysMount = unix.Mount

// overlay mounts lower (top layer first) at target: writable through upper
// and work, "volatile" where the kernel has the option, or, when upper is
// "", read-only and nodev.
func overlay(lower []string, upper, work, target string) error {
	opts := "lowerdir=" + strings.Join(lower, ":")
	var flags uintptr = unix.MS_RDONLY | unix.MS_NODEV
	volatile := false
	if upper != "" {
		opts += ",upperdir=" + upper + ",workdir=" + work
		flags = 0
		volatile = Volatile()
	}
	extra := ""
	if volatile {
		extra = ",volatile"
	}
	if len(opts)+len(extra) >= unix.Getpagesize()-1 {
		return overlayFsconfig(lower, upper, work, target)
	}
	err := sysMount("overlay", target, "overlay", flags, opts+extra)
	if !volatile || !errors.Is(err, unix.EINVAL) {
		return err
	}
	// An unknown option and a bad layer both give EINVAL: only a mount
	// that works without the option tells that the kernel lacks it.
	if err := sysMount("overlay", target, "overlay", flags, opts); err != nil {
		return err
	}
	volatileRefused.Store(true)
	return nil
}

// overlayFsconfig passes lower dirs one at a time ("lowerdir+", Linux 6.8),
// for images whose layer list does not fit in one page of mount data.
func overlayFsconfig(lower []string, upper, work, target string) error {
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
	attrs := unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV
	if upper != "" {
		for _, kv := range [][2]string{{"upperdir", upper}, {"workdir", work}} {
			if err := unix.FsconfigSetString(fd, kv[0], kv[1]); err != nil {
				return fmt.Errorf("overlay %s: %w", kv[0], err)
			}
		}
		if Volatile() {
			err := unix.FsconfigSetFlag(fd, "volatile")
			if errors.Is(err, unix.EINVAL) {
				volatileRefused.Store(true)
			} else if err != nil {
				return fmt.Errorf("overlay volatile: %w", err)
			}
		}
		attrs = 0
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("create overlay: %w", err)
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	return unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
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
	if err := unmountMapped(r.Dir); err != nil {
		return err
	}
	if err := os.RemoveAll(r.Dir); err != nil {
		return fmt.Errorf("remove rootfs dir: %w", err)
	}
	return nil
}

// CheckUserNS tells whether root filesystems for root of userns can be made
// on this kernel with layers on dir's filesystem: it mounts one from a
// one-file layer in a scratch directory under dir and checks that the file
// is owned by userns's root.
func CheckUserNS(dir string, userns *UserNS) (retErr error) {
	scratch, err := os.MkdirTemp(dir, ".userns-check-")
	if err != nil {
		return fmt.Errorf("create scratch dir: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(scratch); err != nil && retErr == nil {
			retErr = fmt.Errorf("remove scratch dir: %w", err)
		}
	}()
	layer := filepath.Join(scratch, "layer")
	if err := os.Mkdir(layer, 0o755); err != nil {
		return fmt.Errorf("create scratch layer: %w", err)
	}
	if err := os.WriteFile(filepath.Join(layer, "f"), nil, 0o644); err != nil {
		return fmt.Errorf("create scratch layer: %w", err)
	}
	r, err := Mount([]string{layer}, filepath.Join(scratch, "gen"), userns)
	if err != nil {
		return err
	}
	defer func() {
		if err := r.Remove(); err != nil && retErr == nil {
			retErr = err
		}
	}()
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(r.Merged, "f"), &st); err != nil {
		return fmt.Errorf("stat through id-mapped rootfs: %w", err)
	}
	if st.Uid != userns.UID || st.Gid != userns.GID {
		return fmt.Errorf("a file of host root shows as owned by %d:%d through the id-mapped rootfs, want %d:%d",
			st.Uid, st.Gid, userns.UID, userns.GID)
	}
	return nil
}
