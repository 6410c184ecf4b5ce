package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	// whiteoutMeta prefixes AUFS bookkeeping entries (.wh..wh.plnk, .wh..wh.aufs) that mean nothing to
	// overlayfs; the opaque marker is the one of them with a meaning.
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
	paxXattrPrefix = "SCHILY.xattr."
)

// unpack extracts a layer tar into dir, an empty directory private to the caller, converting OCI
// whiteouts to the overlayfs form: ".wh.NAME" becomes a 0/0 character device NAME and ".wh..wh..opq" marks
// its directory opaque with trusted.overlay.opaque=y.
//
// Entries may not leave dir: names with ".." components are refused, absolute names are taken relative to
// dir, no entry is written through a symlink (not even one pointing inside the layer: a layer that writes
// through its own symlinks is malformed or hostile), and hardlinks must name an entry already in the layer.
// Because dir is private and the walk never follows a symlink, path-based syscalls cannot be raced.
// On error the caller discards dir.
func unpack(r io.Reader, dir string) error {
	u := &unpacker{root: dir, dirs: map[string]bool{"": true}}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w: %w", ErrInvalidImage, err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return err
		}
	}
	// Directory times last: creating their children changed them.
	for i := len(u.dirTimes) - 1; i >= 0; i-- {
		d := u.dirTimes[i]
		if err := setTimes(d.path, d.hdr); err != nil {
			return fmt.Errorf("set times of %q: %w", d.hdr.Name, err)
		}
	}
	return nil
}

type unpacker struct {
	root     string
	dirs     map[string]bool // relative paths known to be real directories
	dirTimes []dirTime
}

type dirTime struct {
	path string
	hdr  *tar.Header
}

func reject(name, why string) error {
	return fmt.Errorf("layer entry %q %s: %w", name, why, ErrInvalidImage)
}

// cleanName turns a tar name into a slash-separated path relative to the layer root ("" for the root).
func cleanName(name string) (string, error) {
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", reject(name, "has a '..' component")
		}
	}
	if strings.ContainsRune(name, 0) {
		return "", reject(name, "contains a NUL byte")
	}
	return strings.TrimPrefix(path.Clean("/"+name), "/"), nil
}

func (u *unpacker) entry(hdr *tar.Header, body io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "" {
		if hdr.Typeflag != tar.TypeDir {
			return reject(hdr.Name, "names the layer root but is not a directory")
		}
		return u.applyMeta(u.root, hdr, true)
	}
	parentRel, base := path.Split(rel)
	parentRel = strings.TrimSuffix(parentRel, "/")
	parent, err := u.mkdirParents(hdr.Name, parentRel)
	if err != nil {
		return err
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(hdr, parent, parentRel, base)
	}
	full := filepath.Join(parent, base)

	switch hdr.Typeflag {
	case tar.TypeDir:
		if st, err := os.Lstat(full); err == nil && st.IsDir() {
			u.dirs[rel] = true
			return u.applyMeta(full, hdr, true)
		}
		if err := u.replace(rel, full); err != nil {
			return err
		}
		if err := unix.Mkdir(full, 0o700); err != nil {
			return fmt.Errorf("create dir %q: %w", hdr.Name, err)
		}
		u.dirs[rel] = true
		return u.applyMeta(full, hdr, true)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse: //nolint:staticcheck // TypeRegA still appears in old layers
		if err := u.replace(rel, full); err != nil {
			return err
		}
		if err := writeFile(full, body); err != nil {
			return fmt.Errorf("write %q: %w", hdr.Name, err)
		}
	case tar.TypeSymlink:
		if err := u.replace(rel, full); err != nil {
			return err
		}
		// The target is only ever resolved inside the container's root, so any target is fine here.
		if err := unix.Symlink(hdr.Linkname, full); err != nil {
			return fmt.Errorf("create symlink %q: %w", hdr.Name, err)
		}
	case tar.TypeLink:
		return u.hardlink(hdr, rel, full)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if err := u.replace(rel, full); err != nil {
			return err
		}
		mode := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode = unix.S_IFCHR
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknod(full, mode|0o600, int(dev)); err != nil {
			return fmt.Errorf("create device %q: %w", hdr.Name, err)
		}
	default:
		return reject(hdr.Name, fmt.Sprintf("has unsupported type %q", hdr.Typeflag))
	}
	return u.applyMeta(full, hdr, false)
}

// mkdirParents makes sure every ancestor of an entry is a real directory, creating missing ones the way
// tar does, and refuses to go through a symlink or a non-directory.
func (u *unpacker) mkdirParents(name, parentRel string) (string, error) {
	if u.dirs[parentRel] {
		return filepath.Join(u.root, parentRel), nil
	}
	cur := ""
	for _, part := range strings.Split(parentRel, "/") {
		if cur == "" {
			cur = part
		} else {
			cur += "/" + part
		}
		if u.dirs[cur] {
			continue
		}
		full := filepath.Join(u.root, cur)
		st, err := os.Lstat(full)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := unix.Mkdir(full, 0o755); err != nil {
				return "", fmt.Errorf("create parent of %q: %w", name, err)
			}
		case err != nil:
			return "", fmt.Errorf("inspect parent of %q: %w", name, err)
		case st.Mode()&os.ModeSymlink != 0:
			return "", reject(name, "would be written through symlink "+cur)
		case !st.IsDir():
			return "", reject(name, "has non-directory parent "+cur)
		}
		u.dirs[cur] = true
	}
	return filepath.Join(u.root, parentRel), nil
}

