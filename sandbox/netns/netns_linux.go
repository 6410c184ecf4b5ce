package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

type kind struct {
	file string
	flag int
}

func requested(opts Options) []kind {
	var ks []kind
	if opts.Net {
		ks = append(ks, kind{netFile, unix.CLONE_NEWNET})
	}
	if opts.IPC {
		ks = append(ks, kind{ipcFile, unix.CLONE_NEWIPC})
	}
	if opts.UTS {
		ks = append(ks, kind{utsFile, unix.CLONE_NEWUTS})
	}
	if opts.User != nil {
		ks = append(ks, kind{userFile, unix.CLONE_NEWUSER})
	}
	return ks
}

// undoStack collects rollback steps; they run last-in first-out.
type undoStack []func()

func (u *undoStack) push(f func()) { *u = append(*u, f) }

func (u undoStack) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// Create makes the namespaces opts asks for and pins each on dir/net,
// dir/ipc and dir/uts. It creates dir (mode 0755) when missing and turns it
// into a private bind mount of itself, the way `ip netns` treats /run/netns:
// an nsfs bind under a shared mount would propagate into every peer mount
// namespace (other runtimes' containers included), where it would keep the
// namespace alive after Remove. In a new network namespace loopback is up.
// With opts.User the other namespaces are owned by the new user namespace.
//
// On error nothing Create made is left behind. Files already present in dir
// are never touched: an existing dir/net is an error wrapping fs.ErrExist.
func Create(dir string, opts Options) (_ Paths, retErr error) {
	if err := validate(dir, opts); err != nil {
		return Paths{}, err
	}
	kinds := requested(opts)
	if len(kinds) == 0 {
		return Paths{}, nil
	}
	var undo undoStack
	defer func() {
		if retErr != nil {
			undo.run()
		}
	}()

	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return Paths{}, fmt.Errorf("create parent of namespace dir %s: %w", dir, err)
	}
	switch err := os.Mkdir(dir, 0o755); {
	case err == nil:
		undo.push(func() { _ = os.Remove(dir) })
	case !errors.Is(err, fs.ErrExist):
		return Paths{}, fmt.Errorf("create namespace dir: %w", err)
	}
	bound, err := makePrivate(dir)
	if bound {
		undo.push(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	}
	if err != nil {
		return Paths{}, err
	}

	targets := make([]string, len(kinds))
	for i, k := range kinds {
		targets[i] = filepath.Join(dir, k.file)
		f, err := os.OpenFile(targets[i], os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
		if err != nil {
			return Paths{}, fmt.Errorf("create namespace file: %w", err)
		}
		_ = f.Close()
		target := targets[i]
		undo.push(func() { _ = os.Remove(target) })
	}

	var mounted []string
	if opts.User != nil {
		mounted, err = pinFromChild(kinds, targets, opts)
	} else {
		mounted, err = pin(kinds, targets, opts.Hostname)
	}
	for _, m := range mounted {
		undo.push(func() { _ = unix.Unmount(m, unix.MNT_DETACH) })
	}
	if err != nil {
		return Paths{}, err
	}

	var p Paths
	for i, k := range kinds {
		switch k.file {
		case netFile:
			p.Net = targets[i]
		case ipcFile:
			p.IPC = targets[i]
		case utsFile:
			p.UTS = targets[i]
		case userFile:
			p.User = targets[i]
		}
	}
	if p.Net != "" {
		if err := loopbackUp(p.Net); err != nil {
			return Paths{}, err
		}
	}
	return p, nil
}

// makePrivate gives dir private mount propagation, first making it a bind
// mount of itself when it is not a mount point yet. bound reports whether
// that bind mount was made here (and so must be undone on failure).
func makePrivate(dir string) (bound bool, _ error) {
	err := unix.Mount("", dir, "", unix.MS_PRIVATE, "")
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return false, fmt.Errorf("make %s a private mount: %w", dir, err)
	}
	// EINVAL: dir is not a mount point yet.
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return false, fmt.Errorf("bind mount %s onto itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return true, fmt.Errorf("make %s a private mount: %w", dir, err)
	}
	return true, nil
}

