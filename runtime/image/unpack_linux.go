package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
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
	// maxNameLen is PATH_MAX: no process could name a longer path, and a bound keeps the depth of the
	// directory walks (one open directory per level) small.
	maxNameLen = 4096
	// copyChunk is how much of a file is read at a time.
	copyChunk = 128 << 10
)

// resolveBeneath makes openat2 refuse any path that leaves its starting directory or crosses a symlink,
// a magic link or a mount: the kernel, not a check of ours, keeps every entry below the layer root.
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// unpack extracts a layer tar into dir, an empty directory private to the caller, converting OCI
// whiteouts to the overlayfs form: ".wh.NAME" becomes a 0/0 character device NAME and ".wh..wh..opq" marks
// its directory opaque with trusted.overlay.opaque=y. lim bounds the layer's entries and the size of its
// files; img, when not nil, is the budget of the whole pull the layer belongs to.
//
// Nothing an entry names may be outside dir, and nothing is ever written through a symlink (not even one
// pointing inside the layer: a layer that writes through its own symlinks is malformed or hostile). Names
// with ".." components, whiteouts of "..", "." or nothing, and hardlinks to directories, device nodes,
// FIFOs or anything outside the layer are refused. Every file operation is relative to a directory opened
// with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) from dir and names a single component in it, so even
// an entry the checks let through cannot reach outside dir. Regular files are written sparse: an all-zero
// stretch (a GNU sparse hole, or zeros in the data) takes no disk space. On error the caller discards dir.
func unpack(r io.Reader, dir string, lim Limits, img *budget) error {
	rootFd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open layer dir: %w", err)
	}
	defer unix.Close(rootFd)
	u := &unpacker{root: rootFd, dirs: map[string]bool{"": true}, lim: lim, img: img, buf: make([]byte, copyChunk)}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return readErr(err)
		}
		if err := u.entry(hdr, tr); err != nil {
			if errors.Is(err, unix.ENAMETOOLONG) && !errors.Is(err, ErrInvalidImage) {
				// A name this filesystem cannot hold (a component over
				// NAME_MAX, a path over PATH_MAX) is the image's fault.
				return reject(hdr.Name, "has a name too long for the filesystem: "+err.Error())
			}
			return err
		}
	}
	// Directory times last: creating their children changed them.
	for i := len(u.dirTimes) - 1; i >= 0; i-- {
		if err := u.setDirTimes(u.dirTimes[i]); err != nil {
			return err
		}
	}
	return nil
}

// readErr classifies an error reading the layer stream (see contentErr).
func readErr(err error) error {
	return fmt.Errorf("read tar: %w", contentErr(err))
}

type unpacker struct {
	root     int             // the layer root, O_DIRECTORY
	dirs     map[string]bool // relative paths known to be real directories
	dirTimes []dirTime
	lim      Limits
	img      *budget
	entries  int64
	bytes    int64 // total size of the files so far
	buf      []byte
}

type dirTime struct {
	rel string
	hdr *tar.Header
}

func reject(name, why string) error {
	return fmt.Errorf("layer entry %q %s: %w", name, why, ErrInvalidImage)
}

// cleanName turns a tar name into a slash-separated path relative to the layer root ("" for the root):
// absolute names are taken relative to the root, "." components dropped; ".." components, NUL bytes and
// names longer than PATH_MAX are refused.
func cleanName(name string) (string, error) {
	if len(name) > maxNameLen {
		return "", reject(name[:64]+"...", "has a name longer than "+strconv.Itoa(maxNameLen)+" bytes")
	}
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

// splitRel splits a clean relative path into its parent ("" for the root) and last component.
func splitRel(rel string) (parent, base string) {
	parent, base = path.Split(rel)
	return strings.TrimSuffix(parent, "/"), base
}

func (u *unpacker) entry(hdr *tar.Header, body io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if u.entries++; u.entries > u.lim.LayerEntries {
		return reject(hdr.Name, fmt.Sprintf("is one entry too many: a layer may have at most %d", u.lim.LayerEntries))
	}
	if u.img != nil && !u.img.takeEntry() {
		return reject(hdr.Name, fmt.Sprintf("is one entry too many: an image may have at most %d", u.img.limits.ImageEntries))
	}
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "" {
		if hdr.Typeflag != tar.TypeDir {
			return reject(hdr.Name, "names the layer root but is not a directory")
		}
		return u.applyMeta(u.root, "", hdr)
	}
	parentRel, base := splitRel(rel)
	parent, err := u.mkdirParents(hdr.Name, parentRel)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(hdr, parent, parentRel, base)
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		var st unix.Stat_t
		if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			u.dirs[rel] = true
			return u.applyMeta(parent, base, hdr)
		}
		if err := u.replace(parent, rel, base); err != nil {
			return err
		}
		if err := unix.Mkdirat(parent, base, 0o700); err != nil {
			return fmt.Errorf("create dir %q: %w", hdr.Name, err)
		}
		u.dirs[rel] = true
		return u.applyMeta(parent, base, hdr)
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse: //nolint:staticcheck // TypeRegA still appears in old layers
		if err := u.charge(hdr); err != nil {
			return err
		}
		if err := u.replace(parent, rel, base); err != nil {
			return err
		}
		if err := u.writeFile(parent, base, hdr, body); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if hdr.Linkname == "" || strings.ContainsRune(hdr.Linkname, 0) || len(hdr.Linkname) > maxNameLen {
			return reject(hdr.Name, "is a symlink to no path the kernel takes")
		}
		if err := u.replace(parent, rel, base); err != nil {
			return err
		}
		// The target is only ever resolved inside the container's root, so any target is fine here.
		if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
			return fmt.Errorf("create symlink %q: %w", hdr.Name, err)
		}
	case tar.TypeLink:
		return u.hardlink(hdr, parent, rel, base)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if err := u.replace(parent, rel, base); err != nil {
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
		if err := unix.Mknodat(parent, base, mode|0o600, int(dev)); err != nil {
			return fmt.Errorf("create device %q: %w", hdr.Name, err)
		}
	default:
		return reject(hdr.Name, fmt.Sprintf("has unsupported type %q", hdr.Typeflag))
	}
	return u.applyMeta(parent, base, hdr)
}

