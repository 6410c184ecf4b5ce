package service

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// The kubelet's termination message file.
//
// For every container it creates, the kubelet makes an empty host file,
// new for every container (its name ends in a random id), binds it at the
// container's terminationMessagePath, and reads it once the container has
// exited (the last maxTermMessage bytes of it). Bound as it is, that file
// would make every container's process shape a new one, and no
// pre-created generation would ever serve a kubelet's create. So each
// generation binds a file of its own there instead (termFileName, in its
// rootfs dir, made with the generation), and the shim copies what the
// container left in it to the kubelet's file of the container when it
// records the exit, before it reports it: the kubelet reads the file after
// it learns of the exit.

// termFileName is a generation's own termination message file, in its
// rootfs dir.
const termFileName = "termination-log"

// maxTermMessage is how much of a termination message the kubelet reads:
// the last 4096 bytes of the file (MaxContainerTerminationMessageLength).
const maxTermMessage = 4096

// createTermFile makes an empty termination message file that any user of
// the container may write, as the kubelet makes its own.
func createTermFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return fmt.Errorf("create termination message file: %w", err)
	}
	defer f.Close()
	// The mode whatever the umask.
	if err := f.Chmod(0o666); err != nil {
		return fmt.Errorf("create termination message file: %w", err)
	}
	return nil
}

// copyTermMessage copies the termination message a container left in src,
// its generation's file, to dst, the kubelet's file of the container:
// the last maxTermMessage bytes of it, all the kubelet would have read.
// src is the container's to write, so neither file is opened through a
// symbolic link, only regular files are read or written, and no more than
// maxTermMessage bytes are read. A kubelet's file that is gone is not
// made again.
func copyTermMessage(src, dst string) error {
	msg, err := readTail(src, maxTermMessage)
	if err != nil {
		return err
	}
	f, err := openRegular(dst, unix.O_WRONLY)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("open the kubelet's termination message file: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("write the kubelet's termination message file: %w", err)
	}
	if _, err := f.WriteAt(msg, 0); err != nil {
		return fmt.Errorf("write the kubelet's termination message file: %w", err)
	}
	return nil
}

// readTail reads the last limit bytes of the regular file path.
func readTail(path string, limit int64) ([]byte, error) {
	f, err := openRegular(path, unix.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("open termination message file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read termination message file: %w", err)
	}
	off := max(st.Size()-limit, 0)
	msg, err := io.ReadAll(io.NewSectionReader(f, off, limit))
	if err != nil {
		return nil, fmt.Errorf("read termination message file: %w", err)
	}
	return msg, nil
}

// openRegular opens path, which must be a regular file and not a symbolic
// link, without blocking on it.
func openRegular(path string, mode int) (*os.File, error) {
	fd, err := unix.Open(path, mode|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is a %s, not a regular file", path, st.Mode().Type())
	}
	return f, nil
}