// pin unshares the namespaces on a throw-away OS thread and bind-mounts
// them onto targets. It returns the targets it mounted, also on error, so
// the caller can undo them.
func pin(kinds []kind, targets []string, hostname string) ([]string, error) {
	var mounted []string
	err := onFreshThread(func() error {
		var err error
		mounted, err = pinOnThread(kinds, targets, hostname)
		return err
	})
	return mounted, err
}

// onFreshThread runs fn on an OS thread that is thrown away afterwards, so
// fn may leave it in other namespaces. The goroutine never unlocks its
// thread: a goroutine that exits locked takes its thread with it, and no
// other goroutine can ever be scheduled in the namespaces fn joined.
//
// The main thread is the exception: Go never ends it but parks it for
// good, which would keep fn's namespaces alive forever and make
// /proc/self/ns (which follows the main thread) name them. So a goroutine
// that finds itself there holds on to it, which keeps the retry off it, and
// hands fn to another thread.
func onFreshThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			done <- onFreshThread(fn)
			runtime.UnlockOSThread()
			return
		}
		done <- fn()
	}()
	return <-done
}

// Do runs fn on a throw-away OS thread that has joined the namespace
// pinned at path (any kind: net, ipc, uts). It is how code acts inside a
// pod, such as dialing a pod-local port, without ever moving a shared
// goroutine; fn must not start goroutines that expect to be inside.
func Do(path string, fn func() error) error {
	return onFreshThread(func() error {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open namespace %s: %w", path, err)
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, 0); err != nil {
			return fmt.Errorf("join namespace %s: %w", path, err)
		}
		return fn()
	})
}

func pinOnThread(kinds []kind, targets []string, hostname string) ([]string, error) {
	flags := 0
	for _, k := range kinds {
		flags |= k.flag
	}
	if err := unix.Unshare(flags); err != nil {
		return nil, fmt.Errorf("unshare namespaces: %w", err)
	}
	if hostname != "" {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return nil, fmt.Errorf("set hostname %q: %w", hostname, err)
		}
	}
	var mounted []string
	for i, k := range kinds {
		src := "/proc/thread-self/ns/" + k.file
		if err := unix.Mount(src, targets[i], "", unix.MS_BIND, ""); err != nil {
			return mounted, fmt.Errorf("pin %s namespace on %s: %w", k.file, targets[i], err)
		}
		mounted = append(mounted, targets[i])
	}
	return mounted, nil
}

// loopbackUp sets lo up inside the pinned network namespace. A netlink
// handle bound to the namespace does this without moving any goroutine.
func loopbackUp(path string) error {
	ns, err := vnetns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find loopback in %s: %w", path, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set loopback up in %s: %w", path, err)
	}
	return nil
}

// Remove unpins every namespace under dir and deletes dir. The namespaces
// themselves go away once no process and no other mount holds them. Remove
// is idempotent and copes with whatever a crashed Create left: missing files,
// files that were never mounted, or a dir that is not a mount point. If a
// file cannot be unmounted dir is kept, so nothing still pinned is lost track
// of.
func Remove(dir string) error {
	if dir == "" || !filepath.IsAbs(dir) {
		return fmt.Errorf("%w: directory %q must be an absolute path", ErrInvalidOptions, dir)
	}
	var errs []error
	for _, name := range []string{netFile, ipcFile, utsFile, userFile} {
		p := filepath.Join(dir, name)
		if err := unmountAll(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove namespace file: %w", err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := unmountAll(dir); err != nil {
		return err
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove namespace dir: %w", err)
	}
	return nil
}

// unmountAll detaches every mount stacked on p (a retried Create may have
// left more than one). EINVAL means p is not a mount point, ENOENT that it
// does not exist: both mean done.
func unmountAll(p string) error {
	for range 16 {
		err := unix.Unmount(p, unix.MNT_DETACH)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		default:
			return fmt.Errorf("unmount %s: %w", p, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 16 unmounts", p)
}