// charge counts a regular file's size (a sparse file's full size) against the layer's and the image's
// limits before any of it is written.
func (u *unpacker) charge(hdr *tar.Header) error {
	if hdr.Size < 0 {
		return reject(hdr.Name, "has a negative size")
	}
	if u.bytes += hdr.Size; u.bytes > u.lim.LayerSize || u.bytes < 0 {
		return reject(hdr.Name, fmt.Sprintf("(%d bytes) takes the layer past its limit of %d bytes of files", hdr.Size, u.lim.LayerSize))
	}
	if u.img != nil && !u.img.take(hdr.Size) {
		return reject(hdr.Name, fmt.Sprintf("(%d bytes) takes the image past its limit of %d bytes of files", hdr.Size, u.img.limits.ImageSize))
	}
	return nil
}

// openDir opens the directory rel (clean, relative, "" for the root) below the layer root without
// crossing a symlink or leaving the root.
func (u *unpacker) openDir(rel string) (int, error) {
	if rel == "" {
		rel = "."
	}
	return openBeneath(u.root, rel)
}

// openBeneath opens the directory rel below dirfd with openat2, or component by component with
// O_NOFOLLOW on kernels older than openat2 (Linux 5.6).
func openBeneath(dirfd int, rel string) (int, error) {
	// RESOLVE_NO_SYMLINKS covers the last component too, with ELOOP (O_NOFOLLOW would give ENOTDIR).
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{Flags: flags, Resolve: resolveBeneath})
	if !errors.Is(err, unix.ENOSYS) {
		return fd, err
	}
	return openComponents(dirfd, rel)
}

// openComponents is openBeneath without openat2: each component is opened relative to the one before with
// O_NOFOLLOW, a symlink fails with ELOOP as with openat2, and a ".." component is refused outright.
func openComponents(dirfd int, rel string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	cur, err := unix.Openat(dirfd, ".", flags, 0)
	if err != nil {
		return -1, err
	}
	for _, part := range strings.Split(rel, "/") {
		if part == "" || part == "." {
			continue
		}
		if part == ".." {
			unix.Close(cur)
			return -1, unix.EXDEV
		}
		next, err := unix.Openat(cur, part, flags, 0)
		if errors.Is(err, unix.ENOTDIR) {
			var st unix.Stat_t
			if unix.Fstatat(cur, part, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = unix.ELOOP
			}
		}
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// mkdirParents returns an open fd of the entry's parent directory, creating missing ancestors the way tar
// does (0755, root-owned), and refuses to go through a symlink or a non-directory.
func (u *unpacker) mkdirParents(name, parentRel string) (int, error) {
	if u.dirs[parentRel] {
		fd, err := u.openDir(parentRel)
		if err != nil {
			return -1, u.resolveErr(name, parentRel, err)
		}
		return fd, nil
	}
	cur, err := unix.Dup(u.root)
	if err != nil {
		return -1, err
	}
	curRel := ""
	for _, part := range strings.Split(parentRel, "/") {
		curRel = path.Join(curRel, part)
		next, err := openBeneath(cur, part)
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(cur, part, 0o755); err != nil {
				unix.Close(cur)
				return -1, fmt.Errorf("create parent of %q: %w", name, err)
			}
			next, err = openBeneath(cur, part)
		}
		unix.Close(cur)
		if err != nil {
			return -1, u.resolveErr(name, curRel, err)
		}
		cur = next
		u.dirs[curRel] = true
	}
	return cur, nil
}

// resolveErr explains why a directory of an entry's path could not be opened.
func (u *unpacker) resolveErr(name, rel string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return reject(name, "would be written through a symlink in "+rel)
	case errors.Is(err, unix.ENOTDIR):
		return reject(name, "has a non-directory in its path "+rel)
	case errors.Is(err, unix.EXDEV):
		return reject(name, "leaves the layer")
	}
	return fmt.Errorf("open %q for %q: %w", rel, name, err)
}