// replace clears the way for a new entry at rel: a later tar entry for the same path wins.
func (u *unpacker) replace(rel, full string) error {
	st, err := os.Lstat(full)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect %q: %w", rel, err)
	}
	if st.IsDir() {
		// Forget the directory and everything below it: the path may become a symlink.
		for d := range u.dirs {
			if d == rel || strings.HasPrefix(d, rel+"/") {
				delete(u.dirs, d)
			}
		}
		return os.RemoveAll(full)
	}
	return os.Remove(full)
}

func (u *unpacker) whiteout(hdr *tar.Header, parent, parentRel, base string) error {
	if base == whiteoutOpaque {
		if err := unix.Lsetxattr(parent, opaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("mark %q opaque: %w", parentRel, err)
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." {
		return reject(hdr.Name, "is a whiteout of nothing")
	}
	rel := path.Join(parentRel, target)
	full := filepath.Join(parent, target)
	if err := u.replace(rel, full); err != nil {
		return err
	}
	// A 0/0 character device with no permission bits.
	if err := unix.Mknod(full, unix.S_IFCHR, int(unix.Mkdev(0, 0))); err != nil {
		return fmt.Errorf("create whiteout for %q: %w", rel, err)
	}
	return nil
}

func (u *unpacker) hardlink(hdr *tar.Header, rel, full string) error {
	targetRel, err := cleanName(hdr.Linkname)
	if err != nil {
		return reject(hdr.Name, "links to "+hdr.Linkname+" outside the layer")
	}
	if targetRel == "" {
		return reject(hdr.Name, "links to the layer root")
	}
	if targetRel == rel {
		return nil
	}
	tParentRel, tBase := path.Split(targetRel)
	tParent, err := u.resolveDir(hdr.Name, strings.TrimSuffix(tParentRel, "/"))
	if err != nil {
		return err
	}
	target := filepath.Join(tParent, tBase)
	st, err := os.Lstat(target)
	if err != nil {
		return reject(hdr.Name, "links to "+hdr.Linkname+", which is not in the layer")
	}
	if st.IsDir() {
		return reject(hdr.Name, "links to directory "+hdr.Linkname)
	}
	if err := u.replace(rel, full); err != nil {
		return err
	}
	// linkat without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself, never its target.
	if err := unix.Linkat(unix.AT_FDCWD, target, unix.AT_FDCWD, full, 0); err != nil {
		return fmt.Errorf("create hardlink %q: %w", hdr.Name, err)
	}
	return nil
}

// resolveDir checks that an existing directory path inside the layer has no symlink or non-directory on
// the way, without creating anything.
func (u *unpacker) resolveDir(name, rel string) (string, error) {
	if u.dirs[rel] {
		return filepath.Join(u.root, rel), nil
	}
	cur := ""
	for _, part := range strings.Split(rel, "/") {
		cur = path.Join(cur, part)
		if u.dirs[cur] {
			continue
		}
		st, err := os.Lstat(filepath.Join(u.root, cur))
		if err != nil || st.Mode()&os.ModeSymlink != 0 || !st.IsDir() {
			return "", reject(name, "links through "+cur+", which is not a directory in the layer")
		}
		u.dirs[cur] = true
	}
	return filepath.Join(u.root, rel), nil
}

func writeFile(full string, body io.Reader) error {
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// applyMeta sets owner, mode, xattrs and (except for directories, done at the end) times. Mode goes after
// chown because chown clears setuid/setgid bits.
func (u *unpacker) applyMeta(full string, hdr *tar.Header, isDir bool) error {
	if err := os.Lchown(full, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown %q: %w", hdr.Name, err)
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(unix.AT_FDCWD, full, uint32(hdr.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("chmod %q: %w", hdr.Name, err)
		}
	}
	if err := setXattrs(full, hdr); err != nil {
		return err
	}
	if isDir {
		u.dirTimes = append(u.dirTimes, dirTime{path: full, hdr: hdr})
		return nil
	}
	if err := setTimes(full, hdr); err != nil {
		return fmt.Errorf("set times of %q: %w", hdr.Name, err)
	}
	return nil
}

func setXattrs(full string, hdr *tar.Header) error {
	for key, value := range hdr.PAXRecords {
		attr, ok := strings.CutPrefix(key, paxXattrPrefix)
		if !ok {
			continue
		}
		// overlayfs keys (opaque, redirect, metacopy) steer lookups across layers: only the whiteout
		// conversion above may set them, never the image itself.
		if strings.HasPrefix(attr, "trusted.overlay.") {
			continue
		}
		err := unix.Lsetxattr(full, attr, []byte(value), 0)
		// "Where possible": a filesystem without xattrs, or a namespace we may not write (security.selinux
		// without SELinux), drops the attribute rather than the image.
		if err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("set xattr %s on %q: %w", attr, hdr.Name, err)
		}
	}
	return nil
}

func setTimes(full string, hdr *tar.Header) error {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	ts := []unix.Timespec{toTimespec(atime), toTimespec(hdr.ModTime)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, full, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func toTimespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{Sec: 0, Nsec: 0}
	}
	return unix.NsecToTimespec(t.UnixNano())
}
