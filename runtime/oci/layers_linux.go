package oci

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// maxSymlinks bounds symlink hops while resolving a path in an image, as the kernel's MAXSYMLINKS does.
const maxSymlinks = 40

// maxImageFile bounds a file read from an image on the host (/etc/passwd, /etc/group): it is read whole
// into the daemon's memory.
const maxImageFile = 4 << 20

var (
	errNotInImage    = errors.New("not in the image")
	errSymlinkLoop   = errors.New("too many levels of symbolic links")
	errNotADirectory = errors.New("not a directory")
)

// imageFS reads files as an overlay mount of the layers would show them, without mounting anything:
// the topmost layer holding a name wins, a 0/0 character device whites out the name in the layers below,
// and a directory marked opaque hides the same directory in the layers below. Symlinks resolve inside the
// image, never against the host's root, so an image cannot make the daemon read host files.
type imageFS struct {
	layers []string // top layer first
}

func newImageFS(img *Image) imageFS {
	if len(img.Layers) == 0 {
		return imageFS{}
	}
	top := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		top[len(img.Layers)-1-i] = l
	}
	return imageFS{layers: top}
}

// readFile returns the content of the image file at the absolute path name. A missing file wraps
// fs.ErrNotExist. The file must be a regular file of at most maxImageFile bytes: the daemon reads it as
// root, and a FIFO would block it, a device could be read without end (or be changed by being opened at
// all), and a huge file would fill its memory. It is opened below its layer's root without following a
// symlink or leaving the root (a handle that does not read first, then a reopen once it is known to be a
// regular file), so nothing but a regular file of the image is ever opened for reading.
func (f imageFS) readFile(name string) ([]byte, error) {
	hit, err := f.resolve(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return readRegular(f.layers[hit.layer], hit.rel)
}

var (
	errNotRegular = errors.New("not a regular file")
	errTooLarge   = fmt.Errorf("larger than %d bytes", maxImageFile)
)

// readRegular reads the regular file rel of the layer directory layer.
func readRegular(layer, rel string) ([]byte, error) {
	root, err := os.OpenFile(layer, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	handle, err := pathrs.OpenatInRoot(root, rel)
	if err != nil {
		return nil, err
	}
	defer handle.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(handle.Fd()), &st); err != nil {
		return nil, err
	}
	if err := checkRegular(&st); err != nil {
		return nil, err
	}
	// O_NONBLOCK and O_NOCTTY only matter if what was checked were swapped for something else.
	file, err := pathrs.Reopen(handle, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var again unix.Stat_t
	if err := unix.Fstat(int(file.Fd()), &again); err != nil {
		return nil, err
	}
	if again.Dev != st.Dev || again.Ino != st.Ino {
		return nil, errors.New("changed while it was opened")
	}
	if err := checkRegular(&again); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(file, maxImageFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxImageFile {
		return nil, errTooLarge
	}
	return b, nil
}

func checkRegular(st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%w: it is %s", errNotRegular, fileType(st.Mode))
	}
	if st.Size > maxImageFile {
		return fmt.Errorf("%w: it has %d", errTooLarge, st.Size)
	}
	return nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symlink"
	}
	return "of unknown type"
}

// resolve finds the file the merged view would show at an image path.
func (f imageFS) resolve(name string) (layerHit, error) {
	hops := 0
	pending := splitPath(name)
	var dir []string // resolved components of the current directory
	visible := f.allLayers()
	for len(pending) > 0 {
		comp := pending[0]
		pending = pending[1:]
		if comp == ".." {
			if len(dir) > 0 {
				dir = dir[:len(dir)-1]
			}
			// Going up re-resolves the parent from the root: its layer set is not remembered.
			var err error
			if visible, err = f.dirLayers(dir); err != nil {
				return layerHit{}, err
			}
			continue
		}
		rel := path.Join(append(append([]string{"/"}, dir...), comp)...)
		hit, err := f.lookup(visible, rel)
		if err != nil {
			return layerHit{}, err
		}
		switch {
		case hit.mode&fs.ModeSymlink != 0:
			if hops++; hops > maxSymlinks {
				return layerHit{}, errSymlinkLoop
			}
			target, err := os.Readlink(hit.host)
			if err != nil {
				return layerHit{}, err
			}
			if path.IsAbs(target) {
				dir = nil
			}
			pending = append(splitPath(target), pending...)
			if visible, err = f.dirLayers(dir); err != nil {
				return layerHit{}, err
			}
		case len(pending) == 0:
			return hit, nil
		case hit.mode.IsDir():
			dir = append(dir, comp)
			visible = hit.dirLayers
		default:
			return layerHit{}, errNotADirectory
		}
	}
	return layerHit{}, errNotInImage
}

// dirLayers resolves an already symlink-free directory from the root and returns the layers contributing
// to it.
func (f imageFS) dirLayers(dir []string) ([]int, error) {
	visible := f.allLayers()
	for i := range dir {
		hit, err := f.lookup(visible, path.Join(append([]string{"/"}, dir[:i+1]...)...))
		if err != nil {
			return nil, err
		}
		if !hit.mode.IsDir() {
			return nil, errNotADirectory
		}
		visible = hit.dirLayers
	}
	return visible, nil
}

func (f imageFS) allLayers() []int {
	all := make([]int, len(f.layers))
	for i := range all {
		all[i] = i
	}
	return all
}

type layerHit struct {
	layer     int    // index in f.layers
	rel       string // absolute path in the layer
	host      string
	mode      fs.FileMode
	dirLayers []int // for a directory: the layers whose copy of it is merged, top first
}

// lookup finds rel in the topmost of the visible layers (those merged into rel's parent directory).
func (f imageFS) lookup(visible []int, rel string) (layerHit, error) {
	for i, l := range visible {
		host := filepath.Join(f.layers[l], rel)
		info, err := os.Lstat(host)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
				continue
			}
			return layerHit{}, err
		}
		if isWhiteout(info) {
			return layerHit{}, errNotInImage
		}
		hit := layerHit{layer: l, rel: rel, host: host, mode: info.Mode()}
		if info.IsDir() {
			hit.dirLayers = f.mergedDir(visible[i:], rel)
		}
		return hit, nil
	}
	return layerHit{}, errNotInImage
}

// mergedDir lists the layers, from the one where rel was found downwards, whose directory rel merges into
// the view: it stops below an opaque copy, and at a layer where rel is anything but a directory.
func (f imageFS) mergedDir(from []int, rel string) []int {
	out := []int{from[0]}
	if isOpaque(filepath.Join(f.layers[from[0]], rel)) {
		return out
	}
	for _, l := range from[1:] {
		host := filepath.Join(f.layers[l], rel)
		info, err := os.Lstat(host)
		if err != nil {
			continue
		}
		if !info.IsDir() {
			break
		}
		out = append(out, l)
		if isOpaque(host) {
			break
		}
	}
	return out
}

func isWhiteout(info fs.FileInfo) bool {
	if info.Mode()&fs.ModeCharDevice == 0 {
		return false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Rdev == 0
}

// isOpaque reports the overlayfs opaque-directory mark, in its privileged (trusted.) and its userxattr
// (user.) spelling.
func isOpaque(dir string) bool {
	for _, attr := range []string{"trusted.overlay.opaque", "user.overlay.opaque"} {
		buf := make([]byte, 1)
		if n, err := unix.Lgetxattr(dir, attr, buf); err == nil && n == 1 && buf[0] == 'y' {
			return true
		}
	}
	return false
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}