// replace clears the way for a new entry base in parent: a later tar entry for the same path wins.
func (u *unpacker) replace(parent int, rel, base string) error {
	var st unix.Stat_t
	err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect %q: %w", rel, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(parent, base, 0); err != nil {
			return fmt.Errorf("replace %q: %w", rel, err)
		}
		return nil
	}
	// Forget the directory and everything below it: the path may become a symlink.
	for d := range u.dirs {
		if d == rel || strings.HasPrefix(d, rel+"/") {
			delete(u.dirs, d)
		}
	}
	if err := removeAllAt(parent, base); err != nil {
		return fmt.Errorf("replace %q: %w", rel, err)
	}
	return nil
}

// removeAllAt removes base in dirfd and, if it is a directory, everything below it, never following a
// symlink. Its depth is bounded by maxNameLen.
func removeAllAt(dirfd int, base string) error {
	err := unix.Unlinkat(dirfd, base, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return err
	}
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), base)
	defer d.Close()
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			if err := removeAllAt(fd, n); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) || len(names) == 0 {
			break
		}
		if err != nil {
			return err
		}
	}
	return unix.Unlinkat(dirfd, base, unix.AT_REMOVEDIR)
}

func (u *unpacker) whiteout(hdr *tar.Header, parent int, parentRel, base string) error {
	if base == whiteoutOpaque {
		if err := unix.Fsetxattr(parent, opaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("mark %q opaque: %w", parentRel, err)
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return reject(hdr.Name, fmt.Sprintf("is a whiteout of %q, which is not an entry of its directory", target))
	}
	rel := path.Join(parentRel, target)
	if err := u.replace(parent, rel, target); err != nil {
		return err
	}
	// A 0/0 character device with no permission bits.
	if err := unix.Mknodat(parent, target, unix.S_IFCHR, int(unix.Mkdev(0, 0))); err != nil {
		return fmt.Errorf("create whiteout for %q: %w", rel, err)
	}
	return nil
}

// hardlink links rel to an earlier regular file or symlink of the layer. Links to directories are
// impossible, and links to device nodes and FIFOs are refused: nothing needs them, and they would plant a
// device under a second name that a check of the first would miss.
func (u *unpacker) hardlink(hdr *tar.Header, parent int, rel, base string) error {
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
	tParentRel, tBase := splitRel(targetRel)
	tParent, err := u.openDir(tParentRel)
	if err != nil {
		return reject(hdr.Name, "links through "+tParentRel+", which is not a directory in the layer")
	}
	defer unix.Close(tParent)
	var st unix.Stat_t
	if err := unix.Fstatat(tParent, tBase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return reject(hdr.Name, "links to "+hdr.Linkname+", which is not in the layer")
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFLNK:
	case unix.S_IFDIR:
		return reject(hdr.Name, "links to directory "+hdr.Linkname)
	default:
		return reject(hdr.Name, "links to "+hdr.Linkname+", which is a device node, FIFO or socket")
	}
	if err := u.replace(parent, rel, base); err != nil {
		return err
	}
	// linkat without AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself, never its target.
	if err := unix.Linkat(tParent, tBase, parent, base, 0); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return reject(hdr.Name, "links to "+hdr.Linkname+", which it replaced")
		}
		return fmt.Errorf("create hardlink %q: %w", hdr.Name, err)
	}
	return nil
}

// writeFile creates base in parent and copies the entry's data into it, leaving all-zero chunks as holes.
func (u *unpacker) writeFile(parent int, base string, hdr *tar.Header, body io.Reader) error {
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %q: %w", hdr.Name, err)
	}
	f := os.NewFile(uintptr(fd), base)
	err = sparseCopy(f, body, u.buf)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = writeErr{cerr}
	}
	if isWriteErr(err) {
		return fmt.Errorf("write %q: %w", hdr.Name, err)
	}
	if err != nil {
		return readErr(err)
	}
	return nil
}

// writeErr marks an error of the file being written, as opposed to one reading the layer.
type writeErr struct{ err error }

func (w writeErr) Error() string { return w.err.Error() }
func (w writeErr) Unwrap() error { return w.err }

func isWriteErr(err error) bool {
	var w writeErr
	return errors.As(err, &w)
}

// sparseCopy copies r to f, leaving a hole for every all-zero block (holeBlock bytes, aligned), then
// sets f's size, which also makes a trailing hole.
func sparseCopy(f *os.File, r io.Reader, buf []byte) error {
	var off int64
	for {
		n, err := fill(r, buf)
		if werr := writeNonZero(f, buf[:n], off); werr != nil {
			return writeErr{werr}
		}
		off += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := f.Truncate(off); err != nil {
		return writeErr{err}
	}
	return nil
}

// holeBlock is the granularity of the holes sparseCopy leaves: a filesystem block.
const holeBlock = 4096

// writeNonZero writes b at off, skipping its all-zero blocks; runs of other blocks are written at once.
func writeNonZero(f *os.File, b []byte, off int64) error {
	start := -1 // start of the pending run of data blocks
	for i := 0; i < len(b); i += holeBlock {
		end := min(i+holeBlock, len(b))
		if allZero(b[i:end]) {
			if start >= 0 {
				if _, err := f.WriteAt(b[start:i], off+int64(start)); err != nil {
					return err
				}
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		if _, err := f.WriteAt(b[start:], off+int64(start)); err != nil {
			return err
		}
	}
	return nil
}

// fill reads into buf until it is full or r fails; unlike io.ReadFull it passes r's error on as it is
// (io.EOF at the end of the data, io.ErrUnexpectedEOF from a tar cut short).
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

var zeroBlock = make([]byte, holeBlock)

func allZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }

// applyMeta sets owner, mode, xattrs and (except for directories, done at the end) times of base in
// parent ("" for parent itself). Mode goes after chown because chown clears setuid/setgid bits.
func (u *unpacker) applyMeta(parent int, base string, hdr *tar.Header) error {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if base == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	if err := unix.Fchownat(parent, base, hdr.Uid, hdr.Gid, flags); err != nil {
		return fmt.Errorf("chown %q: %w", hdr.Name, err)
	}
	if hdr.Typeflag != tar.TypeSymlink {
		// base is no symlink: this unpacker made it just now, in a directory private to it.
		var err error
		if base == "" {
			err = unix.Fchmod(parent, uint32(hdr.Mode&0o7777))
		} else {
			err = unix.Fchmodat(parent, base, uint32(hdr.Mode&0o7777), 0)
		}
		if err != nil {
			return fmt.Errorf("chmod %q: %w", hdr.Name, err)
		}
	}
	if err := setXattrs(parent, base, hdr); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeDir {
		rel, _ := cleanName(hdr.Name)
		u.dirTimes = append(u.dirTimes, dirTime{rel: rel, hdr: hdr})
		return nil
	}
	if err := setTimes(parent, base, hdr); err != nil {
		return fmt.Errorf("set times of %q: %w", hdr.Name, err)
	}
	return nil
}

func (u *unpacker) setDirTimes(d dirTime) error {
	parentRel, base := splitRel(d.rel)
	parent, err := u.openDir(parentRel)
	if err != nil {
		// A later entry replaced the directory's path by something else.
		return nil
	}
	defer unix.Close(parent)
	if err := setTimes(parent, base, d.hdr); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("set times of %q: %w", d.hdr.Name, err)
	}
	return nil
}

// procPath names base in the directory fd through /proc, for the xattr calls that have no *at form;
// /proc/self/fd/N is resolved to the directory itself, and base is not followed (lsetxattr).
func procPath(fd int, base string) string {
	p := "/proc/self/fd/" + strconv.Itoa(fd)
	if base != "" {
		p += "/" + base
	}
	return p
}

func setXattrs(parent int, base string, hdr *tar.Header) error {
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
		err := unix.Lsetxattr(procPath(parent, base), attr, []byte(value), 0)
		// "Where possible": a filesystem without xattrs, or a namespace we may not write (security.selinux
		// without SELinux), drops the attribute rather than the image.
		if err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("set xattr %s on %q: %w", attr, hdr.Name, err)
		}
	}
	return nil
}

func setTimes(parent int, base string, hdr *tar.Header) error {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	ts := []unix.Timespec{toTimespec(atime), toTimespec(hdr.ModTime)}
	if base == "" {
		return unix.UtimesNanoAt(unix.AT_FDCWD, procPath(parent, ""), ts, 0)
	}
	return unix.UtimesNanoAt(parent, base, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func toTimespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{Sec: 0, Nsec: 0}
	}
	return unix.NsecToTimespec(t.UnixNano())
}
